//! A model version: where it comes from ([`ServiceConfig`]) and the model
//! loaded into memory ([`LoadedModel`]), which preprocesses, runs and labels
//! a batch.

use std::path::PathBuf;

use anyhow::Context;

use crate::api::{ApiError, PredictRequest, Prediction, RequestLimits};
use crate::config::{ModelConfig, PreprocessorConfig};
use crate::inference::{Engine, InferenceError, OnnxFile};
use crate::postprocess;
use crate::preprocess::{self, DecodeLimits};

/// Where the served model comes from and how requests are bounded.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub model_name: String,
    pub version: u64,
    /// The version folder: `model.onnx`, `config.json`, `preprocessor_config.json`.
    pub model_dir: PathBuf,
    pub request_limits: RequestLimits,
    pub decode_limits: DecodeLimits,
}

impl ServiceConfig {
    /// Reads `VITRINE_MODEL_NAME` (default `hf-vit`), `VITRINE_MODEL_VERSION`
    /// (default 1) and `VITRINE_MODEL_DIR` (default `/model`), so the same
    /// component runs under our host, `wasmtime serve --env` and Spin.
    pub fn from_env() -> ServiceConfig {
        ServiceConfig::from_vars(crate::variables::environment)
    }

    /// Like [`ServiceConfig::from_env`], with the variables `lookup` gives by
    /// their environment names (Spin's variables, under the `spin-variables`
    /// build).
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> ServiceConfig {
        let var = |k: &str| lookup(k).filter(|v| !v.is_empty());
        ServiceConfig {
            model_name: var("VITRINE_MODEL_NAME").unwrap_or_else(|| "hf-vit".into()),
            version: var("VITRINE_MODEL_VERSION")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
            model_dir: var("VITRINE_MODEL_DIR")
                .unwrap_or_else(|| "/model".into())
                .into(),
            // VITRINE_MAX_INSTANCES, _MAX_JSON_DEPTH, _MAX_IMAGE_PIXELS, _MAX_IMAGE_DIMENSION.
            request_limits: RequestLimits::from_vars(&lookup),
            decode_limits: DecodeLimits::from_vars(&lookup),
        }
    }
}

/// A model version loaded into memory, ready to answer.
pub struct LoadedModel {
    pub engine: Engine,
    pub preprocessor: PreprocessorConfig,
    pub config: ModelConfig,
    /// `[channels, height, width]` of one image's pixel tensor.
    pub image_shape: [usize; 3],
    pub num_labels: usize,
}

impl LoadedModel {
    /// Loads the version folder `dir`.
    pub fn load(dir: &std::path::Path) -> anyhow::Result<LoadedModel> {
        let fail = |name: &str, e: std::io::Error| {
            // WASI refuses to follow a symlink out of the preopened folder (a
            // Hugging Face cache snapshot is made of them).
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                "; if it is a symlink to a file outside the version folder, the \
                 sandbox cannot follow it: copy the file into the folder"
            } else {
                ""
            };
            anyhow::anyhow!("cannot read {}: {e}{hint}", dir.join(name).display())
        };
        LoadedModel::from_files(
            &dir.display().to_string(),
            |name| std::fs::read(dir.join(name)).map_err(|e| fail(name, e)),
            |name| match std::fs::File::open(dir.join(name)) {
                Ok(file) => Ok(Box::new(file) as Box<dyn OnnxFile>),
                Err(e) => Err(fail(name, e)),
            },
        )
    }

    /// Loads a version folder whose files `read` returns by name, and whose
    /// `model.onnx` `open` opens; `dir` only names the folder in errors.
    pub fn from_files(
        dir: &str,
        read: impl Fn(&str) -> anyhow::Result<Vec<u8>>,
        open: impl FnOnce(&str) -> anyhow::Result<Box<dyn OnnxFile>>,
    ) -> anyhow::Result<LoadedModel> {
        let config =
            ModelConfig::from_json(&read("config.json")?).context("invalid config.json")?;
        // transformers picks the processor from config.json's model_type when
        // preprocessor_config.json names none.
        let preprocessor = PreprocessorConfig::from_json_for_model(
            &read("preprocessor_config.json")?,
            config.model_type.as_deref(),
        )
        .context("invalid preprocessor_config.json")?;
        let size = preprocessor.input_size;
        let image_shape = [3, size.height as usize, size.width as usize];
        let [c, h, w] = image_shape;
        let num_labels = config.id2label.len();
        let engine = Engine::load(|| open("model.onnx"), c, h, w, num_labels)
            .with_context(|| format!("cannot load the model in {dir}"))?;
        Ok(LoadedModel {
            engine,
            preprocessor,
            config,
            image_shape,
            num_labels,
        })
    }

    /// Elements in one image's pixel tensor.
    pub fn image_len(&self) -> usize {
        self.image_shape.iter().product()
    }

    /// Logits `[n, num_labels]` for `pixels` laid out `[n, c, h, w]`.
    pub fn infer(&self, n: usize, pixels: Vec<f32>) -> Result<Vec<f32>, ApiError> {
        self.engine.run(n, pixels).map_err(|e| match e {
            InferenceError::Overloaded(m) => ApiError::unavailable(m),
            InferenceError::Failed(m) => ApiError::internal(format!("inference failed: {m}")),
        })
    }

    /// The warm-up's synthetic inference: one all-zero (mid-grey after
    /// normalisation) image through the whole graph, which needs no encoder.
    /// Run by the host's warm-up, or once by `vitrine preinit` for a snapshot.
    pub fn infer_synthetic(&self) -> Result<(), ApiError> {
        self.infer(1, vec![0f32; self.image_len()]).map(|_| ())
    }

    /// Preprocesses every image into one batch tensor, runs it once, and
    /// returns `(top_k labels, logits row)` per image.
    pub fn predict(
        &self,
        req: &PredictRequest,
        limits: &DecodeLimits,
    ) -> Result<Vec<Prediction>, ApiError> {
        let len = self.image_len();
        let mut pixels = vec![0f32; len * req.images.len()];
        for (i, (bytes, row)) in req
            .images
            .iter()
            .zip(pixels.chunks_exact_mut(len))
            .enumerate()
        {
            preprocess::preprocess_into(bytes, &self.preprocessor, limits, row)
                .map_err(|e| ApiError::invalid(format!("instance {i}: {e}")))?;
        }
        let logits = self.infer(req.images.len(), pixels)?;
        Ok(logits
            .chunks_exact(self.num_labels)
            .map(|row| {
                let probs = postprocess::softmax(row);
                let top: Vec<(String, f32)> = postprocess::top_k(&probs, req.top_k)
                    .into_iter()
                    .map(|(i, p)| (postprocess::label(&self.config.id2label, i), p))
                    .collect();
                Prediction::new(&top, req.return_logits.then(|| row.to_vec()))
            })
            .collect())
    }
}
