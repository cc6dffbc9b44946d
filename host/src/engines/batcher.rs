//! TF Serving-style dynamic batching: inferences that arrive together on one
//! graph are merged into one model run, and each caller gets its own rows.
//!
//! Tasks join the newest open batch while it has room, or open a new one;
//! a batch runs as soon as a batch thread is free and the batch is full or
//! has waited `batch_timeout`. With TF Serving's default timeout of 0 the
//! batches grow exactly while every batch thread is busy, so a lone request
//! never waits and a burst is run together. When `max_enqueued_batches`
//! batches are already waiting, a task is refused at once.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::engines::{Engine, RunSpan, RunStats};
use anyhow::{Context, bail};

/// `--batching_parameters_file`, with TF Serving's defaults for what it omits.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchingParameters {
    /// Rows (images) in one model run.
    pub max_batch_size: usize,
    /// How long an unfilled batch may wait for more tasks.
    pub batch_timeout: Duration,
    /// Batches that may wait; a task that would need one more is refused.
    pub max_enqueued_batches: usize,
    /// Model runs at once.
    pub num_batch_threads: usize,
    /// If set, each batch is padded up to the smallest of these that fits;
    /// the largest must equal `max_batch_size`.
    pub allowed_batch_sizes: Vec<usize>,
}

impl Default for BatchingParameters {
    fn default() -> Self {
        BatchingParameters {
            max_batch_size: 1000,
            batch_timeout: Duration::ZERO,
            max_enqueued_batches: 100,
            num_batch_threads: crate::config::cores(),
            allowed_batch_sizes: Vec::new(),
        }
    }
}

impl BatchingParameters {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("cannot read --batching_parameters_file {}", path.display())
        })?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// TF Serving's `BatchingParameters` text format. Fields are wrapped as
    /// TF Serving writes them (`max_batch_size { value: 32 }`) or, one form
    /// throughout a file, bare (`max_batch_size: 32`).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let fields = vitrine_wire::textproto::batching_parameters(text).map_err(|e| {
            match &e.unknown_field {
                Some((field, _)) => anyhow::anyhow!(
                    "line {}:{}: unknown batching parameter {field:?}; known: max_batch_size, batch_timeout_micros, \
                     max_enqueued_batches, num_batch_threads, allowed_batch_sizes",
                    e.line,
                    e.column
                ),
                None => anyhow::anyhow!(e),
            }
        })?;
        let number = |name: &str, value: i64| {
            u64::try_from(value)
                .with_context(|| format!("{name} must be a non-negative integer, got {value}"))
        };
        let mut p = BatchingParameters::default();
        if let Some(v) = fields.max_batch_size {
            p.max_batch_size = number("max_batch_size", v)? as usize;
        }
        if let Some(v) = fields.batch_timeout_micros {
            p.batch_timeout = Duration::from_micros(number("batch_timeout_micros", v)?);
        }
        if let Some(v) = fields.max_enqueued_batches {
            p.max_enqueued_batches = number("max_enqueued_batches", v)? as usize;
        }
        if let Some(v) = fields.num_batch_threads {
            p.num_batch_threads = number("num_batch_threads", v)? as usize;
        }
        for v in fields.allowed_batch_sizes {
            p.allowed_batch_sizes
                .push(number("allowed_batch_sizes", v)? as usize);
        }
        p.validate()?;
        Ok(p)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_batch_size == 0 || self.num_batch_threads == 0 || self.max_enqueued_batches == 0
        {
            bail!("max_batch_size, num_batch_threads and max_enqueued_batches must be at least 1");
        }
        if !self.allowed_batch_sizes.is_empty() {
            if !self.allowed_batch_sizes.windows(2).all(|w| w[0] < w[1]) {
                bail!(
                    "allowed_batch_sizes must increase: {:?}",
                    self.allowed_batch_sizes
                );
            }
            if self.allowed_batch_sizes.last() != Some(&self.max_batch_size) {
                bail!(
                    "the last of allowed_batch_sizes {:?} must equal max_batch_size {}",
                    self.allowed_batch_sizes,
                    self.max_batch_size
                );
            }
        }
        Ok(())
    }

    /// Rows the model runs for `rows` real ones.
    fn padded(&self, rows: usize) -> usize {
        self.allowed_batch_sizes
            .iter()
            .copied()
            .find(|&s| s >= rows)
            .unwrap_or(rows)
    }
}

/// The reply to one task: its logits rows and the run that made them, or
/// why there are none.
pub type TaskResult = Result<(Vec<f32>, RunSpan), String>;

struct Task {
    rows: usize,
    /// `rows` images of f32 pixels, little-endian bytes as wasi:nn sends them.
    input: Vec<u8>,
    reply: tokio::sync::oneshot::Sender<TaskResult>,
}

struct Batch {
    tasks: Vec<Task>,
    rows: usize,
    opened: Instant,
}

struct Queue {
    batches: VecDeque<Batch>,
    closed: bool,
}

struct Shared {
    params: BatchingParameters,
    engine: Arc<dyn Engine>,
    stats: Arc<RunStats>,
    queue: Mutex<Queue>,
    wakeup: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A batch thread that panicked mid-run held no queue lock; the data
        // is consistent, so carry on.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The batch queue and threads of one graph. Dropping it stops the threads
/// once the queued batches are run, and with them the model is freed.
pub struct BatchScheduler {
    shared: Arc<Shared>,
}

/// The queue is full: TF Serving's RESOURCE_EXHAUSTED.
#[derive(Debug)]
pub struct QueueFull {
    pub max_enqueued_batches: usize,
}

impl BatchScheduler {
    pub fn start(
        name: &str,
        engine: Arc<dyn Engine>,
        params: BatchingParameters,
        stats: Arc<RunStats>,
    ) -> anyhow::Result<BatchScheduler> {
        params.validate()?;
        let shared = Arc::new(Shared {
            engine,
            stats,
            queue: Mutex::new(Queue {
                batches: VecDeque::new(),
                closed: false,
            }),
            wakeup: Condvar::new(),
            params,
        });
        for i in 0..shared.params.num_batch_threads {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("batch-{name}-{i}"))
                .spawn(move || batch_thread(&shared))
                .context("cannot start a batch thread")?;
        }
        Ok(BatchScheduler { shared })
    }

