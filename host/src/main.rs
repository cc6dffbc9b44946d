//! `vitrine`: serves Hugging Face ViT image classifiers, with the model code
//! (pre/postprocessing and tract inference) sandboxed in a WebAssembly
//! component and TF Serving's REST API in front.
//!
//! The rooms, in the order a request travels through them:
//!
//! - [`frontends`]: TF Serving's REST API, KServe v2, gRPC, the admin
//!   endpoint and Prometheus monitoring.
//! - [`routing`]: the one core every front end resolves and calls through.
//! - [`models`]: which models to serve (config file), their versions on disk
//!   (repository), loading, warm-up and swaps (lifecycle), and what is served
//!   now (registry).
//! - [`runtime`]: wasmtime: the engine and compiled-component cache, pools of
//!   warm instances, `wasi:nn` for the guest, pre-initialization.
//! - [`engines`]: native engines that run a version's graph, and the batcher
//!   that feeds them.
//! - [`config`]: flags (in TF Serving's names) and limits; TF Serving's config
//!   files are read in their protobuf text format by `vitrine-wire`.
//! - [`metrics`]: Prometheus counters and gauges, recorded by every room.
//! - [`proto`]: TF Serving's protobuf types (`vitrine-wire`) and the gRPC
//!   services generated over them from `wire/proto`.
//! - [`server`]: `vitrine serve`, which wires the rooms together.
//! - [`tools`]: the other subcommands (demo model, native benchmark).

mod config;
mod engines;
mod frontends;
mod metrics;
mod models;
mod proto;
mod routing;
mod runtime;
mod server;
mod tools;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::config::cli::{self, Cli, Command};

fn main() -> std::process::ExitCode {
    runtime::memory::tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (args, dropped) = cli::drop_unknown_serve_flags(std::env::args().collect());
    for flag in &dropped {
        tracing::warn!("ignoring flag {flag}: vitrine does not implement it");
    }
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Serve(args) => server::run(*args),
        Command::DemoModel(args) => tools::demo::write(&args.out, args.size, args.seed),
        Command::Compile(args) => runtime::engine::compile_command(args),
        #[cfg(feature = "preinit")]
        Command::Preinit(args) => runtime::preinit::command(args),
        #[cfg(not(feature = "preinit"))]
        Command::Preinit(_) => Err(anyhow::anyhow!(
            "this vitrine was built without the `preinit` feature; build it with `cargo build --release -p vitrine`"
        )),
        #[cfg(feature = "tract")]
        Command::BenchNative(args) => tools::bench::native(args),
        #[cfg(feature = "tract")]
        Command::BenchWasm(args) => tools::bench_wasm::run(args),
        #[cfg(not(feature = "tract"))]
        Command::BenchNative(_) | Command::BenchWasm(_) => Err(anyhow::anyhow!(
            "this vitrine was built without the `tract` feature; build it with `cargo build --release -p vitrine`"
        )),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
