//! TF Serving's REST paths: which model, which version, which action.

use super::error::ApiError;
use super::version::VersionSelector;

/// What a `/v1/models/...` path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Status,
    Metadata,
    Predict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub model: String,
    pub version: VersionSelector,
    pub action: Action,
}

impl Route {
    /// Parses TF Serving's REST paths:
    /// `/v1/models/{m}[/versions/{v} | /labels/{l}][:predict | /metadata]`.
    pub fn parse(path: &str) -> Result<Route, ApiError> {
        let path = path.split('?').next().unwrap_or_default();
        let rest = path
            .strip_prefix("/v1/models/")
            .ok_or_else(|| ApiError::not_found(format!("no such endpoint: {path}")))?;
        let malformed = || {
            ApiError::not_found(format!(
                "malformed request path {path}: expected /v1/models/<name>[/versions/<n>][:predict|/metadata]"
            ))
        };
        let (rest, action) = match rest.strip_suffix(":predict") {
            Some(r) => (r, Action::Predict),
            None => match rest.strip_suffix("/metadata") {
                Some(r) => (r, Action::Metadata),
                None => (rest.trim_end_matches('/'), Action::Status),
            },
        };
        if rest.contains(':') {
            let verb = rest.rsplit(':').next().unwrap_or_default();
            return Err(ApiError::not_found(format!(
                "unsupported method :{verb}; this server answers :predict"
            )));
        }
        let segments: Vec<&str> = rest.split('/').collect();
        let (model, version) = match segments.as_slice() {
            [m] => (*m, VersionSelector::Latest),
            [m, "versions", v] => {
                let n = v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ApiError::invalid(format!("version must be a positive integer, got {v:?}"))
                })?;
                (*m, VersionSelector::Number(n))
            }
            [m, "labels", l] if !l.is_empty() => (*m, VersionSelector::Label((*l).to_string())),
            _ => return Err(malformed()),
        };
        if model.is_empty() {
            return Err(malformed());
        }
        Ok(Route {
            model: model.to_string(),
            version,
            action,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(p: &str) -> Route {
        Route::parse(p).expect(p)
    }

    #[test]
    fn routes() {
        assert_eq!(
            route("/v1/models/hf-vit:predict"),
            Route {
                model: "hf-vit".into(),
                version: VersionSelector::Latest,
                action: Action::Predict
            }
        );
        assert_eq!(
            route("/v1/models/hf-vit/versions/3:predict").version,
            VersionSelector::Number(3)
        );
        assert_eq!(
            route("/v1/models/m/labels/stable:predict").version,
            VersionSelector::Label("stable".into())
        );
        assert_eq!(route("/v1/models/m/metadata").action, Action::Metadata);
        assert_eq!(
            route("/v1/models/m/versions/2/metadata").version,
            VersionSelector::Number(2)
        );
        assert_eq!(route("/v1/models/m").action, Action::Status);
        assert_eq!(route("/v1/models/m/versions/7").action, Action::Status);
        assert_eq!(
            Route::parse("/v1/models/m/versions/x:predict")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            Route::parse("/v1/models/m/versions/0:predict")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            Route::parse("/v1/models/m:classify").unwrap_err().status,
            404
        );
        assert_eq!(Route::parse("/v2/models/m").unwrap_err().status, 404);
        assert_eq!(Route::parse("/v1/models/:predict").unwrap_err().status, 404);
        assert_eq!(Route::parse("/v1/models/a/b/c/d").unwrap_err().status, 404);
    }
}
