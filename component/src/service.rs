//! The request handler: what the component answers for a method, path and body.
//!
//! It is plain Rust so it can be tested natively; `wasi_http` only adapts it to
//! `wasi:http/incoming-handler`.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::Context;

use crate::api::{
    self, Action, ApiError, PredictRequest, Prediction, RequestLimits, Route, VersionSelector,
    VersionStatus,
};
use crate::config::{ModelConfig, PreprocessorConfig};
use crate::inference::{Engine, InferenceError};
use crate::kserve;
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
        ServiceConfig::from_vars(|k| std::env::var(k).ok())
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
        LoadedModel::from_files(&dir.display().to_string(), |name| {
            let path = dir.join(name);
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
        })
    }

    /// Loads a version folder whose files `read` returns by name; `dir` only
    /// names the folder in errors.
    pub fn from_files(
        dir: &str,
        read: impl Fn(&str) -> anyhow::Result<Vec<u8>>,
    ) -> anyhow::Result<LoadedModel> {
        let preprocessor = PreprocessorConfig::from_json(&read("preprocessor_config.json")?)
            .context("invalid preprocessor_config.json")?;
        let config =
            ModelConfig::from_json(&read("config.json")?).context("invalid config.json")?;
        let image_shape = [
            3,
            preprocessor.size.height as usize,
            preprocessor.size.width as usize,
        ];
        let [c, h, w] = image_shape;
        let num_labels = config.id2label.len();
        let engine = Engine::load(|| read("model.onnx"), c, h, w, num_labels)
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

/// An HTTP answer: status, body and what the body holds.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// `application/json`, or `application/octet-stream` when binary tensor
    /// data follows a JSON header.
    pub content_type: &'static str,
    /// The JSON header's length when binary tensor data follows it
    /// (KServe's `Inference-Header-Content-Length`).
    pub header_length: Option<usize>,
    /// Images this request ran through the model; the host's batch-size
    /// metric reads it from the `vitrine-batch-size` reply header.
    pub batch_size: Option<usize>,
}

impl Reply {
    pub fn json(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body,
            content_type: "application/json",
            header_length: None,
            batch_size: None,
        }
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        Reply::json(e.status, e.to_json())
    }
}

/// Reply header carrying [`Reply::batch_size`].
pub const BATCH_SIZE_HEADER: &str = "vitrine-batch-size";

/// Answers TF Serving REST requests for one model version.
pub struct Service {
    config: ServiceConfig,
    model: OnceLock<Result<LoadedModel, String>>,
    /// The model came loaded in the component's memory (`vitrine preinit`).
    preinitialized: bool,
}

/// Path the host uses to load the model and run one synthetic image before
/// the version is marked AVAILABLE. With `?run=0` it only loads: the host
/// path's model is shared, so one instance's inference warms it for all.
pub const WARMUP_PATH: &str = "/vitrine/warmup";

/// Liveness: the component answers at all. Under the `vitrine` host the host
/// answers it itself and never forwards it.
pub const HEALTHZ_PATH: &str = "/healthz";

/// Readiness: 200 once the model is in memory, loading it first if it is
/// not (a pre-initialized component has it already, so the probe is cheap);
/// 503 `{"error"}` when it does not load.
pub const READYZ_PATH: &str = "/readyz";

impl Service {
    pub fn new(config: ServiceConfig) -> Service {
        Service {
            config,
            model: OnceLock::new(),
            preinitialized: false,
        }
    }

    /// A service for `model`, already loaded as `model_name` at `version`:
    /// the pre-initialized component's. `config`'s limits still apply, but
    /// its model name, version and folder give way to the loaded model's.
    pub fn with_model(
        mut config: ServiceConfig,
        model_name: String,
        version: u64,
        model: LoadedModel,
    ) -> Service {
        config.model_name = model_name;
        config.version = version;
        Service {
            config,
            model: OnceLock::from(Ok(model)),
            preinitialized: true,
        }
    }

