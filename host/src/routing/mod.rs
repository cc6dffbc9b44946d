//! The one routing core behind every front end. REST v1, KServe v2 and gRPC
//! resolve a model, version or label here, call the version's component
//! instances here, and are counted here; they differ only in how they encode
//! requests and replies. A rule about which version answers, or what an
//! error means, is written once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use vitrine_component::api::{ApiError, VersionSelector, VersionStatus};
use vitrine_component::service::BATCH_SIZE_HEADER;

use crate::metrics;
use crate::models::registry::{Registry, ResolveError};
use crate::runtime::pool::{self, CallError, InstancePool, Timing};

/// Which front end a request came through, as the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    RestV1,
    RestV2,
    Grpc,
}

impl Api {
    pub fn label(self) -> &'static str {
        match self {
            Api::RestV1 => "rest_v1",
            Api::RestV2 => "rest_v2",
            Api::Grpc => "grpc",
        }
    }
}

/// Why a request failed, in terms every protocol can express.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument,
    NotFound,
    MethodNotAllowed,
    /// The request itself is too large.
    TooLarge,
    /// The client did not send its request in time.
    RequestTimeout,
    /// Every instance is busy and the queue is full.
    Overloaded,
    /// No version can answer now: loading, or failed to load.
    Unavailable,
    Deadline,
    Internal,
}

impl Code {
    pub fn http_status(self) -> u16 {
        match self {
            Code::InvalidArgument => 400,
            Code::NotFound => 404,
            Code::MethodNotAllowed => 405,
            Code::TooLarge => 413,
            Code::RequestTimeout => 408,
            Code::Overloaded | Code::Unavailable => 503,
            Code::Deadline => 504,
            Code::Internal => 500,
        }
    }

    pub fn from_http_status(status: u16) -> Code {
        match status {
            400 => Code::InvalidArgument,
            404 => Code::NotFound,
            405 => Code::MethodNotAllowed,
            413 => Code::TooLarge,
            408 => Code::RequestTimeout,
            503 => Code::Unavailable,
            504 => Code::Deadline,
            _ => Code::Internal,
        }
    }

    pub fn grpc(self) -> tonic::Code {
        match self {
            Code::InvalidArgument => tonic::Code::InvalidArgument,
            Code::NotFound => tonic::Code::NotFound,
            Code::MethodNotAllowed => tonic::Code::Unimplemented,
            Code::TooLarge | Code::Overloaded => tonic::Code::ResourceExhausted,
            Code::Unavailable => tonic::Code::Unavailable,
            Code::Deadline | Code::RequestTimeout => tonic::Code::DeadlineExceeded,
            Code::Internal => tonic::Code::Internal,
        }
    }

    /// The canonical status name, as TF Serving's request metrics use it.
    pub fn name(self) -> &'static str {
        match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::NotFound => "NOT_FOUND",
            Code::MethodNotAllowed => "UNIMPLEMENTED",
            Code::TooLarge | Code::Overloaded => "RESOURCE_EXHAUSTED",
            Code::Unavailable => "UNAVAILABLE",
            Code::Deadline | Code::RequestTimeout => "DEADLINE_EXCEEDED",
            Code::Internal => "INTERNAL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: Code,
    pub message: String,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(Code::InvalidArgument, message)
    }

    pub fn grpc(&self) -> tonic::Status {
        tonic::Status::new(self.code.grpc(), self.message.clone())
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        Failure::new(Code::from_http_status(e.status), e.message)
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> ApiError {
        ApiError {
            status: f.code.http_status(),
            message: f.message,
        }
    }
}

/// The version chosen to answer a request.
#[derive(Clone)]
pub struct Resolved {
    pub model: String,
    pub version: u64,
    pub pool: Arc<InstancePool>,
}

/// Picks the version of `model` that answers `selector`: the registry's
/// one resolution, so every front end treats versions and labels alike.
pub fn resolve(
    registry: &Registry,
    model: &str,
    selector: &VersionSelector,
) -> Result<Resolved, Failure> {
    let pool = registry.resolve(model, selector).map_err(resolve_failure)?;
    Ok(Resolved {
        model: model.to_string(),
        version: pool.servable().version,
        pool,
    })
}

