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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tract_onnx::prelude::Tensor;
use vitrine_component::inference::Classifier;

use crate::textproto;

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
            num_batch_threads: crate::native::cores(),
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

    /// TF Serving's `BatchingParameters` text format. Each field may be
    /// written bare (`max_batch_size: 32`) or, as TF Serving writes it,
    /// wrapped (`max_batch_size { value: 32 }`).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let message = textproto::parse(text)?;
        let mut p = BatchingParameters::default();
        for (name, value) in &message.fields {
            let number = || -> anyhow::Result<u64> {
                let scalar = match value.as_message() {
                    Some(wrapped) => wrapped.get("value").with_context(|| {
                        format!("{name} {{ }} needs a value, e.g. {name} {{ value: 8 }}")
                    })?,
                    None => value,
                };
                scalar
                    .as_u64()
                    .with_context(|| format!("{name} must be a non-negative integer"))
            };
            match name.as_str() {
                "max_batch_size" => p.max_batch_size = number()? as usize,
                "batch_timeout_micros" => p.batch_timeout = Duration::from_micros(number()?),
                "max_enqueued_batches" => p.max_enqueued_batches = number()? as usize,
                "num_batch_threads" => p.num_batch_threads = number()? as usize,
                "allowed_batch_sizes" => p.allowed_batch_sizes.push(number()? as usize),
                // Accepted for TF Serving configs; they change nothing here.
                "pad_variable_length_inputs"
                | "thread_pool_name"
                | "enable_large_batch_splitting" => {}
                other => bail!(
                    "unknown batching parameter {other:?}; known: max_batch_size, batch_timeout_micros, \
                     max_enqueued_batches, num_batch_threads, allowed_batch_sizes"
                ),
            }
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

/// Counts of one version's model runs, for `/vitrine/stats`, the batch size
/// metric and the batching test.
#[derive(Debug, Default)]
pub struct RunStats {
    pub model: String,
    pub version: u64,
    pub runs: AtomicU64,
    pub rows: AtomicU64,
    pub largest_batch: AtomicU64,
}

impl RunStats {
    pub fn new(model: &str, version: u64) -> RunStats {
        RunStats {
            model: model.to_string(),
            version,
            ..RunStats::default()
        }
    }

    pub fn record(&self, rows: usize) {
        crate::metrics::record_batch(&self.model, self.version, rows);
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.largest_batch.fetch_max(rows as u64, Ordering::Relaxed);
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "model_runs": self.runs.load(Ordering::Relaxed),
            "rows": self.rows.load(Ordering::Relaxed),
            "largest_batch": self.largest_batch.load(Ordering::Relaxed),
        })
    }
}

/// The reply to one task: its logits rows, or why there are none.
pub type TaskResult = Result<Vec<f32>, String>;

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
    model: Arc<Classifier>,
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
        model: Arc<Classifier>,
        params: BatchingParameters,
        stats: Arc<RunStats>,
    ) -> anyhow::Result<BatchScheduler> {
        params.validate()?;
        let shared = Arc::new(Shared {
            model,
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
    let result =
        assemble(&shared.model, &batch, padded).and_then(|input| shared.model.run_tensor(input));
    shared.stats.record(padded);
    match result {
        Ok(logits) => {
            let rows = logits
                .try_as_plain_ram()
                .and_then(|v| v.as_slice::<f32>())
                .map_err(|e| format!("unexpected logits: {e}"));
            let width = shared.model.num_labels;
            let mut start = 0;
            for task in batch.tasks {
                let mine = rows
                    .as_ref()
                    .map(|all| all[start * width..(start + task.rows) * width].to_vec())
                    .map_err(Clone::clone);
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

/// The batch's images, back to back, padded with zeros to `padded` rows.
fn assemble(model: &Classifier, batch: &Batch, padded: usize) -> anyhow::Result<Tensor> {
    pixel_tensor(
        model,
        padded,
        batch.tasks.iter().map(|t| t.input.as_slice()),
    )
}

/// An f32 tensor `[rows, c, h, w]` filled from `parts` (little-endian pixel
/// bytes, whole images each) in order, zeros after them: the one copy from
/// wasi:nn's bytes into aligned storage.
pub fn pixel_tensor<'a>(
    model: &Classifier,
    rows: usize,
    parts: impl IntoIterator<Item = &'a [u8]>,
) -> anyhow::Result<Tensor> {
    let mut input = Tensor::zero::<f32>(&[rows, model.channels, model.height, model.width])?;
    let bytes = input.as_bytes_mut();
    let mut at = 0;
    for part in parts {
        let end = at + part.len();
        let Some(dest) = bytes.get_mut(at..end) else {
            bail!("{end} bytes of images overrun a tensor of {rows} images");
        };
        dest.copy_from_slice(part);
        at = end;
    }
    Ok(input)
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
