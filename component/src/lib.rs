//! Vitrine's ViT component: everything between HTTP bytes and a prediction.
//!
//! Compiled for `wasm32-wasip2` it is a `wasi:http/incoming-handler` component
//! that runs under the `vitrine` host, `wasmtime serve` and Spin. Compiled
//! natively, the same modules are unit-tested with `cargo test`.
//!
//! - [`preprocess`]: decode and turn an image into the tensor HF's `ViTImageProcessor` would.
//! - [`inference`]: run the ONNX model, with tract in the guest or through
//!   `wasi:nn` on the host (the `wasi-nn` feature).
//! - [`postprocess`]: softmax, top-k and labels.
//! - [`api`]: TF Serving's REST routes, request and reply shapes.
//! - [`kserve`]: KServe's v2 inference protocol, JSON and binary.
//! - [`service`]: the handler tying them together.
//! - [`variables`]: settings from Spin's variables or the environment.
//! - `preinit` (wasm only): the `wizer-initialize` export `vitrine preinit`
//!   calls to snapshot the component with the model already loaded.

pub mod api;
pub mod config;
pub mod inference;
pub mod kserve;
#[cfg(all(target_arch = "wasm32", feature = "wasi-nn"))]
mod nn;
pub mod postprocess;
#[cfg(target_arch = "wasm32")]
mod preinit;
pub mod preprocess;
pub mod service;
pub mod variables;

#[cfg(target_arch = "wasm32")]
mod wasi_http;
