//! Subcommands besides `serve`.
//!
//! - [`demo`]: the bundled demo model (`vitrine demo-model`, and the one
//!   `serve` writes when no model is given).
//! - [`bench`]: `vitrine bench-native`, the bare native engine on one model.
//! - [`bench_wasm`]: `vitrine bench-wasm`, the bare guest tract in wasm, in
//!   the server's wasmtime engine without the server.
//!
//! The two benchmarks are only in builds with the `tract` feature (the
//! default).

#[cfg(feature = "tract")]
pub mod bench;
#[cfg(feature = "tract")]
pub mod bench_wasm;
pub mod demo;
