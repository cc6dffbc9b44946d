//! Adapts [`crate::service`] to `wasi:http/incoming-handler` through spin-sdk.

use std::sync::OnceLock;

use spin_sdk::http::{IncomingRequest, Response};
use spin_sdk::http_component;

use crate::api::ApiError;
use crate::kserve::HEADER_LENGTH;
use crate::service::{BATCH_SIZE_HEADER, Service, ServiceConfig};

/// One service per instance: the model is loaded by the first request and
/// reused by every later one the instance serves, unless the component was
/// pre-initialized and the model is already in memory.
fn service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let config = ServiceConfig::from_vars(crate::variables::lookup);
        match crate::preinit::take() {
            Some(p) => Service::with_model(config, p.model_name, p.version, p.model),
            None => Service::new(config),
        }
    })
}

#[http_component]
async fn handle(req: IncomingRequest) -> Response {
    let method = req.method().to_string();
    let path = req.path_with_query().unwrap_or_default();
    // KServe's binary tensor data: the JSON header's length, if given.
    let header_length = match req.headers().get(HEADER_LENGTH).first() {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "{HEADER_LENGTH} must be the JSON header's length in bytes"
                ))
            }),
    };
    let reply = match (header_length, req.into_body().await) {
        (Ok(header_length), Ok(body)) => service().respond(&method, &path, header_length, &body),
        (Err(e), _) => e.into(),
        (_, Err(e)) => ApiError::invalid(format!("cannot read request body: {e}")).into(),
    };
    let mut response = Response::builder();
    response
        .status(reply.status)
        .header("content-type", reply.content_type);
    if let Some(n) = reply.header_length {
        response.header(HEADER_LENGTH, n.to_string());
    }
    if let Some(n) = reply.batch_size {
        response.header(BATCH_SIZE_HEADER, n.to_string());
    }
    response.body(reply.body).build()
}
