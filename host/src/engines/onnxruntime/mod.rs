//! The onnxruntime engine: a model version's graph run by onnxruntime's CPU
//! execution provider (MLAS kernels), through the `ort` crate.
//!
//! The library is not linked: `libonnxruntime.so` (1.31 or later, as the
//! `onnxruntime` wheel on PyPI ships it) is dlopened at run time from the
//! first place in [`library::candidates`] where it loads, so a machine without it
//! still runs the tract engine. Loading happens once per process
//! ([`runtime`]); every session is built on that one environment.
//!
//! Per model version, built and optimised once at load and freed when the
//! engine is dropped: a session whose runs spread over every intra-op
//! thread, for a request on an idle engine, and (unless turned off) a
//! single-threaded one whose runs go side by side while another is under
//! way ([`lanes`]). `ort`'s `Session::run` takes `&mut self`, so runs of the
//! multi-threaded session take turns behind a lock.

mod cache;
mod lanes;
mod library;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, bail, ensure};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, Tensor, ValueType};

use self::cache::optimised_copy;
use self::lanes::{InFlight, Lanes};
pub use self::library::{Runtime, runtime};
use super::Engine;

/// How sessions are built.
#[derive(Debug, Clone)]
pub struct OrtOptions {
    /// Threads inside one run (`--tensorflow_intra_op_parallelism`; 0 = one per core).
    pub intra_threads: usize,
    /// Whether idle intra-op threads spin waiting for work
    /// (`session.intra_op.allow_spinning`).
    pub spinning: bool,
    /// Where optimised copies of models are kept (see [`optimised_copy`]);
    /// `None` optimises at every load.
    pub cache_dir: Option<PathBuf>,
    /// Whether overlapping runs go side by side on a single-threaded
    /// session ([`lanes`]; `--onnxruntime_lanes`).
    pub lanes: bool,
}

impl OrtOptions {
    /// Whether a version gets [`Lanes`]: only when they can run side by
    /// side, on more than one core.
    pub fn has_lanes(&self) -> bool {
        self.lanes && crate::config::cores() > 1
    }
}

/// One model version's graph in its onnxruntime sessions.
pub struct OnnxRuntimeEngine {
    /// `model m version v`, for the log.
    label: String,
    /// The multi-threaded session; `None` when runs use one thread anyway
    /// and the lanes' session serves them all.
    wide: Option<Mutex<Session>>,
    lanes: Option<Lanes>,
    in_flight: InFlight,
    image_shape: [usize; 3],
    num_labels: usize,
    /// Which of the session's outputs holds the logits.
    logits: usize,
}

