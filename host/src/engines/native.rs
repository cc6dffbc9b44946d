//! One model version loaded natively: its [`Engine`], shared by every
//! instance of the version, run directly (a bounded number of runs at once)
//! or through the dynamic [`batcher`](crate::engines::batcher).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::Semaphore;

use crate::config::cli::NativeEngineChoice;
use crate::engines::batcher::{BatchScheduler, BatchingParameters};
use crate::engines::onnxruntime::{self, OnnxRuntimeEngine, OrtOptions, Runtime};
use crate::engines::run_threads::RunThreads;
use crate::engines::{Engine, RunSpan, RunStats};

/// How the host runs models natively.
#[derive(Debug, Clone)]
pub struct NativeOptions {
    pub engine: NativeEngine,
    /// `None`: every inference runs on its own, `runs_at_once` at a time.
    pub batching: Option<BatchingParameters>,
    pub runs_at_once: usize,
}

/// Which engine runs the host path's models, resolved once at start.
#[derive(Debug, Clone)]
pub enum NativeEngine {
    Tract,
    OnnxRuntime {
        runtime: &'static Runtime,
        options: OrtOptions,
    },
}

impl NativeEngine {
    /// `--native_engine`: `onnxruntime` must load its library (the error
    /// names every path tried); `auto` falls back to tract, saying once how
    /// to get onnxruntime.
    pub fn resolve(
        choice: NativeEngineChoice,
        library: Option<&Path>,
        options: OrtOptions,
    ) -> anyhow::Result<NativeEngine> {
        match choice {
            NativeEngineChoice::Tract if cfg!(feature = "tract") => Ok(NativeEngine::Tract),
            NativeEngineChoice::Tract => anyhow::bail!("--native_engine=tract: {NO_TRACT}"),
            NativeEngineChoice::Onnxruntime => {
                let runtime = onnxruntime::runtime(library)
                    .map_err(|e| anyhow::anyhow!("--native_engine=onnxruntime: {e}"))?;
                Ok(NativeEngine::OnnxRuntime { runtime, options })
            }
            NativeEngineChoice::Auto => match onnxruntime::runtime(library) {
                Ok(runtime) => Ok(NativeEngine::OnnxRuntime { runtime, options }),
                Err(e) if !cfg!(feature = "tract") => {
                    anyhow::bail!("{e}\n(and {NO_TRACT}, so there is nothing to fall back on)")
                }
                Err(e) => {
                    tracing::warn!(
                        "onnxruntime is not available, so models run on tract (slower); `pip install onnxruntime` (1.31 or later) or --onnxruntime_library=PATH makes them run on onnxruntime. Tried: {}",
                        e.summary()
                    );
                    Ok(NativeEngine::Tract)
                }
            },
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            NativeEngine::Tract => "tract",
            NativeEngine::OnnxRuntime { .. } => "onnxruntime",
        }
    }

    /// Whether versions get onnxruntime's side-by-side runs
    /// ([`OrtOptions::has_lanes`]).
    pub fn has_lanes(&self) -> bool {
        matches!(self, NativeEngine::OnnxRuntime { options, .. } if options.has_lanes())
    }
}

/// `dir` loaded by the component's own tract code, as the guest loads it.
#[cfg(feature = "tract")]
fn tract_engine(dir: &Path) -> anyhow::Result<Arc<dyn Engine>> {
    use vitrine_component::inference::Engine as ComponentEngine;
    let loaded = vitrine_component::service::LoadedModel::load(dir)?;
    // Natively the component's engine is always tract.
    let ComponentEngine::Tract(classifier) = loaded.engine;
    Ok(Arc::new(crate::engines::tract::TractEngine(classifier)))
}

#[cfg(not(feature = "tract"))]
fn tract_engine(_dir: &Path) -> anyhow::Result<Arc<dyn Engine>> {
    anyhow::bail!("{NO_TRACT}")
}

/// Why a build without the `tract` feature cannot serve on tract.
const NO_TRACT: &str = "this vitrine is built without tract (the container image's build, which \
     ships onnxruntime); serve on onnxruntime, or build vitrine with its default features";

/// Sets the threads one model run uses (`--tensorflow_intra_op_parallelism`,
/// 0 = one per core) and returns them; tract's executor is process-wide.
pub fn set_intra_op_threads(threads: usize) -> usize {
    #[cfg(feature = "tract")]
    return crate::engines::tract::set_intra_op_threads(threads);
    #[cfg(not(feature = "tract"))]
    match threads {
        0 => crate::config::cores(),
        n => n,
    }
}

/// Why a native inference gave no logits; the wasi:nn layer turns these
/// into its error codes.
#[derive(Debug)]
pub enum NativeError {
    Invalid(String),
    Overloaded(String),
    Failed(String),
}

enum Runner {
    Direct {
        permits: Arc<Semaphore>,
        threads: RunThreads,
    },
    Batched(BatchScheduler),
}

/// One model version, loaded natively.
pub struct NativeModel {
    engine: Arc<dyn Engine>,
    runner: Runner,
    pub stats: Arc<RunStats>,
}

