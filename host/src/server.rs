//! `vitrine serve`: loads the newest model version into a pool of warm
//! component instances and serves TF Serving's REST and gRPC APIs, KServe
//! v2 and Prometheus metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::Context;

use crate::batching::BatchingParameters;
use crate::cli::{InferencePath, ServeArgs};
use crate::native::{self, NativeModel, NativeOptions};
use crate::pool::{Budgets, InstancePool, Servable};
use crate::{demo, engine, grpc, kserve, metrics, pool, repository, rest};

/// Where one model version stands, in TF Serving's terms.
#[derive(Clone)]
pub enum VersionState {
    Loading,
    Available(Arc<InstancePool>),
    Failed(String),
}

/// The models this server knows and the state of each version.
pub struct Registry {
    pub model_name: String,
    versions: RwLock<BTreeMap<u64, VersionState>>,
    pub max_request_bytes: usize,
}

impl Registry {
    pub fn new(model_name: String, max_request_bytes: usize) -> Registry {
        Registry {
            model_name,
            versions: RwLock::new(BTreeMap::new()),
            max_request_bytes,
        }
    }

    fn set(&self, version: u64, state: VersionState) {
        if let Ok(mut v) = self.versions.write() {
            v.insert(version, state);
        }
    }

    /// Every version with its state, oldest first.
    pub fn versions(&self) -> Vec<(u64, VersionState)> {
        self.versions
            .read()
            .map(|v| v.iter().map(|(k, s)| (*k, s.clone())).collect())
            .unwrap_or_default()
    }

