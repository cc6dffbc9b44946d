//! End-to-end tests: the real `vitrine` binary on loopback, real wasmtime,
//! real tract inside the component, real model files.

mod support;

mod budgets;
mod deploy;
mod errors;
mod lifecycle;
mod parity;
mod predict;
mod shutdown;