impl OnnxRuntimeEngine {
    /// Builds and optimises a session for `model_onnx`, checked against the
    /// image shape and label count the version's configs give; `label`
    /// names the version in the log.
    pub fn load(
        label: &str,
        runtime: &Runtime,
        model_onnx: &Path,
        image_shape: [usize; 3],
        num_labels: usize,
        options: &OrtOptions,
    ) -> anyhow::Result<OnnxRuntimeEngine> {
        let threads = match options.intra_threads {
            0 => crate::config::cores(),
            n => n,
        };
        let plan = Plan {
            wide: (threads > 1 || !options.has_lanes()).then_some(threads),
            lanes: options.has_lanes(),
            spinning: options.spinning,
        };
        let optimised = options.cache_dir.as_deref().and_then(|cache| {
            optimised_copy(runtime, model_onnx, cache, threads)
                .map_err(|e| {
                    tracing::warn!(
                        "{label}: cannot cache onnxruntime's optimised model ({e:#}); optimising at every load"
                    )
                })
                .ok()
        });
        // A cached copy that does not load (damaged on disk) is dropped and
        // the version's own file used: the cache never decides whether a
        // version serves.
        let cached = optimised.and_then(|copy| {
            plan.build(runtime, &copy)
                .map_err(|e| {
                    tracing::warn!(
                        "{label}: the cached optimised model {} does not load ({e:#}); removing it and loading {}",
                        copy.display(),
                        model_onnx.display()
                    );
                    let _ = std::fs::remove_file(&copy);
                })
                .ok()
        });
        let (wide, narrow) = match cached {
            Some(sessions) => sessions,
            None => plan.build(runtime, model_onnx).with_context(|| {
                format!(
                    "onnxruntime cannot parse {} as ONNX; is it a ViT image classifier?",
                    model_onnx.display()
                )
            })?,
        };
        let session = wide
            .as_ref()
            .or(narrow.as_ref())
            .context("no onnxruntime session was built")?;
        ensure!(
            session.inputs().len() == 1,
            "the model has {} inputs, expected one (pixel_values)",
            session.inputs().len()
        );
        check_input(session.inputs()[0].dtype(), image_shape)?;
        let logits = session
            .outputs()
            .iter()
            .position(|o| o.name() == "logits")
            .unwrap_or(0);
        let out = session
            .outputs()
            .get(logits)
            .context("the model has no outputs")?;
        let labels_ok = out
            .dtype()
            .tensor_shape()
            .is_some_and(|s| s.len() == 2 && s[1] == num_labels as i64);
        ensure!(
            labels_ok,
            "model output {} is {}, expected [batch, {num_labels}] to match config.json's id2label",
            out.name(),
            out.dtype()
        );
        let lanes = narrow.map(|n| Lanes::new(n, logits)).transpose()?;
        if lanes.is_some() {
            tracing::info!(
                "{label}: overlapping runs go side by side on a single-threaded onnxruntime session (--onnxruntime_lanes=false turns this off)"
            );
        }
        Ok(OnnxRuntimeEngine {
            label: label.to_string(),
            wide: wide.map(Mutex::new),
            lanes,
            in_flight: InFlight::default(),
            image_shape,
            num_labels,
            logits,
        })
    }
}

/// The sessions one version gets.
struct Plan {
    /// The multi-threaded session's threads, if it has one.
    wide: Option<usize>,
    lanes: bool,
    spinning: bool,
}

impl Plan {
    /// Builds the sessions from `model_onnx`, at once, so that a second
    /// session adds little to the load time on a multi-core machine.
    fn build(
        &self,
        runtime: &Runtime,
        model_onnx: &Path,
    ) -> anyhow::Result<(Option<Session>, Option<Session>)> {
        std::thread::scope(|s| {
            let narrow = self
                .lanes
                .then(|| s.spawn(|| build_session(runtime, model_onnx, 1, self.spinning)));
            let wide = self
                .wide
                .map(|threads| build_session(runtime, model_onnx, threads, self.spinning))
                .transpose()?;
            let narrow = narrow
                .map(|build| {
                    build
                        .join()
                        .map_err(|_| anyhow::anyhow!("the session builder panicked"))
                })
                .transpose()?
                .transpose()?;
            Ok((wide, narrow))
        })
    }
}

fn build_session(
    runtime: &Runtime,
    model_onnx: &Path,
    threads: usize,
    spinning: bool,
) -> ort::Result<Session> {
    Session::builder(&runtime.environment)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        .with_intra_threads(threads)?
        .with_inter_threads(1)?
        .with_intra_op_spinning(spinning)?
        .commit_from_file(model_onnx)
}

impl Drop for OnnxRuntimeEngine {
    fn drop(&mut self) {
        // The session is released right after this, with its weights and arena.
        tracing::info!("{}: onnxruntime session freed", self.label);
    }
}

/// Refuses exports whose declared input disagrees with `preprocessor_config.json`.
fn check_input(dtype: &ValueType, [c, h, w]: [usize; 3]) -> anyhow::Result<()> {
    let (Some(ty), Some(shape)) = (dtype.tensor_type(), dtype.tensor_shape()) else {
        bail!("the model input is {dtype}, expected an f32 tensor [batch, {c}, {h}, {w}]");
    };
    ensure!(
        ty == ort::value::TensorElementType::Float32,
        "the model input is {dtype}, expected f32"
    );
    ensure!(
        shape.len() == 4,
        "model input has rank {}, expected [batch, 3, height, width]",
        shape.len()
    );
    for (axis, (&dim, want)) in shape[1..].iter().zip([c, h, w]).enumerate() {
        // -1: a dynamic axis, which accepts any size.
        if dim >= 0 && dim != want as i64 {
            bail!(
                "model input is {shape:?} but preprocessing produces [batch, {c}, {h}, {w}] (axis {} differs); check preprocessor_config.json's size",
                axis + 1
            );
        }
    }
    Ok(())
}

