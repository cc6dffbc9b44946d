//! The onnxruntime engine: a model version's graph run by onnxruntime's CPU
//! execution provider (MLAS kernels), through the `ort` crate.
//!
//! The library is not linked: `libonnxruntime.so` (1.31 or later, as the
//! `onnxruntime` wheel on PyPI ships it) is dlopened at run time from the
//! first place in [`library::candidates`] where it loads, so a machine without it
//! still runs the tract engine. Loading happens once per process
//! ([`runtime`]); every session is built on that one environment.
//!
//! One session per model version, built and optimised once at load and
//! freed when the engine is dropped. `ort`'s `Session::run` takes `&mut
//! self`, so runs of one session take turns behind a lock: each run already
//! spreads over every intra-op thread, and concurrent requests are merged
//! into one run by the batcher rather than run side by side.

mod cache;
mod library;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, bail, ensure};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{Tensor, ValueType};

use self::cache::optimised_copy;
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
}

/// One model version's graph in one onnxruntime session.
pub struct OnnxRuntimeEngine {
    /// `model m version v`, for the log.
    label: String,
    session: Mutex<Session>,
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
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
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
            build_session(runtime, &copy, threads, options.spinning)
                .map_err(|e| {
                    tracing::warn!(
                        "{label}: the cached optimised model {} does not load ({e}); removing it and loading {}",
                        copy.display(),
                        model_onnx.display()
                    );
                    let _ = std::fs::remove_file(&copy);
                })
                .ok()
        });
        let session = match cached {
            Some(session) => session,
            None => build_session(runtime, model_onnx, threads, options.spinning).with_context(
                || {
                    format!(
                        "onnxruntime cannot parse {} as ONNX; is it a ViT image classifier?",
                        model_onnx.display()
                    )
                },
            )?,
        };
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
        Ok(OnnxRuntimeEngine {
            label: label.to_string(),
            session: Mutex::new(session),
            image_shape,
            num_labels,
            logits,
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
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session.run(ort::inputs![input])?;
        let (shape, logits) = outputs[self.logits].try_extract_tensor::<f32>()?;
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

    #[test]
    fn refuses_a_model_that_disagrees_with_its_configs() {
        let Some(rt) = test_runtime() else { return };
        let dir = tempfile::tempdir().expect("tempdir");
        let (onnx, [_, size, _]) = tiny_model(dir.path());
        let options = OrtOptions {
            intra_threads: 1,
            spinning: false,
            cache_dir: None,
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
