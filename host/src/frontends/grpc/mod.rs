//! The gRPC front end on `--port`: TF Serving's `PredictionService`
//! (Predict, Classify, GetModelMetadata) and `ModelService`
//! (GetModelStatus), plus `grpc.health.v1.Health`, so TF Serving's gRPC
//! clients work unchanged.
//!
//! Nothing here decodes an image: a request is re-encoded as a binary KServe
//! v2 infer request (the raw image bytes framed, not base64) and sent through
//! [`crate::routing`] to the component, whose binary reply becomes tensors.
//! Resolution, errors and metrics are the routing core's, shared with REST.
//!
//! - `convert`: messages to and from what the routing core speaks.
//! - `predictions`: `PredictionService`.
//! - `models`: `ModelService`.
//! - `deadlines`: the preface and every frame must arrive in time.

mod convert;
mod deadlines;
mod models;
mod predictions;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use tonic_health::ServingStatus;

use crate::models::lifecycle::Lifecycle;
use crate::models::registry::Registry;

use crate::proto::tensorflow::serving::model_service_server::ModelServiceServer;
use crate::proto::tensorflow::serving::prediction_service_server::PredictionServiceServer;
use models::Models;
use predictions::Predictions;

/// Classes a Classify reply lists per example, best first.
pub const CLASSIFY_TOP_K: usize = 5;

/// The name health checks use for the inference service.
const PREDICTION_SERVICE: &str = "tensorflow.serving.PredictionService";

/// Bounds on gRPC calls, from the flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--grpc_max_message_bytes`.
    pub max_message_bytes: usize,
    /// `--max_instances_per_request`, checked here before a message is
    /// re-encoded for the component (which checks it again).
    pub max_instances: usize,
    /// A call still running after this long is cancelled: what frees a
    /// stream whose client stalls mid-message.
    pub call_timeout: Option<Duration>,
    /// `--grpc_read_timeout_in_ms`: time to send the HTTP/2 preface after
    /// connecting, and each frame once its first byte is in.
    pub read_timeout: Option<Duration>,
}

/// Pings a connection idle this long; one that does not answer within
/// [`KEEPALIVE_TIMEOUT`] is closed, so a vanished client's connection
/// does not stay open.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Calls one connection may have open at once (hyper's default, which
/// tonic lifts); more wait in the client.
const MAX_CONCURRENT_STREAMS: u32 = 200;

/// Serves gRPC on `listener` until `shutdown` completes, then lets
/// in-flight calls finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    lifecycle: Arc<Lifecycle>,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let health_watch = tokio::spawn(report_health(reporter, registry.clone()));
    let predictions = PredictionServiceServer::new(Predictions {
        registry: registry.clone(),
        max_instances: options.max_instances,
    })
    .max_decoding_message_size(options.max_message_bytes)
    .max_encoding_message_size(options.max_message_bytes);
    let models = ModelServiceServer::new(Models {
        registry,
        lifecycle,
    });
    let mut server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    if let Some(timeout) = options.call_timeout {
        server = server.timeout(timeout);
    }
    let result = server
        .layer(tower::util::MapResponseLayer::new(
            oversized_is_resource_exhausted,
        ))
        .add_service(health)
        .add_service(predictions)
        .add_service(models)
        .serve_with_incoming_shutdown(
            deadlines::incoming(listener, options.read_timeout),
            shutdown,
        )
        .await;
    health_watch.abort();
    Ok(result?)
}

/// tonic refuses a message over the size limit with OUT_OF_RANGE; gRPC's
/// convention, and TF Serving's, is RESOURCE_EXHAUSTED, with the flag to raise.
fn oversized_is_resource_exhausted<B>(
    mut response: axum::http::Response<B>,
) -> axum::http::Response<B> {
    let headers = response.headers_mut();
    let oversized = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers.get("grpc-message").is_some_and(|m| {
            m.as_bytes()
                .windows(9)
                .any(|w| w == b"too%20lar" || w == b"too large")
        });
    if oversized {
        headers.insert("grpc-status", HeaderValue::from_static("8"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static(
                "the%20message%20is%20larger%20than%20--grpc_max_message_bytes%20allows%3B%20raise%20it%20or%20send%20fewer%20images%20per%20request",
            ),
        );
    }
    response
}

/// Keeps the health service's answer in step with the registry: SERVING
/// once a version is available, NOT_SERVING before (and after a failure).
async fn report_health(reporter: tonic_health::server::HealthReporter, registry: Arc<Registry>) {
    let mut last = None;
    loop {
        let status = if registry.is_ready() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if last != Some(status) {
            reporter.set_service_status("", status).await;
            reporter
                .set_service_status(PREDICTION_SERVICE, status)
                .await;
            last = Some(status);
        }
        // Woken by every registry change; the timeout is a backstop.
        let _ = tokio::time::timeout(Duration::from_secs(1), registry.changed.notified()).await;
    }
}