fn resolve_failure(e: ResolveError) -> Failure {
    match e {
        ResolveError::NotFound(m) => Failure::new(Code::NotFound, m),
        ResolveError::Unavailable(m) => Failure::new(Code::Unavailable, m),
    }
}

/// Every version of `model` that `selector` names, with its state.
pub fn status(
    registry: &Registry,
    model: &str,
    selector: &VersionSelector,
) -> Result<Vec<VersionStatus>, Failure> {
    registry.status(model, selector).map_err(resolve_failure)
}

/// A request for the component, with the path still to be given its
/// resolved version.
pub struct Forward {
    pub method: hyper::Method,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Headers a front end passes on to the component; everything else stays
/// on the host.
pub const FORWARDED_HEADERS: [&str; 2] = ["content-type", vitrine_component::kserve::HEADER_LENGTH];

/// Resolves `model` at `selector` and sends `forward` to `path(version)` on
/// one of that version's instances. An inference call (`api` given) is
/// counted and timed in the metrics, whatever its outcome.
pub async fn call(
    registry: &Registry,
    api: Option<Api>,
    model: &str,
    selector: &VersionSelector,
    path: impl FnOnce(u64) -> String,
    forward: Forward,
) -> Result<(Resolved, pool::Response), Failure> {
    let started = Instant::now();
    let resolved = match resolve(registry, model, selector) {
        Ok(r) => r,
        Err(f) => {
            if let Some(api) = api {
                record_refused(registry, api, model, f.code, started);
            }
            return Err(f);
        }
    };
    let timing = match api {
        Some(_) => Timing::Phases,
        None => Timing::Untimed,
    };
    let result = send(&resolved, path(resolved.version), forward, timing).await;
    if let Some(api) = api {
        let status = match &result {
            Ok(response) if response.status().is_success() => "OK",
            Ok(response) => Code::from_http_status(response.status().as_u16()).name(),
            Err(f) => f.code.name(),
        };
        metrics::record_request(
            &resolved.model,
            Some(resolved.version),
            api.label(),
            status,
            started.elapsed(),
        );
    }
    let mut response = result?;
    if let Some(n) = response
        .headers_mut()
        .remove(BATCH_SIZE_HEADER)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
    {
        // A guest runs each request's images as one batch; on the host path
        // the native backend records the runs it makes instead.
        if resolved.pool.servable().graph.is_none() {
            metrics::record_batch(&resolved.model, resolved.version, n);
        }
    }
    Ok((resolved, response))
}

/// Counts an inference request refused before it reached a version: no
/// such version, or input a front end could not even encode.
/// Reads a request's body within the registry's size and time limits; a
/// refusal of an inference (`api` given) is counted in the metrics.
pub async fn read_request_body(
    registry: &Registry,
    headers: &HeaderMap,
    body: axum::body::Body,
    api: Option<Api>,
    model: &str,
    started: Instant,
) -> Result<Bytes, Failure> {
    read_body(
        headers,
        body,
        registry.max_request_bytes,
        registry.body_read_timeout,
    )
    .await
    .inspect_err(|f| {
        if let Some(api) = api {
            record_refused(registry, api, model, f.code, started);
        }
    })
}

pub fn record_refused(registry: &Registry, api: Api, model: &str, code: Code, started: Instant) {
    // Names of unknown models are the client's to choose: they are not
    // metric labels.
    let name = if registry.has_model(model) { model } else { "" };
    metrics::record_request(name, None, api.label(), code.name(), started.elapsed());
}

async fn send(
    resolved: &Resolved,
    path: String,
    forward: Forward,
    timing: Timing,
) -> Result<pool::Response, Failure> {
    let mut request = hyper::Request::builder()
        .method(forward.method)
        .uri(format!("http://localhost{path}"));
    for name in FORWARDED_HEADERS {
        if let Some(value) = forward.headers.get(name) {
            request = request.header(name, value);
        }
    }
    let request = request
        .body(Full::new(forward.body))
        .map_err(|e| Failure::invalid(format!("bad request: {e}")))?;
    resolved.pool.handle(request, timing).await.map_err(|e| {
        if !matches!(e, CallError::Overloaded { .. }) {
            tracing::error!("model {} version {}: {e}", resolved.model, resolved.version);
        }
        match e {
            CallError::Deadline(d) => Failure::new(
                Code::Deadline,
                format!(
                    "the request took longer than {} ms and was stopped; send fewer images per request or raise --rest_api_timeout_in_ms",
                    d.as_millis()
                ),
            ),
            CallError::Overloaded { .. } => Failure::new(
                Code::Overloaded,
                format!("model {} is overloaded: {e}; retry shortly", resolved.model),
            ),
            CallError::Trap | CallError::Internal(_) => Failure::new(
                Code::Internal,
                "the model failed on this request; the server logs say why",
            ),
        }
    })
}

/// Reads a component reply whole: its headers and body on success, its
/// `{"error": ...}` as a [`Failure`] otherwise.
pub async fn read_reply(response: pool::Response) -> Result<(HeaderMap, Bytes), Failure> {
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| {
            Failure::new(
                Code::Internal,
                format!("cannot read the model's reply: {e}"),
            )
        })?
        .to_bytes();
    if parts.status.is_success() {
        return Ok((parts.headers, body));
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    // The guest says 503 both for "still loading" and for a full batch
    // queue; only the latter is RESOURCE_EXHAUSTED.
    let code = match Code::from_http_status(parts.status.as_u16()) {
        Code::Unavailable
            if message.starts_with(vitrine_component::inference::OVERLOADED_PREFIX) =>
        {
            Code::Overloaded
        }
        code => code,
    };
    Err(Failure::new(code, message))
}

/// Reads an HTTP request body whole, before the request is queued for an
/// instance: a slow or stalled client holds a connection, never an instance
/// or a queue place. Past `limit` bytes it is refused (a declared length
/// over it before a byte is read); past `timeout` it is 408.
pub async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    limit: usize,
    timeout: Option<Duration>,
) -> Result<Bytes, Failure> {
    let too_large = || {
        Failure::new(
            Code::TooLarge,
            format!(
                "request body is larger than {limit} bytes; raise --max_request_bytes or send fewer images per request"
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let read = axum::body::to_bytes(body, limit);
    let result = match timeout {
        Some(timeout) => tokio::time::timeout(timeout, read).await.map_err(|_| {
            Failure::new(
                Code::RequestTimeout,
                format!(
                    "the request body did not arrive within {} ms (--rest_api_body_read_timeout_in_ms)",
                    timeout.as_millis()
                ),
            )
        })?,
        None => read.await,
    };
    result.map_err(|e| {
        let e = e.into_inner();
        if e.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            too_large()
        } else {
            Failure::invalid(format!("cannot read the request body: {e}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_across_protocols() {
        for status in [400, 404, 405, 408, 413, 503, 504, 500] {
            assert_eq!(Code::from_http_status(status).http_status(), status);
        }
        assert_eq!(Code::Overloaded.http_status(), 503);
        assert_eq!(Code::Overloaded.grpc(), tonic::Code::ResourceExhausted);
        assert_eq!(Code::Unavailable.grpc(), tonic::Code::Unavailable);
        assert_eq!(Code::Deadline.grpc(), tonic::Code::DeadlineExceeded);
        assert_eq!(Code::NotFound.name(), "NOT_FOUND");
    }

    #[test]
    fn unknown_labels_models_and_versions_are_not_found() {
        let registry = Registry::new(1);
        registry.add_model("m");
        let e = resolve(&registry, "m", &VersionSelector::Label("stable".into()))
            .err()
            .expect("refused");
        assert_eq!(e.code, Code::NotFound);
        assert!(e.message.contains("stable"), "{}", e.message);
        let e = resolve(&registry, "other", &VersionSelector::Latest)
            .err()
            .expect("refused");
        assert_eq!(e.code, Code::NotFound);
        assert!(e.message.contains("other"), "{}", e.message);
        let e = status(&registry, "m", &VersionSelector::Number(3)).expect_err("no versions");
        assert_eq!(e.code, Code::NotFound);
        assert_eq!(e.message, "Could not find version 3 of model m");
    }
}
