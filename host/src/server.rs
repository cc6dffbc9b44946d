//! `vitrine serve`: wires the pieces together. The lifecycle manager loads
//! the configured models' versions into pools of warm component instances
//! in the background; REST v1, KServe v2, gRPC and the metrics endpoint
//! serve them from the registry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::cli::{InferencePath, ServeArgs};
use crate::config::cores;
use crate::config::limits;
use crate::engines::batcher::BatchingParameters;
use crate::engines::native::{NativeEngine, NativeOptions};
use crate::engines::onnxruntime::OrtOptions;
use crate::frontends::{admin, grpc, kserve, monitoring, rest};
use crate::metrics;
use crate::models::config::ModelConfig;
use crate::models::lifecycle::{Lifecycle, Loader};
use crate::models::registry::Registry;
use crate::models::{config as model_config, lifecycle, repository};
use crate::runtime::pool::Budgets;
use crate::runtime::{engine, pool};
use crate::tools::demo;

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
    let instances = instances(&args);
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
    let native = native_options(args)?;
    let monitoring = metrics::Monitoring::load(args.monitoring_config_file.as_deref())?;
    let single = args.model_config_file.is_none();
    let resolved = serde_json::json!({
        "rest_api": format!("{}:{}", args.host, args.rest_api_port),
        "grpc_port": args.grpc_port,
        "grpc_max_message_bytes": args.grpc_max_message_bytes,
        "metrics_path": monitoring.path,
        "inference": format!("{:?}", args.inference).to_lowercase(),
        "batching": native.as_ref().and_then(|n| n.batching.as_ref()).map(|b| format!("{b:?}")),
        "native_engine": native.as_ref().map(|n| n.engine.name()),
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
        "instances_per_version": instances(args),
        "max_request_bytes": args.max_request_bytes,
        "limits": limits::to_json(args),
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

/// Warm instances per version. On the host path an instance only decodes
/// and preprocesses, so many can wait on the model at once, and a batch can
/// only be as large as the requests in flight.
fn instances(args: &ServeArgs) -> usize {
    match (args.inter_op_parallelism, args.inference) {
        (0, InferencePath::Guest) => cores(),
        (0, InferencePath::Host) => 16,
        (n, _) => n,
    }
}

/// How the host path runs models, or `None` on the guest path.
fn native_options(args: &ServeArgs) -> anyhow::Result<Option<NativeOptions>> {
    if args.inference == InferencePath::Guest {
        if args.enable_batching {
            tracing::warn!("--enable_batching applies to --inference=host only; ignored");
        }
        return Ok(None);
    }
    let batching = match (&args.batching_parameters_file, args.enable_batching) {
        (Some(file), true) => Some(BatchingParameters::from_file(file)?),
        (None, true) => Some(BatchingParameters::default()),
        (Some(_), false) => {
            tracing::warn!("--batching_parameters_file is used only with --enable_batching");
            None
        }
        (None, false) => None,
    };
    let intra = match args.intra_op_parallelism {
        0 => cores(),
        n => n,
    };
    let engine = NativeEngine::resolve(
        args.native_engine,
        args.onnxruntime_library.as_deref(),
        OrtOptions {
            intra_threads: intra,
            spinning: args.onnxruntime_intra_op_spinning,
            cache_dir: Some(engine::cache_dir(args.cache_dir.as_deref()).join("onnxruntime")),
            // A batch is already many runs in one: run alone on one thread
            // it would take as many times as long, and each session's
            // arena grows to its largest batch.
            lanes: args.onnxruntime_lanes && batching.is_none(),
        },
    )?;
    let runs_at_once = if engine.has_lanes() {
        // One run per core: the first on the multi-threaded session, the
        // others side by side on the single-threaded one.
        cores()
    } else {
        // Unbatched runs share the cores: each already uses `intra` threads.
        (cores() / intra).max(1)
    };
    Ok(Some(NativeOptions {
        engine,
        batching,
        runs_at_once,
    }))
}

async fn serve(
    args: ServeArgs,
    configs: Vec<ModelConfig>,
    config_text: Option<String>,
    guest_runtime: tokio::runtime::Handle,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let cache = engine::cache_dir(args.cache_dir.as_deref());
    // Bad flags or config fail fast, before ports are bound.
    let native = native_options(&args)?;
    if let Some(native) = &native {
        let threads = crate::engines::native::set_intra_op_threads(args.intra_op_parallelism);
        let engine = match &native.engine {
            NativeEngine::OnnxRuntime { runtime, .. } => format!(
                "onnxruntime from {} (found by {})",
                runtime.library.display(),
                runtime.found_by
            ),
            NativeEngine::Tract => "tract".to_string(),
        };
        let lanes = if native.engine.has_lanes() {
            ", overlapping runs side by side on one thread each"
        } else {
            ""
        };
        tracing::info!(
            "host path: models run natively on {engine}, {threads} threads per run{lanes}, batching {}",
            if args.enable_batching { "on" } else { "off" }
        );
    }
    let monitoring = metrics::Monitoring::load(args.monitoring_config_file.as_deref())?;
    let engine = engine::new_engine()?;
    let component = {
        let (engine, cache) = (engine.clone(), cache.clone());
        let path = args.component.clone();
        tokio::task::spawn_blocking(move || {
            engine::load_component_from(&engine, path.as_deref(), &cache)
        })
        .await??
        .0
    };
    let linker = pool::linker(&engine)?;
    engine::start_epoch_ticker(&engine);
    let budgets = Budgets {
        request_timeout: std::time::Duration::from_millis(args.rest_api_timeout_in_ms),
        // Loading ViT-B/16 in the guest takes seconds; never cut it short.
        warmup_timeout: std::time::Duration::from_secs(600),
        max_memory_bytes: args.max_instance_memory_mb << 20,
        max_queued: args.max_queued_requests,
        max_requests_per_instance: args.max_requests_per_instance,
        guest_env: limits::guest_env(&args),
    };

    let registry = Arc::new(
        Registry::new(args.max_request_bytes)
            .with_body_read_timeout(limits::timeout(args.rest_api_body_read_timeout_in_ms)),
    );
    let loader = Loader {
        engine,
        linker,
        default_component: component,
        cache_dir: cache,
        instances: instances(&args),
        budgets,
        guest_runtime,
        warmup: args.enable_model_warmup,
        native,
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
        "REST API and KServe v2 listening on {} ({:.1} s after start); models load in the background",
        listener.local_addr()?,
        started.elapsed().as_secs_f64()
    );
    let grpc_listener = match args.grpc_port {
        0 => None,
        port => {
            let addr = format!("{}:{port}", args.host);
            let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| {
                format!("cannot listen on {addr}; is another server using port {port}? (--port=0 turns gRPC off)")
            })?;
            tracing::info!("gRPC listening on {}", listener.local_addr()?);
            Some(listener)
        }
    };
    if let Some(path) = &monitoring.path {
        tracing::info!("Prometheus metrics at {path} on the REST port");
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
    let mut app = rest::router(registry.clone())
        .merge(kserve::router(registry.clone()))
        .merge(admin::router(
            lifecycle.clone(),
            args.enable_admin_api,
            args.max_request_bytes,
            limits::timeout(args.rest_api_body_read_timeout_in_ms),
        ));
    if let Some(path) = &monitoring.path {
        app = app.merge(monitoring::router(path, registry.clone()));
    }
    let header_timeout = limits::timeout(args.rest_api_header_read_timeout_in_ms);
    let server = async {
        rest::serve(listener, app, header_timeout, graceful).await;
        anyhow::Ok(())
    };
    let grpc_stop = stop_rx.clone();
    let grpc_options = grpc::Options {
        max_message_bytes: args.grpc_max_message_bytes,
        max_instances: args.max_instances_per_request,
        call_timeout: limits::grpc_call_timeout(&args),
        read_timeout: limits::timeout(args.grpc_read_timeout_in_ms),
    };
    let grpc = async move {
        let Some(listener) = grpc_listener else {
            return Ok(());
        };
        let stopped = async move {
            let mut stop = grpc_stop;
            let _ = stop.wait_for(|s| *s).await;
        };
        grpc::serve(listener, registry, lifecycle, grpc_options, stopped)
            .await
            .context("the gRPC server failed")
    };
    let drain = std::time::Duration::from_secs(args.drain_timeout_seconds);
    let mut stop = stop_rx;
    tokio::select! {
        result = async { tokio::try_join!(server, grpc) } => { result?; },
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