    /// The model, loaded on first use and kept for the instance's lifetime.
    pub fn model(&self) -> Result<&LoadedModel, ApiError> {
        self.model
            .get_or_init(|| LoadedModel::load(&self.config.model_dir).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| {
                ApiError::unavailable(format!(
                    "model {} version {} failed to load: {e}",
                    self.config.model_name, self.config.version
                ))
            })
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    pub fn handle(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        self.respond(method, path, None, body)
    }

    /// Like [`Service::handle`], with the request's
    /// `Inference-Header-Content-Length` (KServe's binary tensor data).
    pub fn respond(
        &self,
        method: &str,
        path: &str,
        header_length: Option<usize>,
        body: &[u8],
    ) -> Reply {
        let result = if let Some(probe) = self.probe(method, path) {
            probe
        } else if path == "/v2" || path.starts_with("/v2/") || path.starts_with("/v2?") {
            kserve::handle(self, method, path, header_length, body)
        } else {
            self.route(method, path, body)
        };
        match result {
            Ok(reply) => reply,
            Err(e) => e.into(),
        }
    }

    /// `/healthz` and `/readyz`, or `None` for any other path.
    fn probe(&self, method: &str, path: &str) -> Option<Result<Reply, ApiError>> {
        let path = path.split('?').next().unwrap_or_default();
        if path != HEALTHZ_PATH && path != READYZ_PATH {
            return None;
        }
        if method != "GET" {
            return Some(Err(ApiError::method_not_allowed(format!(
                "use GET for {path}"
            ))));
        }
        if path == HEALTHZ_PATH {
            return Some(Ok(ok(br#"{"status":"ok"}"#.to_vec())));
        }
        Some(self.model().map(|_| {
            ok(serde_json::json!({
                "status": "ready",
                "model": self.config.model_name,
                "version": self.config.version.to_string(),
                "preinitialized": self.preinitialized,
            })
            .to_string()
            .into_bytes())
        }))
    }

    fn route(&self, method: &str, path: &str, body: &[u8]) -> Result<Reply, ApiError> {
        match path.split_once('?') {
            Some((WARMUP_PATH, "run=0")) => return self.model().map(|_| ok(b"{}".to_vec())),
            None if path == WARMUP_PATH => return self.warmup(),
            _ => {}
        }
        let route = Route::parse(path)?;
        self.check_servable(&route)?;
        match (route.action, method) {
            (Action::Predict, "POST") => {
                let req = PredictRequest::parse(body, &self.config.request_limits)?;
                let predictions = self.model()?.predict(&req, &self.config.decode_limits)?;
                let mut reply = ok(api::predict_reply(req.format, predictions));
                reply.batch_size = Some(req.images.len());
                Ok(reply)
            }
            (Action::Metadata, "GET") => Ok(ok(self.metadata()?)),
            (Action::Status, "GET") => {
                let status = match self.model() {
                    Ok(_) => VersionStatus {
                        version: self.config.version,
                        state: "AVAILABLE",
                        error: None,
                    },
                    Err(e) => VersionStatus {
                        version: self.config.version,
                        state: "END",
                        error: Some(e.message),
                    },
                };
                Ok(ok(api::status_reply(&[status])))
            }
            (Action::Predict, _) => Err(ApiError::method_not_allowed("use POST for :predict")),
            _ => Err(ApiError::method_not_allowed(
                "use GET for model status and metadata",
            )),
        }
    }

    fn check_servable(&self, route: &Route) -> Result<(), ApiError> {
        if self.serves(&route.model, &route.version) {
            Ok(())
        } else {
            Err(ApiError::servable_not_found(&route.model, &route.version))
        }
    }

    /// Whether `model` at `version` names this instance's servable.
    pub fn serves(&self, model: &str, version: &VersionSelector) -> bool {
        model == self.config.model_name
            && match version {
                VersionSelector::Latest => true,
                VersionSelector::Number(v) => *v == self.config.version,
                VersionSelector::Label(_) => false,
            }
    }

    fn warmup(&self) -> Result<Reply, ApiError> {
        let model = self.model()?;
        // Mid-grey: exercises the whole graph without needing an encoder here.
        model
            .infer(1, vec![0f32; model.image_len()])
            .map_err(|e| ApiError::internal(format!("warm-up: {}", e.message)))?;
        Ok(ok(br#"{"warmed_up":true}"#.to_vec()))
    }

    /// TF Serving's `GetModelMetadata` for REST, plus what Vitrine knows about
    /// the weights.
    fn metadata(&self) -> Result<Vec<u8>, ApiError> {
        let m = self.model()?;
        let [_, height, width] = m.image_shape;
        let tensor = |dtype: &str, dims: &[i64], name: &str| {
            serde_json::json!({
                "dtype": dtype,
                "tensor_shape": {
                    "dim": dims.iter().map(|d| serde_json::json!({"size": d.to_string(), "name": ""})).collect::<Vec<_>>(),
                    "unknown_rank": false
                },
                "name": name
            })
        };
        let mut vitrine = serde_json::json!({
            "image_size": [height, width],
            "num_labels": m.num_labels,
            "inference": m.engine.kind(),
            "random_weights": m.config.random_weights,
            "preinitialized": self.preinitialized,
        });
        if m.config.random_weights {
            vitrine["warning"] =
                "this model has RANDOM weights: its predictions are meaningless".into();
        }
        let reply = serde_json::json!({
            "model_spec": {
                "name": self.config.model_name,
                "signature_name": "",
                "version": self.config.version.to_string(),
            },
            "metadata": {
                "signature_def": {
                    "signature_def": {
                        api::SIGNATURE_NAME: {
                            "inputs": { api::INPUT_NAME: tensor("DT_STRING", &[-1], "serving_default_string_input:0") },
                            "outputs": {
                                "label": tensor("DT_STRING", &[-1], "StatefulPartitionedCall:0"),
                                "confidence": tensor("DT_FLOAT", &[-1], "StatefulPartitionedCall:1"),
                            },
                            "method_name": "tensorflow/serving/predict"
                        }
                    }
                }
            },
            "vitrine": vitrine,
        });
        serde_json::to_vec(&reply).map_err(|e| ApiError::internal(e.to_string()))
    }
}

fn ok(body: Vec<u8>) -> Reply {
    Reply::json(200, body)
}