impl NativeModel {
    /// Loads and optimises `dir`'s `model.onnx`, checked against its configs
    /// exactly as the component checks it.
    pub fn load(
        dir: &Path,
        model: &str,
        version: u64,
        options: &NativeOptions,
    ) -> anyhow::Result<NativeModel> {
        let engine: Arc<dyn Engine> = match &options.engine {
            NativeEngine::Tract => tract_engine(dir)?,
            NativeEngine::OnnxRuntime { runtime, options } => {
                let (image_shape, num_labels) = shapes(dir)?;
                Arc::new(OnnxRuntimeEngine::load(
                    &format!("model {model} version {version}"),
                    runtime,
                    &dir.join("model.onnx"),
                    image_shape,
                    num_labels,
                    options,
                )?)
            }
        };
        tracing::info!(
            "model {model} version {version}: loaded on the {} engine{}",
            engine.name(),
            match &options.engine {
                NativeEngine::OnnxRuntime { runtime, .. } =>
                    format!(" ({})", runtime.library.display()),
                NativeEngine::Tract => String::new(),
            }
        );
        let stats = Arc::new(RunStats::new(model, version));
        let runner = match &options.batching {
            Some(params) => Runner::Batched(
                BatchScheduler::start(
                    &format!("{model}-{version}"),
                    engine.clone(),
                    params.clone(),
                    stats.clone(),
                )
                .context("cannot start the batcher")?,
            ),
            None => Runner::Direct {
                permits: Arc::new(Semaphore::new(options.runs_at_once.max(1))),
                threads: RunThreads::start(&format!("{model}-{version}"), options.runs_at_once)?,
            },
        };
        Ok(NativeModel {
            engine,
            runner,
            stats,
        })
    }

    /// `[channels, height, width]` of one image.
    pub fn image_shape(&self) -> [usize; 3] {
        self.engine.image_shape()
    }

    pub fn num_labels(&self) -> usize {
        self.engine.num_labels()
    }

    /// The engine that runs this version: `"tract"` or `"onnxruntime"`.
    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    /// See [`Engine::side_by_side_runs`].
    pub fn side_by_side_runs(&self) -> Option<u64> {
        self.engine.side_by_side_runs()
    }

    pub fn batching(&self) -> bool {
        matches!(self.runner, Runner::Batched(_))
    }

    /// Logits `[rows, num_labels]` for `input`: `rows` images of f32 pixels
    /// as little-endian bytes, and when the run that made them ran.
    pub async fn infer(
        &self,
        rows: usize,
        input: Vec<u8>,
    ) -> Result<(Vec<f32>, RunSpan), NativeError> {
        let row_bytes = self.engine.image_bytes();
        if rows == 0 || input.len() != rows * row_bytes {
            return Err(NativeError::Invalid(format!(
                "expected {rows} images of {row_bytes} bytes, got {} bytes",
                input.len()
            )));
        }
        match &self.runner {
            Runner::Direct { permits, threads } => {
                let _run = permits
                    .acquire()
                    .await
                    .map_err(|e| NativeError::Failed(e.to_string()))?;
                let engine = self.engine.clone();
                let stats = self.stats.clone();
                threads
                    .run(move || {
                        let (logits, span) =
                            RunSpan::measure(|| engine.run(rows, &[input.as_slice()]));
                        let logits = logits?;
                        stats.record(rows, span.duration());
                        anyhow::Ok((logits, span))
                    })
                    .await
                    .map_err(|e| NativeError::Failed(format!("{e:#}")))?
                    .map_err(|e| NativeError::Failed(format!("{e:#}")))
            }
            Runner::Batched(scheduler) => {
                // A request bigger than a batch is split, as TF Serving does
                // with large batch splitting.
                let max = scheduler.max_batch_size();
                let mut pending = Vec::with_capacity(rows.div_ceil(max));
                let mut rest = input;
                let mut left = rows;
                while left > 0 {
                    let take = left.min(max);
                    let tail = rest.split_off(take * row_bytes);
                    let chunk = std::mem::replace(&mut rest, tail);
                    let receiver = scheduler.submit(take, chunk).map_err(|full| {
                        NativeError::Overloaded(format!(
                            "the batch queue is full ({} batches waiting); retry shortly",
                            full.max_enqueued_batches
                        ))
                    })?;
                    pending.push(receiver);
                    left -= take;
                }
                let mut logits = Vec::with_capacity(rows * self.num_labels());
                let mut spans: Option<RunSpan> = None;
                for receiver in pending {
                    let (part, span) = receiver
                        .await
                        .map_err(|_| NativeError::Failed("the batcher stopped".into()))?
                        .map_err(NativeError::Failed)?;
                    logits.extend_from_slice(&part);
                    spans = Some(spans.map_or(span, |s| s.union(span)));
                }
                let span = spans.ok_or_else(|| NativeError::Failed("no batch ran".into()))?;
                Ok((logits, span))
            }
        }
    }
}

/// `[channels, height, width]` of one image and the label count, from the
/// version's configs, checked as the component checks them.
fn shapes(dir: &Path) -> anyhow::Result<([usize; 3], usize)> {
    use vitrine_component::config::{ModelConfig, PreprocessorConfig};
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let preprocessor = PreprocessorConfig::from_json(&read("preprocessor_config.json")?)
        .context("invalid preprocessor_config.json")?;
    let config = ModelConfig::from_json(&read("config.json")?).context("invalid config.json")?;
    let size = preprocessor.input_size;
    Ok((
        [3, size.height as usize, size.width as usize],
        config.id2label.len(),
    ))
}

/// Loads and optimises a version's model natively, off the async threads.
pub async fn load_shared(
    dir: &Path,
    model: &str,
    version: u64,
    options: NativeOptions,
) -> anyhow::Result<Arc<NativeModel>> {
    let (dir, model) = (dir.to_path_buf(), model.to_string());
    let loaded =
        tokio::task::spawn_blocking(move || NativeModel::load(&dir, &model, version, &options))
            .await
            .context("the model loader stopped")??;
    Ok(Arc::new(loaded))
}
