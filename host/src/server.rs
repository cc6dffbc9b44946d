//! `vitrine serve`: wires the pieces together. The lifecycle manager loads
//! the configured models' versions into pools of warm component instances
//! in the background, and the REST front end serves them from the registry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::ServeArgs;
use crate::lifecycle::{Lifecycle, Loader};
use crate::model_config::ModelConfig;
use crate::pool::Budgets;
pub use crate::registry::Registry;
use crate::{admin, demo, engine, lifecycle, model_config, pool, repository, rest};

/// The models to serve: `--model_config_file`, or the one model of
/// `--model_name` and `--model_base_path` (the demo model without a path).
/// Also returns the config file's text, to tell later when it changes.
fn model_configs(args: &ServeArgs) -> anyhow::Result<(Vec<ModelConfig>, Option<String>)> {
    if let Some(path) = &args.model_config_file {
        if args.model_base_path.is_some() {
            tracing::warn!(
                "--model_config_file is given, so --model_name and --model_base_path are ignored"
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the model config file {}", path.display()))?;
        let configs = model_config::parse(&text)
            .with_context(|| format!("invalid model config file {}", path.display()))?;
        return Ok((configs, Some(text)));
    }
    let base = match &args.model_base_path {
        Some(base) => base.clone(),
        None => {
            tracing::info!("no --model_base_path given: serving the demo model (random weights)");
            let cache = engine::cache_dir(args.cache_dir.as_deref());
            demo::ensure(&cache, &args.model_name, args.demo_model)?
        }
    };
    Ok((vec![ModelConfig::single(&args.model_name, &base)], None))
}

fn poll_interval(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.check_config {
        return check_config(&args);
    }
    // Read the config before anything starts: a bad one fails fast.
    let (configs, config_text) = model_configs(&args)?;
    lifecycle::check_base_paths(&configs)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Guest inference blocks its thread, so every instance that may run at
    // once needs one: each model's, plus a version loading beside them.
    let instances = instances(args.inter_op_parallelism);
    let guest_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(instances * (configs.len() + 1))
        .thread_name("guest")
        .enable_all()
        .build()
        .context("cannot start the guest runtime")?;
    let result = runtime.block_on(serve(
        args,
        configs,
        config_text,
        guest_runtime.handle().clone(),
    ));
    guest_runtime.shutdown_background();
    result
}

/// `--check-config`: everything `serve` would refuse, refused now.
fn check_config(args: &ServeArgs) -> anyhow::Result<()> {
    let configs = match (&args.model_config_file, &args.model_base_path) {
        (Some(_), _) => model_configs(args)?.0,
        (None, Some(base)) => vec![ModelConfig::single(&args.model_name, base)],
        (None, None) => Vec::new(),
    };
    let mut models = Vec::new();
    for config in &configs {
        let versions: Vec<u64> = repository::scan(&config.base_path)?
            .iter()
            .map(|v| v.version)
            .collect();
        if versions.is_empty() {
            if args.file_system_poll_wait_seconds == 0 {
                return Err(repository::no_versions(&config.base_path));
            }
            eprintln!(
                "warning: {}; vitrine will serve model {} once one is copied in",
                repository::no_versions(&config.base_path),
                config.name
            );
        }
        let mut model = config.to_json();
        model["versions_found"] = serde_json::json!(versions);
        models.push(model);
    }
    engine::component_bytes(args.component.as_deref())?;
    let single = args.model_config_file.is_none();
    let resolved = serde_json::json!({
        "rest_api": format!("{}:{}", args.host, args.rest_api_port),
        "grpc_port": args.grpc_port,
        "model_config_file": args.model_config_file,
        "model_name": single.then_some(&args.model_name),
        "model_base_path": if single { args.model_base_path.clone() } else { None },
        "versions_found": if single {
            models.first().map_or(serde_json::json!([]), |m| m["versions_found"].clone())
        } else {
            serde_json::Value::Null
        },
        "models": models,
        "demo_model": single && args.model_base_path.is_none(),
        "instances_per_version": instances(args.inter_op_parallelism),
        "max_request_bytes": args.max_request_bytes,
        "rest_api_timeout_in_ms": args.rest_api_timeout_in_ms,
        "max_instance_memory_mb": args.max_instance_memory_mb,
        "max_queued_requests": args.max_queued_requests,
        "drain_timeout_seconds": args.drain_timeout_seconds,
        "file_system_poll_wait_seconds": args.file_system_poll_wait_seconds,
        "model_config_file_poll_wait_seconds": args.model_config_file_poll_wait_seconds,
        "enable_model_warmup": args.enable_model_warmup,
        "allow_version_labels_for_unavailable_models": args.allow_version_labels_for_unavailable_models,
        "enable_admin_api": args.enable_admin_api,
        "cache_dir": engine::cache_dir(args.cache_dir.as_deref()),
    });
    println!("{}", serde_json::to_string_pretty(&resolved)?);
    Ok(())
}

fn instances(inter_op_parallelism: usize) -> usize {
    match inter_op_parallelism {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

async fn serve(
    args: ServeArgs,
    configs: Vec<ModelConfig>,
    config_text: Option<String>,
    guest_runtime: tokio::runtime::Handle,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let cache = engine::cache_dir(args.cache_dir.as_deref());
    let engine = engine::new_engine()?;
    let wasm = engine::component_bytes(args.component.as_deref())?;
    let component = {
        let (engine, cache) = (engine.clone(), cache.clone());
        let wasm = wasm.into_owned();
        tokio::task::spawn_blocking(move || engine::load_component(&engine, &wasm, &cache))
            .await??
    };
    let linker = pool::linker(&engine)?;
    engine::start_epoch_ticker(&engine);
    let budgets = Budgets {
        request_timeout: std::time::Duration::from_millis(args.rest_api_timeout_in_ms),
        // Loading ViT-B/16 in the guest takes seconds; never cut it short.
        warmup_timeout: std::time::Duration::from_secs(600),
        max_memory_bytes: args.max_instance_memory_mb << 20,
        max_queued: args.max_queued_requests,
    };

    let registry = Arc::new(Registry::new(args.max_request_bytes));
    let loader = Loader {
        engine,
        linker,
        default_component: component,
        cache_dir: cache,
        instances: instances(args.inter_op_parallelism),
        budgets,
        guest_runtime,
        warmup: args.enable_model_warmup,
    };
    let lifecycle = Lifecycle::new(
        registry.clone(),
        loader,
        poll_interval(args.file_system_poll_wait_seconds),
        args.allow_version_labels_for_unavailable_models,
        args.model_config_file.clone(),
    );
    // Models are known (and not ready) before the port opens.
    lifecycle.configure(configs);
    if let Some(text) = config_text {
        lifecycle.remember_config_file(text).await;
    }
    let addr = format!("{}:{}", args.host, args.rest_api_port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {addr}; is another server using port {}?",
                args.rest_api_port
            )
        })?;
    tracing::info!(
        "REST API listening on {} ({:.1} s after start); models load in the background",
        listener.local_addr()?,
        started.elapsed().as_secs_f64()
    );
    if args.grpc_port != 0 {
        tracing::warn!(
            "gRPC (--port={}) is not served yet; use the REST API",
            args.grpc_port
        );
    }
    tokio::spawn(lifecycle.clone().run());
    tokio::spawn(lifecycle.clone().label_initial());
    if let Some(every) = poll_interval(args.model_config_file_poll_wait_seconds) {
        tokio::spawn(lifecycle.clone().poll_config_file(every));
    }

    // On SIGTERM the listener closes at once; in-flight requests get up to
    // the drain timeout, so a rolling update loses nothing yet never hangs.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let graceful = {
        let mut stop = stop_rx.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    let app = rest::router(registry).merge(admin::router(lifecycle, args.enable_admin_api));
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    let drain = std::time::Duration::from_secs(args.drain_timeout_seconds);
    let mut stop = stop_rx;
    tokio::select! {
        result = server => result.context("the REST server failed")?,
        _ = async { let _ = stop.wait_for(|s| *s).await; tokio::time::sleep(drain).await } => {
            tracing::warn!("requests still in flight after {} s; exiting anyway", drain.as_secs());
        }
    }
    tracing::info!("shut down");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: finishing in-flight requests");
}
