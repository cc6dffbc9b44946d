//! The REST front end: TF Serving's `/v1/models/...` API plus health probes.
//!
//! Model status is answered from the registry; predict and metadata go to a
//! warm component instance of the version [`routing`] resolves.
//! Replies name the version that answered in `X-Vitrine-Model-Version`.
//! [`serve`] is the connection loop, with the slow-client timeouts.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use vitrine_component::api::{self, Action, ApiError, Route};

use crate::models::registry::{Registry, VersionState};
use crate::routing::{self, Api, Forward};

/// Serves `app` on `listener` until `shutdown` completes, then lets the
/// requests in flight finish.
///
/// HTTP/1.1 only, as TF Serving's REST port: with HTTP/1 the header read
/// timeout runs from the first byte a connection could send, so a client
/// that sends its headers slowly, or nothing at all, is disconnected after
/// `header_read_timeout`, and so is an idle keep-alive connection. (axum's
/// own `serve` has no such timeout, and HTTP/2 detection waits unbounded
/// for a connection's first bytes.)
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    header_read_timeout: Option<Duration>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let connections = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // A reply's headers and its body leave in separate
                    // writes (the body streams from the guest). With Nagle's
                    // algorithm the body would wait for the client's delayed
                    // ACK of the headers, up to 40 ms on Linux.
                    let _ = stream.set_nodelay(true);
                    stream
                }
                Err(e) => {
                    // Out of file descriptors, typically: wait rather than spin.
                    tracing::warn!("cannot accept a REST connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Timeouts and clients that hang up: theirs, not the server's.
                tracing::debug!("REST connection ended: {e}");
            }
        });
    }
    // New connections are refused from here on; open ones finish their
    // request and close.
    drop(listener);
    connections.shutdown().await;
}

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

/// Where each available version runs its model, and how many model runs
/// and rows the host path has done: how well batching merges.
async fn stats(State(registry): State<Arc<Registry>>) -> Response {
    let mut models = serde_json::Map::new();
    for model in registry.model_names() {
        let versions: Vec<_> = registry
            .versions(&model)
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
                    "engine": graph.map_or("tract", |g| g.engine_name()),
                });
                if let Some(g) = graph {
                    v["engine"] = g.engine_name().into();
                    v["batching"] = g.batching().into();
                    v["runs"] = g.stats.to_json();
                    if let Some(n) = g.side_by_side_runs() {
                        v["runs"]["side_by_side"] = n.into();
                    }
                }
                v
            })
            .collect();
        models.insert(model, versions.into());
    }
    let body = serde_json::json!({
        "models": models,
        "heap_in_use_bytes": crate::runtime::memory::heap_in_use(),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn error(e: ApiError) -> Response {
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

/// A component reply as the HTTP front ends send it on: a 503 from the
/// guest means "not now" too, and says when to retry.
pub(crate) fn pass_through(response: crate::runtime::pool::Response) -> Response {
    let mut response = response.map(Body::new);
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
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
        let statuses = routing::status(registry, &route.model, &route.version)?;
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            api::status_reply(&statuses),
        )
            .into_response());
    }
    let started = std::time::Instant::now();
    let api = (route.action == Action::Predict).then_some(Api::RestV1);
    let (parts, body) = req.into_parts();
    let body =
        routing::read_request_body(registry, &parts.headers, body, api, &route.model, started)
            .await?;
    let path = |version: u64| {
        let suffix = match route.action {
            Action::Predict => ":predict",
            _ => "/metadata",
        };
        format!("/v1/models/{}/versions/{version}{suffix}", route.model)
    };
    let forward = Forward {
        method: parts.method,
        headers: parts.headers,
        body,
    };
    let (resolved, response) =
        routing::call(registry, api, &route.model, &route.version, path, forward).await?;
    let mut response = pass_through(response);
    response.headers_mut().insert(
        MODEL_VERSION_HEADER,
        header::HeaderValue::from(resolved.version),
    );
    Ok(response)
}

/// Names the version that answered a predict or metadata request.
pub const MODEL_VERSION_HEADER: &str = "x-vitrine-model-version";