    pub fn max_batch_size(&self) -> usize {
        self.shared.params.max_batch_size
    }

    /// Queues `rows` images (at most `max_batch_size`); the receiver gets
    /// their logits once the batch they joined has run.
    pub fn submit(
        &self,
        rows: usize,
        input: Vec<u8>,
    ) -> Result<tokio::sync::oneshot::Receiver<TaskResult>, QueueFull> {
        let (reply, receiver) = tokio::sync::oneshot::channel();
        let task = Task { rows, input, reply };
        let params = &self.shared.params;
        let mut queue = self.shared.lock();
        let waiting = queue.batches.len();
        match queue.batches.back_mut() {
            Some(open) if open.rows + rows <= params.max_batch_size => {
                open.rows += rows;
                open.tasks.push(task);
            }
            _ if waiting >= params.max_enqueued_batches => {
                return Err(QueueFull {
                    max_enqueued_batches: params.max_enqueued_batches,
                });
            }
            _ => queue.batches.push_back(Batch {
                tasks: vec![task],
                rows,
                opened: Instant::now(),
            }),
        }
        drop(queue);
        self.shared.wakeup.notify_one();
        Ok(receiver)
    }
}

impl Drop for BatchScheduler {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wakeup.notify_all();
    }
}

fn batch_thread(shared: &Shared) {
    loop {
        let batch = {
            let mut queue = shared.lock();
            loop {
                let due = queue.batches.front().map(|b| {
                    let full = b.rows >= shared.params.max_batch_size;
                    let waited = b.opened.elapsed();
                    if full || waited >= shared.params.batch_timeout {
                        Duration::ZERO
                    } else {
                        shared.params.batch_timeout - waited
                    }
                });
                match due {
                    Some(Duration::ZERO) => break queue.batches.pop_front(),
                    Some(wait) if !queue.closed => {
                        queue = shared
                            .wakeup
                            .wait_timeout(queue, wait)
                            .map(|(q, _)| q)
                            .unwrap_or_else(|p| p.into_inner().0);
                    }
                    // Closing: run what is queued without waiting.
                    Some(_) => break queue.batches.pop_front(),
                    None if queue.closed => return,
                    None => {
                        queue = shared.wakeup.wait(queue).unwrap_or_else(|p| p.into_inner());
                    }
                }
            }
        };
        if let Some(batch) = batch {
            run_batch(shared, batch);
        }
    }
}

fn run_batch(shared: &Shared, batch: Batch) {
    let padded = shared.params.padded(batch.rows);
    let parts: Vec<&[u8]> = batch.tasks.iter().map(|t| t.input.as_slice()).collect();
    let (result, span) = RunSpan::measure(|| shared.engine.run(padded, &parts));
    shared.stats.record(padded, span.duration());
    match result {
        Ok(rows) => {
            let width = shared.engine.num_labels();
            let mut start = 0;
            for task in batch.tasks {
                let mine = rows
                    .get(start * width..(start + task.rows) * width)
                    .map(|mine| (mine.to_vec(), span))
                    .ok_or_else(|| format!("the engine returned {} logits", rows.len()));
                start += task.rows;
                // A caller that gave up (disconnected) has dropped its receiver.
                let _ = task.reply.send(mine);
            }
        }
        Err(e) => {
            let message = format!("{e:#}");
            tracing::error!(
                "batched inference of {} images failed: {message}",
                batch.rows
            );
            for task in batch.tasks {
                let _ = task.reply.send(Err(message.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tf_serving_batching_file() {
        let p = BatchingParameters::parse(
            "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 2000 }\n\
             max_enqueued_batches { value: 4 }\nnum_batch_threads { value: 1 }\n\
             allowed_batch_sizes: 2\nallowed_batch_sizes: 4\nallowed_batch_sizes: 8\n",
        )
        .expect("valid file");
        assert_eq!(p.max_batch_size, 8);
        assert_eq!(p.batch_timeout, Duration::from_micros(2000));
        assert_eq!(p.max_enqueued_batches, 4);
        assert_eq!(p.num_batch_threads, 1);
        assert_eq!(p.allowed_batch_sizes, vec![2, 4, 8]);
        assert_eq!(p.padded(3), 4);
        assert_eq!(p.padded(8), 8);
    }

    #[test]
    fn omitted_fields_take_tf_serving_defaults() {
        let p = BatchingParameters::parse("max_batch_size: 16").expect("valid");
        assert_eq!(p.max_batch_size, 16);
        assert_eq!(p.batch_timeout, Duration::ZERO);
        assert_eq!(p.max_enqueued_batches, 100);
    }

    #[test]
    fn refuses_inconsistent_files() {
        for bad in [
            "max_batch_size { value: 8 } allowed_batch_sizes: 4",
            "allowed_batch_sizes: 8 allowed_batch_sizes: 4 max_batch_size: 4",
            "max_batch_size: 0",
            "max_batch_size: -1",
            "max_batch_sise: 8",
        ] {
            assert!(BatchingParameters::parse(bad).is_err(), "{bad}");
        }
    }
}
