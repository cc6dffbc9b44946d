//! `POST /v1/admin/reload-config`: the REST counterpart of TF Serving's
//! `ModelService.HandleReloadConfigRequest`.
//!
//! The body is `{"config": "<ModelServerConfig in text format>"}`, or empty
//! (or `{}`) to re-read `--model_config_file`. The reply comes once the new
//! config's models have loaded and its version labels are assigned: 200 with
//! `{"status": {"error_code": "OK", ...}, "models": [...]}`, or 400 with
//! `{"error": "..."}`. Off unless `--enable_admin_api`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::models::lifecycle::{ConfigSource, Lifecycle};
use crate::routing;

pub const RELOAD_PATH: &str = "/v1/admin/reload-config";

#[derive(Clone)]
struct Admin {
    lifecycle: Arc<Lifecycle>,
    enabled: bool,
    /// `--max_request_bytes` and `--rest_api_body_read_timeout_in_ms`.
    max_body_bytes: usize,
    body_read_timeout: Option<Duration>,
}

pub fn router(
    lifecycle: Arc<Lifecycle>,
    enabled: bool,
    max_body_bytes: usize,
    body_read_timeout: Option<Duration>,
) -> Router {
    Router::new()
        .route(RELOAD_PATH, post(reload))
        .with_state(Admin {
            lifecycle,
            enabled,
            max_body_bytes,
            body_read_timeout,
        })
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json(status, serde_json::json!({ "error": message.into() }))
}

async fn reload(State(admin): State<Admin>, req: Request) -> Response {
    if !admin.enabled {
        return error(
            StatusCode::FORBIDDEN,
            "the admin API is off; start vitrine with --enable_admin_api to reload the model config over REST",
        );
    }
    let (parts, body) = req.into_parts();
    let body = match routing::read_body(
        &parts.headers,
        body,
        admin.max_body_bytes,
        admin.body_read_timeout,
    )
    .await
    {
        Ok(body) => body,
        Err(f) => {
            let status =
                StatusCode::from_u16(f.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            return error(status, f.message);
        }
    };
    let source = if body.iter().all(u8::is_ascii_whitespace) {
        ConfigSource::File
    } else {
        let value: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the body is not JSON ({e}); send {{\"config\": \"model_config_list {{ ... }}\"}}, or nothing to re-read --model_config_file"
                    ),
                );
            }
        };
        match value.get("config") {
            None if value.as_object().is_some_and(|o| o.is_empty()) => ConfigSource::File,
            Some(serde_json::Value::String(text)) => ConfigSource::Text(text.clone()),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "send {\"config\": \"model_config_list { ... }\"} (the config in TF Serving's text format, as a string), or nothing to re-read --model_config_file",
                );
            }
        }
    };
    match admin.lifecycle.reload(source).await {
        Ok(()) => {
            let models: Vec<serde_json::Value> = admin
                .lifecycle
                .configs()
                .iter()
                .map(|c| c.to_json())
                .collect();
            json(
                StatusCode::OK,
                serde_json::json!({
                    "status": {"error_code": "OK", "error_message": ""},
                    "models": models,
                }),
            )
        }
        Err(e) => error(StatusCode::BAD_REQUEST, format!("{}: {e}", e.code())),
    }
}
