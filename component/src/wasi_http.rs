//! Adapts [`crate::service`] to `wasi:http/incoming-handler` through spin-sdk.

use std::sync::OnceLock;

use spin_sdk::http::{IncomingRequest, Response};
use spin_sdk::http_component;

use crate::service::{Service, ServiceConfig};

/// One service per instance: the model is loaded by the first request and
/// reused by every later one the instance serves.
fn service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    SERVICE.get_or_init(|| Service::new(ServiceConfig::from_env()))
}

#[http_component]
async fn handle(req: IncomingRequest) -> Response {
    let method = req.method().to_string();
    let path = req.path_with_query().unwrap_or_default();
    let reply = match req.into_body().await {
        Ok(body) => service().handle(&method, &path, &body),
        Err(e) => crate::api::ApiError::invalid(format!("cannot read request body: {e}")).into(),
    };
    Response::builder()
        .status(reply.status)
        .header("content-type", "application/json")
        .body(reply.body)
        .build()
}
