//! Models: what to serve and its life on disk and in memory.
//!
//! - [`config`]: `--model_config_file` (TF Serving's `ModelServerConfig`).
//! - [`repository`]: finds versions under `<base>/<name>/<version>/` and
//!   says when one is completely copied.
//! - [`lifecycle`]: loads, warms up, swaps and unloads versions.
//! - [`warmup`]: warm-up requests from `assets.extra/`.
//! - [`registry`]: what is served now; resolves a request to a version.

pub mod config;
pub mod lifecycle;
pub mod registry;
pub mod repository;
pub mod warmup;
