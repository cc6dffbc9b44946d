//! End-to-end tests: the real `vitrine` binary on loopback, real wasmtime,
//! real tract (in the component and natively behind wasi:nn), real model files.

mod support;

mod batching;
mod bench_wasm;
mod budgets;
mod deploy;
mod disk_faults;
mod engines;
mod errors;
mod grpc;
mod grpc_slow_clients;
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
mod swap_memory;
mod swap_storm;
mod wasmtime_serve;
mod zoo;
