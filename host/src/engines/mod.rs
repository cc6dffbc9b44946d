//! Native engines: each model version's graph loaded once in the host,
//! shared by every instance of the version through `wasi:nn`.
//!
//! The seam is [`Engine`]: something that runs a graph on a batch of pixel
//! tensors. The [`batcher`] feeds an engine merged batches and knows nothing
//! of which engine it is; [`native`] picks the engine for a version and
//! runs it directly or through the batcher.
//!
//! - [`onnxruntime`]: onnxruntime's CPU kernels, its library loaded at run
//!   time when it is installed.
//! - [`tract`]: tract, pure Rust, run on its own thread pool.
//! - [`batcher`]: TF Serving-style dynamic batching.
//! - [`native`]: one version's native model: its engine and runner.
//! - [`run_threads`]: the threads that run a version's unbatched inferences.

pub mod batcher;
pub mod native;
pub mod onnxruntime;
pub mod run_threads;
#[cfg(feature = "tract")]
pub mod tract;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When the engine run that answered an inference began and ended (a whole
/// batch's run, when batched): what the request waited for before it and
/// after it is serving's share of its latency.
#[derive(Debug, Clone, Copy)]
pub struct RunSpan {
    pub started: Instant,
    pub ended: Instant,
}

impl RunSpan {
    /// Runs `run`, and returns its result with when it began and ended.
    pub fn measure<T>(run: impl FnOnce() -> T) -> (T, RunSpan) {
        let started = Instant::now();
        let result = run();
        let span = RunSpan {
            started,
            ended: Instant::now(),
        };
        (result, span)
    }

    pub fn duration(&self) -> Duration {
        self.ended - self.started
    }

    /// The span from the first of `self` and `other` to the last: one
    /// request split across batches waited for all of them.
    pub fn union(self, other: RunSpan) -> RunSpan {
        RunSpan {
            started: self.started.min(other.started),
            ended: self.ended.max(other.ended),
        }
    }
}

/// An engine that runs one model version's graph, shared by every instance
/// of the version.
pub trait Engine: Send + Sync {
    /// `"tract"` or `"onnxruntime"`: reported in metadata, stats and logs.
    fn name(&self) -> &'static str;
    /// `[channels, height, width]` of one image.
    fn image_shape(&self) -> [usize; 3];
    fn num_labels(&self) -> usize;
    /// Logits `[rows, num_labels]` for `rows` images. `parts` hold whole
    /// images of little-endian f32 pixels back to back; rows after them are
    /// zero (batch padding). The engine copies them once, into its own
    /// input storage.
    fn run(&self, rows: usize, parts: &[&[u8]]) -> anyhow::Result<Vec<f32>>;

    /// Runs that went side by side with another on a single-threaded
    /// session, for engines that do that (onnxruntime's lanes).
    fn side_by_side_runs(&self) -> Option<u64> {
        None
    }

    /// Bytes in one image's pixel tensor.
    fn image_bytes(&self) -> usize {
        self.image_shape().iter().product::<usize>() * std::mem::size_of::<f32>()
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
    /// Time spent inside the engine, summed over runs: what serving adds
    /// is a request's latency less its share of this.
    pub run_nanos: AtomicU64,
}

impl RunStats {
    pub fn new(model: &str, version: u64) -> RunStats {
        RunStats {
            model: model.to_string(),
            version,
            ..RunStats::default()
        }
    }

    pub fn record(&self, rows: usize, took: Duration) {
        crate::metrics::record_run(&self.model, self.version, rows, took);
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.run_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.largest_batch.fetch_max(rows as u64, Ordering::Relaxed);
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "model_runs": self.runs.load(Ordering::Relaxed),
            "rows": self.rows.load(Ordering::Relaxed),
            "largest_batch": self.largest_batch.load(Ordering::Relaxed),
            "model_run_seconds": self.run_nanos.load(Ordering::Relaxed) as f64 * 1e-9,
        })
    }
}
