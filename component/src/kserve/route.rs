//! The v2 paths (health, server and model metadata, ready, infer) and the
//! server metadata.

use serde_json::{Value, json};

use crate::api::{ApiError, VersionSelector};

/// What a `/v2/...` path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V2Route {
    ServerMetadata,
    Live,
    Ready,
    Model {
        model: String,
        version: VersionSelector,
        action: ModelAction,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelAction {
    Metadata,
    Ready,
    Infer,
}

impl V2Route {
    /// Parses `/v2`, `/v2/health/{live,ready}` and
    /// `/v2/models/{m}[/versions/{v}][/ready | /infer]`.
    pub fn parse(path: &str) -> Result<V2Route, ApiError> {
        let path = path.split('?').next().unwrap_or_default();
        let trimmed = path.trim_end_matches('/');
        match trimmed {
            "/v2" => return Ok(V2Route::ServerMetadata),
            "/v2/health/live" => return Ok(V2Route::Live),
            "/v2/health/ready" => return Ok(V2Route::Ready),
            _ => {}
        }
        let rest = trimmed
            .strip_prefix("/v2/models/")
            .ok_or_else(|| ApiError::not_found(format!("no such endpoint: {path}")))?;
        let segments: Vec<&str> = rest.split('/').collect();
        let (model, version, action) = match segments.as_slice() {
            [m] => (*m, None, ModelAction::Metadata),
            [m, "ready"] => (*m, None, ModelAction::Ready),
            [m, "infer"] => (*m, None, ModelAction::Infer),
            [m, "versions", v] => (*m, Some(*v), ModelAction::Metadata),
            [m, "versions", v, "ready"] => (*m, Some(*v), ModelAction::Ready),
            [m, "versions", v, "infer"] => (*m, Some(*v), ModelAction::Infer),
            _ => {
                return Err(ApiError::not_found(format!(
                    "malformed request path {path}: expected /v2/models/<name>[/versions/<n>][/ready|/infer]"
                )));
            }
        };
        if model.is_empty() {
            return Err(ApiError::not_found(format!(
                "malformed request path {path}: the model name is empty"
            )));
        }
        let version = match version {
            None => VersionSelector::Latest,
            Some(v) => {
                VersionSelector::Number(v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(
                    || ApiError::invalid(format!("version must be a positive integer, got {v:?}")),
                )?)
            }
        };
        Ok(V2Route::Model {
            model: model.to_string(),
            version,
            action,
        })
    }

    /// The path of `action` on exactly `version` of `model`.
    pub fn model_path(model: &str, version: u64, action: ModelAction) -> String {
        let suffix = match action {
            ModelAction::Metadata => "",
            ModelAction::Ready => "/ready",
            ModelAction::Infer => "/infer",
        };
        format!("/v2/models/{model}/versions/{version}{suffix}")
    }
}

/// The v2 server metadata, the same whoever answers `/v2`.
pub fn server_metadata() -> Value {
    json!({
        "name": "vitrine",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "classification"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(V2Route::parse("/v2").unwrap(), V2Route::ServerMetadata);
        assert_eq!(V2Route::parse("/v2/health/ready").unwrap(), V2Route::Ready);
        assert_eq!(
            V2Route::parse("/v2/models/hf-vit/versions/3/infer").unwrap(),
            V2Route::Model {
                model: "hf-vit".into(),
                version: VersionSelector::Number(3),
                action: ModelAction::Infer
            }
        );
        assert_eq!(
            V2Route::parse("/v2/models/m/ready").unwrap(),
            V2Route::Model {
                model: "m".into(),
                version: VersionSelector::Latest,
                action: ModelAction::Ready
            }
        );
        assert_eq!(
            V2Route::parse("/v2/models/m/versions/x")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(V2Route::parse("/v2/models/m/x/y").unwrap_err().status, 404);
        assert_eq!(V2Route::parse("/v2/repository").unwrap_err().status, 404);
        assert_eq!(
            V2Route::model_path("m", 2, ModelAction::Infer),
            "/v2/models/m/versions/2/infer"
        );
    }
}
