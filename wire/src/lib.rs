//! The wire and file formats Vitrine reads: TF Serving's protobufs,
//! protobuf text-format configs, TFRecord framing, and the images a gRPC
//! request carries. Pure parsing, with no server in it (no tokio, tonic,
//! axum or wasmtime), so `fuzz/` can build it with AddressSanitizer on its
//! own; the `vitrine` host reads every one of these through this crate.
//!
//! Modules:
//! - [`proto`]: TF Serving's messages (prost, from `wire/proto`) and their
//!   descriptor set.
//! - [`textproto`]: protobuf's text format, for TF Serving's config files
//!   (`--model_config_file`, `--batching_parameters_file`,
//!   `--monitoring_config_file`).
//! - [`tfrecord`]: TFRecord framing and the `PredictionLog` warm-up records
//!   in it.
//! - [`grpc`]: the images (or pixels) a `PredictRequest` or a
//!   `ClassificationRequest` carries.
//!
//! `textproto` and `grpc` import `proto`; `tfrecord` imports nothing.

pub mod grpc;
pub mod proto;
pub mod textproto;
pub mod tfrecord;
