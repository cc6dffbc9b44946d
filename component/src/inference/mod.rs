//! Runs a ViT ONNX export: in the guest with tract, or through `wasi:nn` on
//! the host when the host offers the graph.
//!
//! - `classifier`: [`Classifier`], the tract model;
//! - `engine`: [`Engine`], tract or the host's graph;
//! - `nn` (wasm, `wasi-nn` feature): the host's graph through `wasi:nn`;
//! - `error`: [`InferenceError`] and [`OVERLOADED_PREFIX`].

mod classifier;
mod engine;
mod error;
#[cfg(all(target_arch = "wasm32", feature = "wasi-nn"))]
mod nn;

pub use self::classifier::Classifier;
pub use self::engine::Engine;
pub use self::error::{InferenceError, OVERLOADED_PREFIX};
