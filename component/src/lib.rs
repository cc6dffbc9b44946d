//! Vitrine's ViT component: everything between HTTP bytes and a prediction.
//!
//! Compiled for `wasm32-wasip2` it is a `wasi:http/incoming-handler` component
//! that runs under the `vitrine` host, `wasmtime serve` and Spin. Compiled
//! natively, the same modules are unit-tested with `cargo test`.
//!
//! Modules, each a folder of its own concerns (see its doc comment):
//! - [`api`]: TF Serving's REST routes, request and reply shapes, limits, errors.
//! - [`config`]: `preprocessor_config.json` and `config.json`.
//! - [`preprocess`]: decode and turn an image into the tensor the model's HF image processor would.
//! - [`inference`]: run the ONNX model, with tract in the guest or through
//!   `wasi:nn` on the host (the `wasi-nn` feature).
//! - [`postprocess`]: softmax, top-k and labels.
//! - [`kserve`]: KServe's v2 inference protocol, JSON and binary.
//! - [`service`]: the handler tying them together, REST and v2.
//! - [`variables`]: settings from Spin's variables or the environment.
//! - [`log`]: warnings on stderr (why not `eprintln!`: a snapshot).
//! - `heap` (wasm only): the allocator, counting bytes in use and zeroing
//!   what is freed while pre-initializing.
//! - `preinit` (wasm only): the `wizer-initialize` export `vitrine preinit`
//!   calls to snapshot the component with the model already loaded.
//! - `wasi_http` (wasm only): adapts [`service`] to `wasi:http` through spin-sdk.
//!
//! Imports run one way (no module imports one that imports it back): `log`
//! imports nothing and `variables` only `log`; any module may use both (a
//! pre-initialized component must not read stderr or the environment
//! through wasi-libc: see each). Besides those two, `api`, `config`,
//! `postprocess` and `heap` import no other module; `inference` imports
//! only `heap`;
//! `preprocess` imports `api` and `config`; `kserve` imports `api`; `service`
//! imports all of these; `preinit` imports `service`; `wasi_http` imports
//! `service`, `preinit`, `variables`, `api` and `kserve`.

pub mod api;
pub mod config;
#[cfg(target_arch = "wasm32")]
mod heap;
pub mod inference;
pub mod kserve;
pub mod log;
pub mod postprocess;
#[cfg(target_arch = "wasm32")]
mod preinit;
pub mod preprocess;
pub mod service;
pub mod variables;

#[cfg(target_arch = "wasm32")]
mod wasi_http;