impl Engine for OnnxRuntimeEngine {
    fn name(&self) -> &'static str {
        "onnxruntime"
    }

    fn image_shape(&self) -> [usize; 3] {
        self.image_shape
    }

    fn num_labels(&self) -> usize {
        self.num_labels
    }

    fn run(&self, rows: usize, parts: &[&[u8]]) -> anyhow::Result<Vec<f32>> {
        let [c, h, w] = self.image_shape;
        let len = rows * c * h * w;
        let bytes: usize = parts.iter().map(|p| p.len()).sum();
        ensure!(
            bytes.is_multiple_of(4) && bytes / 4 <= len,
            "{bytes} bytes of images do not fit a tensor of {rows} images"
        );
        // The one copy: wasi:nn's little-endian bytes into the tensor's own
        // f32 storage (moved into onnxruntime below); padding rows stay zero.
        let mut pixels = vec![0f32; len];
        let mut at = 0;
        for part in parts {
            for (dest, b) in pixels[at..].iter_mut().zip(part.chunks_exact(4)) {
                *dest = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            at += part.len() / 4;
        }
        let input = Tensor::from_array(([rows, c, h, w], pixels))?;
        let flight = self.in_flight.enter();
        // The first run of an idle engine takes every thread; one that
        // starts while others are under way runs beside them.
        let lanes = self
            .lanes
            .as_ref()
            .filter(|_| flight.others > 0 || self.wide.is_none());
        match (lanes, &self.wide) {
            (Some(lanes), _) => self.logits_of(&lanes.run(&input)?, rows),
            (None, Some(wide)) => {
                let mut session = wide.lock().unwrap_or_else(|p| p.into_inner());
                let outputs = session.run(ort::inputs![input])?;
                self.logits_of(&outputs[self.logits], rows)
            }
            (None, None) => bail!("{}: the engine has no session", self.label),
        }
    }

    fn side_by_side_runs(&self) -> Option<u64> {
        self.lanes.as_ref().map(Lanes::runs)
    }
}