    /// The pool serving `version`, or the newest available one.
    pub fn available(&self, version: Option<u64>) -> Option<Arc<InstancePool>> {
        let versions = self.versions.read().ok()?;
        let pick = |s: &VersionState| match s {
            VersionState::Available(p) => Some(p.clone()),
            _ => None,
        };
        match version {
            Some(v) => versions.get(&v).and_then(pick),
            None => versions.values().rev().find_map(pick),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.available(None).is_some()
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.check_config {
        return check_config(&args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // One worker per instance: guest inference blocks its thread.
    let guest_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(instances(&args))
        .thread_name("guest")
        .enable_all()
        .build()
        .context("cannot start the guest runtime")?;
    let result = runtime.block_on(serve(args, guest_runtime.handle().clone()));
    guest_runtime.shutdown_background();
    result
}

/// `--check-config`: everything `serve` would refuse, refused now.
fn check_config(args: &ServeArgs) -> anyhow::Result<()> {
    let versions = match &args.model_base_path {
        Some(base) => {
            let versions = repository::scan(base)?;
            if versions.is_empty() {
                return Err(repository::no_versions(base));
            }
            versions.iter().map(|v| v.version).collect()
        }
        None => Vec::new(),
    };
    engine::component_bytes(args.component.as_deref())?;
    let native = native_options(args)?;
    let monitoring = metrics::Monitoring::load(args.monitoring_config_file.as_deref())?;
    let resolved = serde_json::json!({
        "rest_api": format!("{}:{}", args.host, args.rest_api_port),
        "grpc_port": args.grpc_port,
        "grpc_max_message_bytes": args.grpc_max_message_bytes,
        "metrics_path": monitoring.path,
        "model_name": args.model_name,
        "model_base_path": args.model_base_path,
        "versions_found": versions,
        "demo_model": args.model_base_path.is_none(),
        "instances_per_version": instances(args),
        "inference": format!("{:?}", args.inference).to_lowercase(),
        "batching": native.as_ref().and_then(|n| n.batching.as_ref()).map(|b| format!("{b:?}")),
        "max_request_bytes": args.max_request_bytes,
        "rest_api_timeout_in_ms": args.rest_api_timeout_in_ms,
        "max_instance_memory_mb": args.max_instance_memory_mb,
        "max_queued_requests": args.max_queued_requests,
        "drain_timeout_seconds": args.drain_timeout_seconds,
        "cache_dir": engine::cache_dir(args.cache_dir.as_deref()),
    });
    println!("{}", serde_json::to_string_pretty(&resolved)?);
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
    Ok(Some(NativeOptions {
        batching,
        // Unbatched runs share the cores: each already uses `intra` threads.
        runs_at_once: (cores() / intra).max(1),
    }))
}

async fn serve(args: ServeArgs, guest_runtime: tokio::runtime::Handle) -> anyhow::Result<()> {
    let started = Instant::now();
    let cache = engine::cache_dir(args.cache_dir.as_deref());
    let base = match args.model_base_path.clone() {
        Some(base) => base,
        None => {
            let (cache, name, size) = (cache.clone(), args.model_name.clone(), args.demo_model);
            tracing::info!("no --model_base_path given: serving the demo model (random weights)");
            tokio::task::spawn_blocking(move || demo::ensure(&cache, &name, size)).await??
        }
    };
    // Fail fast on a wrong path, bad flags or config, before binding ports.
    let versions = repository::scan(&base)?;
    let native = native_options(&args)?;
    if native.is_some() {
        let threads = native::set_intra_op_threads(args.intra_op_parallelism);
        tracing::info!(
            "host path: models run natively on {threads} threads per run, batching {}",
            if args.enable_batching { "on" } else { "off" }
        );
    }
    let monitoring = metrics::Monitoring::load(args.monitoring_config_file.as_deref())?;

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

    let registry = Arc::new(Registry::new(
        args.model_name.clone(),
        args.max_request_bytes,
    ));
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
        "REST API and KServe v2 listening on {}",
        listener.local_addr()?
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

    let instances = instances(&args);
    let loader = {
        let registry = registry.clone();
        let name = args.model_name.clone();
        async move {
            let Some(newest) = versions.last() else {
                return tracing::error!("{:#}", repository::no_versions(&base));
            };
            registry.set(newest.version, VersionState::Loading);
            let load_started = Instant::now();
            let started_pool = async {
                let graph = match native {
                    Some(options) => Some(load_native(&newest.path, &name, newest.version, options).await?),
                    None => None,
                };
                let servable = Servable {
                    name: name.clone(),
                    version: newest.version,
                    dir: newest.path.clone(),
                    graph,
                };
                InstancePool::start(
                    &linker,
                    &component,
                    servable,
                    instances,
                    budgets,
                    guest_runtime,
                )
                .await
            };
            match started_pool.await {
                Ok(pool) => {
                    if has_random_weights(&newest.path) {
                        tracing::warn!(
                            "model {name} version {} has RANDOM weights (a Vitrine demo model): its predictions are meaningless",
                            newest.version
                        );
                    }
                    metrics::record_load(&name, newest.version, load_started.elapsed());
                    registry.set(newest.version, VersionState::Available(pool));
                    tracing::info!(
                        "model {name} version {} is AVAILABLE ({instances} warm instances, loaded in {:.1} s, {:.1} s after start)",
                        newest.version,
                        load_started.elapsed().as_secs_f64(),
                        started.elapsed().as_secs_f64()
                    );
                }
                Err(e) => {
                    tracing::error!(
                        "model {name} version {} failed to load: {e:#}",
                        newest.version
                    );
                    registry.set(newest.version, VersionState::Failed(format!("{e:#}")));
                }
            }
        }
    };
    tokio::spawn(loader);

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
    let mut app = rest::router(registry.clone()).merge(kserve::router(registry.clone()));
    if let Some(path) = &monitoring.path {
        app = app.merge(metrics::router(path, registry.clone()));
    }
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    let server = async { server.await.context("the REST server failed") };
    let (grpc_stop, grpc_max_message_bytes) = (stop_rx.clone(), args.grpc_max_message_bytes);
    let grpc = async move {
        let Some(listener) = grpc_listener else {
            return Ok(());
        };
        let stopped = async move {
            let mut stop = grpc_stop;
            let _ = stop.wait_for(|s| *s).await;
        };
        grpc::serve(listener, registry, grpc_max_message_bytes, stopped)
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

/// Loads and optimises a version's model natively, off the async threads.
async fn load_native(
    dir: &std::path::Path,
    name: &str,
    version: u64,
    options: NativeOptions,
) -> anyhow::Result<Arc<NativeModel>> {
    let (dir, name) = (dir.to_path_buf(), name.to_string());
    let model = tokio::task::spawn_blocking(move || NativeModel::load(&dir, &name, version, &options))
        .await
        .context("the model loader stopped")??;
    Ok(Arc::new(model))
}

/// Demo models mark themselves in `config.json` (`"vitrine": {"random_weights": true}`).
fn has_random_weights(dir: &std::path::Path) -> bool {
    std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|c| c["vitrine"]["random_weights"] == true)
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
