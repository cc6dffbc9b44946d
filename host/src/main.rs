//! `vitrine`: serves Hugging Face ViT image classifiers, with the model code
//! (pre/postprocessing and tract inference) sandboxed in a WebAssembly
//! component and TF Serving's REST API in front.
//!
//! - [`cli`]: flags, in TF Serving's names.
//! - [`model_config`]: which models to serve (`--model_config_file`).
//! - [`repository`]: finds model versions under `<base>/<name>/<version>/`,
//!   and says when one is completely copied.
//! - [`lifecycle`]: loads, warms up, swaps and unloads versions.
//! - [`limits`]: limits on hostile input and slow clients, from the flags.
//! - [`registry`]: what is served now; routes a request to a version.
//! - [`warmup`]: warm-up requests from `assets.extra/`.
//! - [`engine`]: wasmtime setup and the compiled-component cache.
//! - [`pool`]: warm component instances that answer requests.
//! - [`nn`]: `wasi:nn` for the component, backed by [`native`] tract models
//!   and the [`batching`] scheduler.
//! - [`routing`]: the one core every front end resolves and calls through.
//! - [`rest`]: TF Serving's REST API.
//! - [`kserve`]: KServe's v2 inference protocol on the REST port.
//! - [`grpc`]: TF Serving's gRPC API and gRPC health.
//! - [`metrics`]: Prometheus metrics.
//! - [`admin`]: the REST reload endpoint.
//! - [`demo`]: the bundled demo model.
//! - [`textproto`]: protobuf text format, for TF Serving's config files.

mod admin;
mod batching;
mod bench;
mod cli;
mod demo;
mod engine;
mod grpc;
mod kserve;
mod lifecycle;
mod limits;
mod metrics;
mod model_config;
mod native;
mod nn;
mod pool;
#[cfg(feature = "preinit")]
mod preinit;
mod registry;
mod repository;
mod rest;
mod routing;
mod server;
// A shared reader for TF Serving's config files; not every accessor is used
// by every file.
#[allow(dead_code)]
mod textproto;
mod warmup;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
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
        Command::DemoModel(args) => demo::write(&args.out, args.size, args.seed),
        Command::Compile(args) => engine::compile_command(args),
        #[cfg(feature = "preinit")]
        Command::Preinit(args) => preinit::command(args),
        #[cfg(not(feature = "preinit"))]
        Command::Preinit(_) => Err(anyhow::anyhow!(
            "this vitrine was built without the `preinit` feature; build it with `cargo build --release -p vitrine`"
        )),
        Command::BenchNative(args) => bench::native(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
