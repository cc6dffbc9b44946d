//! The wasm runtime: everything wasmtime.
//!
//! - [`engine`]: wasmtime's configuration and the compiled-component cache.
//! - [`cwasm`]: the cache's files and their checksums.
//! - [`digests`]: component files' hashes, remembered by file identity.
//! - [`pool`]: warm component instances that answer requests.
//! - [`nn`]: `wasi:nn` for the guest, lending it the version's native graph.
//! - [`timeline`]: when each step of a request happened, as the phases of
//!   the per-phase latency metric.
//! - [`preinit`]: `vitrine preinit`, a snapshot of the component with its
//!   model loaded.

pub mod cwasm;
pub mod digests;
pub mod engine;
pub mod memory;
pub mod nn;
pub mod pool;
#[cfg(feature = "preinit")]
pub mod preinit;
pub mod timeline;