impl OnnxRuntimeEngine {
    fn logits_of(&self, output: &DynValue, rows: usize) -> anyhow::Result<Vec<f32>> {
        let (shape, logits) = output.try_extract_tensor::<f32>()?;
        ensure!(
            **shape == [rows as i64, self.num_labels as i64],
            "the model returned logits of shape {shape:?}, expected [{rows}, {}]",
            self.num_labels
        );
        Ok(logits.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitrine_component::inference::Classifier;

    /// The wheel's library in the workspace's `.venv`, which ./test.sh installs.
    fn venv_library() -> Option<PathBuf> {
        let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/lib");
        std::fs::read_dir(lib)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .flat_map(|py| {
                library::libraries_in(&py.path().join("site-packages/onnxruntime/capi"), "venv")
            })
            .filter_map(|c| c.path.ok())
            .find(|p| p.is_file())
    }

    fn test_runtime() -> Option<&'static Runtime> {
        let Some(library) = venv_library() else {
            eprintln!("SKIPPED: no onnxruntime wheel in .venv; run ./test.sh, which installs it");
            return None;
        };
        Some(runtime(Some(&library)).unwrap_or_else(|e| panic!("{e}")))
    }

    /// The tiny demo model written into `dir`: its `model.onnx` and input shape.
    fn tiny_model(dir: &Path) -> (PathBuf, [usize; 3]) {
        let config = vitrine_modelgen::VitConfig::tiny();
        vitrine_modelgen::write_model(dir, &config, 0, &mut |_| {}).expect("demo model");
        let shape = [3, config.image_size, config.image_size];
        (dir.join("model.onnx"), shape)
    }

    /// Deterministic pixels in [-1, 1), as little-endian bytes.
    fn image(seed: u32, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32 * 2.0 - 1.0).to_le_bytes()
            })
            .collect()
    }

    fn floats(bytes: &[u8]) -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn a_named_library_that_does_not_load_is_an_error_naming_it() {
        let err = runtime(Some(Path::new("/nonexistent/libonnxruntime.so")))
            .expect_err("no library there");
        let text = err.to_string();
        assert!(text.contains("/nonexistent/libonnxruntime.so"), "{text}");
        assert!(text.contains("pip install onnxruntime"), "{text}");
        assert_eq!(err.tried.len(), 1, "a named path is the only one tried");
    }

    #[test]
    fn logits_equal_tracts_direct_and_padded_batch() {
        let Some(rt) = test_runtime() else { return };
        let dir = tempfile::tempdir().expect("tempdir");
        let (onnx, shape) = tiny_model(dir.path());
        let options = OrtOptions {
            intra_threads: 2,
            spinning: false,
            cache_dir: None,
            lanes: false,
        };
        let engine =
            OnnxRuntimeEngine::load("test", rt, &onnx, shape, 1000, &options).expect("session");
        assert_eq!(engine.name(), "onnxruntime");
        let tract = Classifier::from_onnx(
            &mut std::fs::File::open(&onnx).expect("open"),
            shape[0],
            shape[1],
            shape[2],
            1000,
        )
        .expect("tract");
        let len = shape.iter().product();
        let (a, b) = (image(1, len), image(2, len));
        let mut both = floats(&a);
        both.extend(floats(&b));
        let reference = tract.run(2, both).expect("tract run");
        let reference = reference
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>().map(<[f32]>::to_vec))
            .expect("f32 logits");

        let one = engine.run(1, &[&a]).expect("run one");
        assert!(max_abs_diff(&one, &reference[..1000]) <= 1e-4);
        // Three rows from two images: the third is zero padding.
        let padded = engine.run(3, &[&a, &b]).expect("run batch");
        assert_eq!(padded.len(), 3000);
        let diff = max_abs_diff(&padded[..2000], &reference);
        assert!(diff <= 1e-4, "onnxruntime and tract differ by {diff}");
        let zero = engine
            .run(1, &[&vec![0u8; len * 4]])
            .expect("run zero image");
        assert!(max_abs_diff(&padded[2000..], &zero) <= 1e-5);
        // Too many bytes for the rows asked for is refused, not truncated.
        assert!(engine.run(1, &[&a, &b]).is_err());
    }

    /// A run that starts while another is under way goes to the lanes'
    /// session and gives the multi-threaded session's logits; runs that
    /// overlap there give them too. Without lanes nothing runs side by side.
    #[test]
    fn overlapping_runs_go_side_by_side_with_the_same_logits() {
        let Some(rt) = test_runtime() else { return };
        if crate::config::cores() < 2 {
            eprintln!("SKIPPED: side-by-side runs need more than one core");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (onnx, shape) = tiny_model(dir.path());
        let mut options = OrtOptions {
            intra_threads: 2,
            spinning: false,
            cache_dir: None,
            lanes: true,
        };
        let engine =
            OnnxRuntimeEngine::load("test", rt, &onnx, shape, 1000, &options).expect("session");
        let len = shape.iter().product();
        let images: Vec<Vec<u8>> = (0..4).map(|i| image(10 + i, len)).collect();
        let alone: Vec<Vec<f32>> = images
            .iter()
            .map(|im| engine.run(1, &[im]).expect("run"))
            .collect();
        assert_eq!(
            engine.side_by_side_runs(),
            Some(0),
            "an idle engine's run is not a lane's"
        );

        // As if another run were under way.
        let busy = engine.in_flight.enter();
        let beside = engine.run(1, &[&images[0]]).expect("lane run");
        assert!(max_abs_diff(&beside, &alone[0]) <= 1e-5);
        assert_eq!(engine.side_by_side_runs(), Some(1));
        // Many at once on the lanes' one session, each with its own image.
        let side_by_side: Vec<Vec<f32>> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..8)
                .map(|i| {
                    let (engine, image) = (&engine, &images[i % 4]);
                    s.spawn(move || {
                        (0..5)
                            .map(|_| engine.run(1, &[image]).expect("run"))
                            .last()
                            .expect("five runs")
                    })
                })
                .collect();
            runs.into_iter()
                .map(|r| r.join().expect("run thread"))
                .collect()
        });
        drop(busy);
        for (i, logits) in side_by_side.iter().enumerate() {
            let diff = max_abs_diff(logits, &alone[i % 4]);
            assert!(diff <= 1e-5, "run {i} differs by {diff}");
        }
        assert_eq!(engine.side_by_side_runs(), Some(41));
        // A batch with padding, beside another run.
        let busy = engine.in_flight.enter();
        let padded = engine.run(3, &[&images[1], &images[2]]).expect("batch");
        drop(busy);
        assert!(max_abs_diff(&padded[..1000], &alone[1]) <= 1e-5);
        assert!(max_abs_diff(&padded[1000..2000], &alone[2]) <= 1e-5);

        // One intra-op thread anyway: the one single-threaded session serves
        // every run, side by side.
        options.intra_threads = 1;
        let engine =
            OnnxRuntimeEngine::load("test", rt, &onnx, shape, 1000, &options).expect("session");
        assert!(engine.wide.is_none());
        assert!(max_abs_diff(&engine.run(1, &[&images[3]]).expect("run"), &alone[3]) <= 1e-5);
        assert_eq!(engine.side_by_side_runs(), Some(1));

        options.lanes = false;
        let engine =
            OnnxRuntimeEngine::load("test", rt, &onnx, shape, 1000, &options).expect("session");
        let _busy = engine.in_flight.enter();
        assert!(max_abs_diff(&engine.run(1, &[&images[3]]).expect("run"), &alone[3]) <= 1e-5);
        assert_eq!(engine.side_by_side_runs(), None);
    }

    #[test]
    fn refuses_a_model_that_disagrees_with_its_configs() {
        let Some(rt) = test_runtime() else { return };
        let dir = tempfile::tempdir().expect("tempdir");
        let (onnx, [_, size, _]) = tiny_model(dir.path());
        let options = OrtOptions {
            intra_threads: 1,
            spinning: false,
            cache_dir: None,
            lanes: false,
        };
        let err =
            OnnxRuntimeEngine::load("test", rt, &onnx, [3, size + 16, size + 16], 1000, &options)
                .err()
                .expect("wrong image size");
        assert!(
            format!("{err:#}").contains("preprocessor_config.json"),
            "{err:#}"
        );
        let err = OnnxRuntimeEngine::load("test", rt, &onnx, [3, size, size], 10, &options)
            .err()
            .expect("wrong label count");
        assert!(format!("{err:#}").contains("id2label"), "{err:#}");
    }

    /// Loads of one file at once share the optimised copy safely, and a
    /// damaged copy in the cache is replaced, never fatal.
    #[test]
    fn the_optimised_model_cache_survives_concurrent_loads_and_damage() {
        let Some(rt) = test_runtime() else { return };
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = tempfile::tempdir().expect("cache");
        let (onnx, shape) = tiny_model(dir.path());
        let options = OrtOptions {
            intra_threads: 1,
            spinning: false,
            cache_dir: Some(cache.path().to_path_buf()),
            lanes: false,
        };
        let image = image(3, shape.iter().product());
        let logits: Vec<Vec<f32>> = std::thread::scope(|s| {
            let loads: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let engine =
                            OnnxRuntimeEngine::load("test", rt, &onnx, shape, 1000, &options)
                                .expect("every concurrent load succeeds");
                        engine.run(1, &[&image]).expect("run")
                    })
                })
                .collect();
            loads
                .into_iter()
                .map(|l| l.join().expect("load thread"))
                .collect()
        });
        assert!(logits.windows(2).all(|w| max_abs_diff(&w[0], &w[1]) == 0.0));
        let cached: Vec<PathBuf> = std::fs::read_dir(cache.path())
            .expect("cache listing")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        assert_eq!(
            cached.len(),
            1,
            "one optimised copy, no partial files: {cached:?}"
        );

        std::fs::write(&cached[0], b"not a model").expect("damage the copy");
        let engine = OnnxRuntimeEngine::load("test", rt, &onnx, shape, 1000, &options)
            .expect("a damaged copy does not stop the load");
        assert_eq!(engine.run(1, &[&image]).expect("run"), logits[0]);
    }
}
