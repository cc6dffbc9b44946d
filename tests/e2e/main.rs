//! End-to-end tests: the real `vitrine` binary on loopback, real wasmtime,
//! real tract (in the component and natively behind wasi:nn), real model files.

mod support;

mod batching;
mod budgets;
mod deploy;
mod errors;
mod grpc;
mod image;
mod kserve;
mod lifecycle;
mod metrics;
mod overload;
mod parity;
mod predict;
mod preinit;
mod shutdown;
mod slow_clients;
