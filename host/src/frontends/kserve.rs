//! The KServe v2 (Open Inference Protocol) front end on the REST port.
//!
//! Health, server metadata and model readiness are answered here from the
//! registry; model metadata and `infer` are forwarded, body untouched, to
//! the component instance of the version [`routing`] resolves, which speaks
//! v2 itself (JSON and the binary tensor data extension).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::json;
use vitrine_component::kserve::{self, ModelAction, V2Route};

use crate::frontends::rest;
use crate::models::registry::Registry;
use crate::routing::{self, Api, Code, Failure, Forward};

pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/v2", any(v2))
        .route("/v2/{*rest}", any(v2))
        .with_state(registry)
}

async fn v2(State(registry): State<Arc<Registry>>, req: Request) -> Response {
    match answer(&registry, req).await {
        Ok(r) => r,
        Err(f) => rest::error(f.into()),
    }
}

fn json_ok(value: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn get_only(method: &Method) -> Result<(), Failure> {
    if method == Method::GET || method == Method::HEAD {
        Ok(())
    } else {
        Err(Failure::new(
            Code::MethodNotAllowed,
            "use GET for health, metadata and ready; POST only for infer",
        ))
    }
}

async fn answer(registry: &Registry, req: Request) -> Result<Response, Failure> {
    let route = V2Route::parse(req.uri().path())?;
    let (model, selector, action) = match route {
        V2Route::ServerMetadata => {
            get_only(req.method())?;
            return Ok(json_ok(kserve::server_metadata()));
        }
        V2Route::Live => {
            get_only(req.method())?;
            return Ok(json_ok(json!({"live": true})));
        }
        V2Route::Ready => {
            get_only(req.method())?;
            if !registry.is_ready() {
                return Err(Failure::new(
                    Code::Unavailable,
                    "no model version is available yet",
                ));
            }
            return Ok(json_ok(json!({"ready": true})));
        }
        V2Route::Model {
            model,
            version,
            action,
        } => (model, version, action),
    };
    match action {
        ModelAction::Ready => {
            get_only(req.method())?;
            let resolved = routing::resolve(registry, &model, &selector)?;
            Ok(json_ok(json!({
                "name": resolved.model,
                "version": resolved.version.to_string(),
                "ready": true,
            })))
        }
        ModelAction::Metadata | ModelAction::Infer => {
            let api = if action == ModelAction::Infer {
                if req.method() != Method::POST {
                    return Err(Failure::new(Code::MethodNotAllowed, "use POST for infer"));
                }
                Some(Api::RestV2)
            } else {
                get_only(req.method())?;
                None
            };
            let started = std::time::Instant::now();
            let (parts, body) = req.into_parts();
            let body =
                routing::read_request_body(registry, &parts.headers, body, api, &model, started)
                    .await?;
            let forward = Forward {
                method: parts.method,
                headers: parts.headers,
                body,
            };
            let (_, response) = routing::call(
                registry,
                api,
                &model,
                &selector,
                |v| V2Route::model_path(&model, v, action),
                forward,
            )
            .await?;
            Ok(rest::pass_through(response))
        }
    }
}
