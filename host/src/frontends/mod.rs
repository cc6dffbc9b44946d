//! Front ends: the protocols clients speak. Each turns its wire format into
//! a call through [`crate::routing`] and the reply back into its own shape.
//!
//! - [`rest`]: TF Serving's REST API (`/v1/...`) and the REST port's
//!   HTTP/1.1 connection loop.
//! - [`kserve`]: KServe's v2 inference protocol (`/v2/...`) on the REST port.
//! - [`grpc`]: TF Serving's gRPC API and `grpc.health.v1`.
//! - [`admin`]: the reload endpoint.
//! - [`monitoring`]: Prometheus metrics.

pub mod admin;
pub mod grpc;
pub mod kserve;
pub mod monitoring;
pub mod rest;
