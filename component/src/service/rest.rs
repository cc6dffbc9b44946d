//! TF Serving's REST routes (predict, status, metadata) and the warm-up
//! path; `/v2` requests go on to [`super::v2`].

use crate::api::{self, Action, ApiError, PredictRequest, Route, VersionStatus};

use super::instance::Service;
use super::reply::{Reply, ok};
use super::v2;

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
            v2::handle(self, method, path, header_length, body)
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

    fn warmup(&self) -> Result<Reply, ApiError> {
        let model = self.model()?;
        if self.preinitialized {
            // `vitrine preinit` ran this inference on these very bytes before
            // the snapshot; on wasm one more costs a core for a second or
            // more (ViT-B/16) and warms only an instance that an instance
            // per request never reuses.
            return Ok(ok(br#"{"warmed_up":true,"at":"preinit"}"#.to_vec()));
        }
        model
            .infer_synthetic()
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
            "preprocessing": m.preprocessor.describe(),
            "num_labels": m.num_labels,
            "inference": m.engine.kind(),
            "engine": m.engine.engine_name(),
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
