//! Runs a ViT ONNX export: in the guest with tract, or through `wasi:nn` on
//! the host when the host offers the graph.
//!
//! - `classifier` (the `tract` feature, on by default): `Classifier`, the
//!   tract model. Without it (the container image's slim component) the
//!   model runs only through the host's `wasi:nn`;
//! - `engine`: [`Engine`], tract or the host's graph;
//! - `nn` (wasm, `wasi-nn` feature): the host's graph through `wasi:nn`;
//! - `error`: [`InferenceError`] and [`OVERLOADED_PREFIX`].

#[cfg(feature = "tract")]
mod classifier;
mod engine;
mod error;
#[cfg(all(target_arch = "wasm32", feature = "wasi-nn"))]
mod nn;

#[cfg(feature = "tract")]
pub use self::classifier::Classifier;
pub use self::engine::Engine;
pub use self::error::{InferenceError, OVERLOADED_PREFIX};

#[cfg(not(any(feature = "tract", all(target_arch = "wasm32", feature = "wasi-nn"))))]
compile_error!("vitrine-component runs no model without `tract` or, on wasm32, `wasi-nn`");

/// Reports a loading stage while pre-initializing (see `preinit`).
#[cfg_attr(not(feature = "tract"), allow(dead_code))]
fn stage(_name: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::heap::stage(_name);
}
