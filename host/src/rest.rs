//! The REST front end: TF Serving's `/v1/models/...` API plus health probes.
//!
//! Model status is answered here from the registry; predict and metadata go
//! to a warm component instance of the resolved version.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::Full;
use vitrine_component::api::{self, Action, ApiError, Route, VersionSelector, VersionStatus};

use crate::pool::CallError;
use crate::server::{Registry, VersionState};

pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/vitrine/stats", get(stats))
        .fallback(v1)
        .with_state(registry)
}

async fn ready(State(registry): State<Arc<Registry>>) -> Response {
    if registry.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no model version is available yet",
        )
            .into_response()
    }
}

/// Where each available version runs its model, and how many model runs
/// and rows the host path has done: how well batching merges.
async fn stats(State(registry): State<Arc<Registry>>) -> Response {
    let versions: Vec<_> = registry
        .versions()
        .into_iter()
        .filter_map(|(version, state)| match state {
            VersionState::Available(pool) => Some((version, pool)),
            _ => None,
        })
        .map(|(version, pool)| {
            let graph = pool.servable().graph.as_ref();
            let mut v = serde_json::json!({
                "version": version.to_string(),
                "inference": if graph.is_some() { "host" } else { "guest" },
            });
            if let Some(g) = graph {
                v["batching"] = g.batching().into();
                v["runs"] = g.stats.to_json();
            }
            v
        })
        .collect();
    let body = serde_json::json!({ "models": { registry.model_name.as_str(): versions } });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        e.to_json(),
    )
        .into_response();
    // 503 here always means "not now": overloaded or still loading.
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

async fn v1(State(registry): State<Arc<Registry>>, req: Request) -> Response {
    match answer(&registry, req).await {
        Ok(r) => r,
        Err(e) => error(e),
    }
}

async fn answer(registry: &Registry, req: Request) -> Result<Response, ApiError> {
    let route = Route::parse(req.uri().path())?;
    if route.model != registry.model_name {
        return Err(ApiError::servable_not_found(&route.model, &route.version));
    }
    let version = match &route.version {
        VersionSelector::Latest => None,
        VersionSelector::Number(v) => Some(*v),
        VersionSelector::Label(l) => {
            return Err(ApiError::not_found(format!(
                "no version label \"{l}\" is assigned for model {}",
                route.model
            )));
        }
    };
    if route.action == Action::Status {
        return status(registry, &route, version);
    }
    let pool = registry
        .available(version)
        .ok_or_else(|| unavailable(registry, &route))?;
    let too_large = || {
        ApiError::too_large(format!(
            "request body is larger than {} bytes; raise --max_request_bytes or send fewer images per request",
            registry.max_request_bytes
        ))
    };
    // A declared length over the limit is refused before reading a byte.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > registry.max_request_bytes) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, registry.max_request_bytes)
        .await
        .map_err(|_| too_large())?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forward = hyper::Request::builder()
        .method(parts.method)
        .uri(format!("http://localhost{path}"));
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        forward = forward.header(header::CONTENT_TYPE, ct);
    }
    let forward = forward
        .body(Full::new(body))
        .map_err(|e| ApiError::invalid(format!("bad request: {e}")))?;
    let response = pool.handle(forward).await.map_err(|e| {
        if !matches!(e, CallError::Overloaded { .. }) {
            tracing::error!("model {} version {}: {e}", route.model, pool.servable().version);
        }
        match e {
            CallError::Deadline(d) => ApiError {
                status: 504,
                message: format!(
                    "the request took longer than {} ms and was stopped; send fewer images per request or raise --rest_api_timeout_in_ms",
                    d.as_millis()
                ),
            },
            CallError::Overloaded { .. } => ApiError::unavailable(format!(
                "model {} is overloaded: {e}; retry shortly",
                route.model
            )),
            CallError::Trap | CallError::Internal(_) => {
                ApiError::internal("the model failed on this request; the server logs say why")
            }
        }
    })?;
    let mut response = response.map(Body::new);
    // The guest answers 503 when the host's batch queue is full.
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    Ok(response)
}

/// Why no version answers: still loading, failed, or absent.
fn unavailable(registry: &Registry, route: &Route) -> ApiError {
    let versions = registry.versions();
    let wanted: Vec<_> = versions
        .iter()
        .filter(|(v, _)| match route.version {
            VersionSelector::Number(n) => *v == n,
            _ => true,
        })
        .collect();
    if wanted
        .iter()
        .any(|(_, s)| matches!(s, VersionState::Loading))
    {
        return ApiError::unavailable(format!(
            "model {} is still loading; retry shortly",
            route.model
        ));
    }
    if let Some((v, VersionState::Failed(e))) = wanted.last() {
        return ApiError::unavailable(format!(
            "model {} version {v} failed to load: {e}",
            route.model
        ));
    }
    ApiError::servable_not_found(&route.model, &route.version)
}

fn status(registry: &Registry, route: &Route, version: Option<u64>) -> Result<Response, ApiError> {
    let statuses: Vec<VersionStatus> = registry
        .versions()
        .into_iter()
        .filter(|(v, _)| version.is_none_or(|want| *v == want))
        .map(|(v, s)| {
            let (state, error) = match s {
                VersionState::Loading => ("LOADING", None),
                VersionState::Available(_) => ("AVAILABLE", None),
                VersionState::Failed(e) => ("END", Some(e)),
            };
            VersionStatus {
                version: v,
                state,
                error,
            }
        })
        .collect();
    if statuses.is_empty() {
        return Err(match version {
            Some(v) => ApiError::not_found(format!(
                "Could not find version {v} of model {}",
                route.model
            )),
            None => ApiError::not_found(format!(
                "Could not find any versions of model {}",
                route.model
            )),
        });
    }
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        api::status_reply(&statuses),
    )
        .into_response())
}
