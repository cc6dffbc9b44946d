//! The REST front end: TF Serving's `/v1/models/...` API plus health probes.
//!
//! Model status is answered here from the registry; predict and metadata go
//! to a warm component instance of the version [`Registry::resolve`] picks
//! (latest, numbered, or labelled), and the reply names it in
//! `X-Vitrine-Model-Version`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::Full;
use vitrine_component::api::{self, Action, ApiError, Route};

use crate::pool::CallError;
use crate::registry::{Registry, ResolveError};

pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .fallback(v1)
        .with_state(registry)
}

async fn ready(State(registry): State<Arc<Registry>>) -> Response {
    if registry.is_ready() {
        return (StatusCode::OK, "ready").into_response();
    }
    let unready = registry.unready_models();
    let message = if unready.is_empty() {
        "no model is configured".to_string()
    } else {
        format!("no version is available yet for: {}", unready.join(", "))
    };
    (StatusCode::SERVICE_UNAVAILABLE, message).into_response()
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
    if route.action == Action::Status {
        return status(registry, &route);
    }
    let pool = registry
        .resolve(&route.model, &route.version)
        .map_err(resolve_error)?;
    let version = pool.servable().version;
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
    // The guest sees the version it serves by number, whatever the client
    // named (latest or a label).
    let suffix = match route.action {
        Action::Predict => ":predict",
        _ => "/metadata",
    };
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let mut forward = hyper::Request::builder().method(parts.method).uri(format!(
        "http://localhost/v1/models/{}/versions/{version}{suffix}{query}",
        route.model
    ));
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
    response
        .headers_mut()
        .insert(MODEL_VERSION_HEADER, header::HeaderValue::from(version));
    Ok(response)
}

/// Names the version that answered a predict or metadata request.
pub const MODEL_VERSION_HEADER: &str = "x-vitrine-model-version";

fn resolve_error(e: ResolveError) -> ApiError {
    match e {
        ResolveError::NotFound(m) => ApiError::not_found(m),
        ResolveError::Unavailable(m) => ApiError::unavailable(m),
    }
}

fn status(registry: &Registry, route: &Route) -> Result<Response, ApiError> {
    let statuses = registry
        .status(&route.model, &route.version)
        .map_err(resolve_error)?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        api::status_reply(&statuses),
    )
        .into_response())
}
