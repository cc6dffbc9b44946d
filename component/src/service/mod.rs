//! The request handler: what the component answers for a method, path and body.
//!
//! It is plain Rust so it can be tested natively; `wasi_http` only adapts it to
//! `wasi:http/incoming-handler`.
//!
//! - `model`: [`ServiceConfig`] and [`LoadedModel`], a model version in memory;
//! - `instance`: [`Service`], one servable and its lazily loaded model;
//! - `rest`: TF Serving's REST routes and the warm-up path, and the dispatch
//!   of `/v2` requests;
//! - `v2`: KServe v2 answers, over the protocol in [`crate::kserve`];
//! - `reply`: [`Reply`], the HTTP answer.

mod instance;
mod model;
mod reply;
mod rest;
mod v2;

pub use self::instance::Service;
pub use self::model::{LoadedModel, ServiceConfig};
pub use self::reply::{BATCH_SIZE_HEADER, Reply};
pub use self::rest::{HEALTHZ_PATH, READYZ_PATH, WARMUP_PATH};
