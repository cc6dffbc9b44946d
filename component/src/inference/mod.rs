//! Runs a ViT ONNX export: in the guest with tract, or through `wasi:nn` on
//! the host when the host offers the graph.
//!
//! - `classifier` (the `tract` feature, on by default): `Classifier`, the
//!   tract model. Without it (the container image's slim component) the
//!   model runs only through the host's `wasi:nn`;
//! - `onnx_file` (`tract`): reads a `model.onnx` into tract one initializer
//!   at a time, so loading holds the weights once;
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
mod onnx_file;

#[cfg(feature = "tract")]
pub use self::classifier::Classifier;
pub use self::engine::Engine;
pub use self::error::{InferenceError, OVERLOADED_PREFIX};

#[cfg(not(any(feature = "tract", all(target_arch = "wasm32", feature = "wasi-nn"))))]
compile_error!("vitrine-component runs no model without `tract` or, on wasm32, `wasi-nn`");

/// A `model.onnx` open for reading at offsets: a `std::fs::File`, a
/// `wasi:filesystem` descriptor (`preinit`), or bytes in memory
/// (`std::io::Cursor`).
pub trait OnnxFile: std::io::Read + std::io::Seek {}
impl<T: std::io::Read + std::io::Seek> OnnxFile for T {}

/// Reports a loading stage while pre-initializing (see `preinit`).
#[cfg_attr(not(feature = "tract"), allow(dead_code))]
fn stage(_name: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::heap::stage(_name);
}
