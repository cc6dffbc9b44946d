//! The model lifecycle manager: which versions of which models are loaded,
//! and how they come and go while requests keep flowing.
//!
//! One background task looks at every model's base path (every
//! `--file_system_poll_wait_seconds`, and every [`SETTLE`] while a copy is
//! in progress), applies the completeness rule of [`crate::repository`],
//! picks the versions the model's policy wants, and then:
//!
//! - **loads** a wanted version in the background, one at a time per model:
//!   its own `component.wasm`, if it has one, is compiled off the request
//!   path (`spawn_blocking`, cached as `.cwasm`), then every instance is
//!   created and warmed up; only then does the version become AVAILABLE and
//!   take requests (the registry switches routing in one write);
//! - **unloads** a version the policy no longer wants, but only once every
//!   wanted version is AVAILABLE (TF Serving's availability-preserving
//!   policy), so a model never goes dark during a swap. The version leaves
//!   routing at once; requests already on it finish; when the last one
//!   drops its handle the pool is freed, with its wasmtime stores and their
//!   linear memory, and the log says so;
//! - leaves a version that **failed** out of service with its error in the
//!   status, and never lets it touch the version being served. It is
//!   retried only when its files change.
//!
//! Config changes (the config file, the reload endpoint) go through
//! [`Lifecycle::reload`], which the gRPC front end can call as well.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::sync::Notify;
use wasmtime::component::{Component, Linker};

use crate::model_config::{self, ModelConfig};
use crate::native::{self, NativeOptions};
use crate::pool::{Budgets, HostState, InstancePool, Servable, WarmupCall};
use crate::registry::{Registry, VersionState};
use crate::repository::{self, Listing, SETTLE};
use crate::{engine, warmup};

/// How often the manager wakes up to see whether a look is due.
const TICK: Duration = Duration::from_millis(250);

/// How long a reload waits for its models to load before it applies the
/// version labels anyway (and reports the ones whose version is missing).
const RELOAD_WAIT: Duration = Duration::from_secs(900);

/// Everything needed to turn a version folder into a warm pool.
pub struct Loader {
    pub engine: wasmtime::Engine,
    pub linker: Linker<HostState>,
    /// `--component`, or the built-in one: for versions without their own.
    pub default_component: Component,
    pub cache_dir: PathBuf,
    pub instances: usize,
    pub budgets: Budgets,
    pub guest_runtime: tokio::runtime::Handle,
    /// `--enable_model_warmup`.
    pub warmup: bool,
    /// The host path: each version's model loaded natively and lent to its
    /// instances through `wasi:nn`; `None` runs it in the guest.
    pub native: Option<NativeOptions>,
}

impl Loader {
    /// Compiles, instantiates and warms up one version. Nothing here runs on
    /// a request's path.
    async fn load(
        &self,
        model: &str,
        version: u64,
        dir: &Path,
    ) -> anyhow::Result<Arc<InstancePool>> {
        let prepared = {
            let (dir, warm) = (dir.to_path_buf(), self.warmup);
            tokio::task::spawn_blocking(move || prepare(&dir, warm)).await??
        };
        let component = match prepared.component {
            Some(wasm) => {
                tracing::info!(
                    "model {model} version {version} brings its own {} ({} KB); compiling it in the background",
                    repository::COMPONENT_FILE,
                    wasm.len() >> 10
                );
                let (engine, cache) = (self.engine.clone(), self.cache_dir.clone());
                tokio::task::spawn_blocking(move || engine::load_component(&engine, &wasm, &cache))
                    .await?
                    .with_context(|| format!("its {} is unusable", repository::COMPONENT_FILE))?
            }
            None => self.default_component.clone(),
        };
        let graph = match &self.native {
            Some(options) if imports_wasi_nn(&self.engine, &component) => {
                Some(native::load_shared(dir, model, version, options.clone()).await?)
            }
            Some(_) => {
                // A Spin build or a pre-initialized one: a native copy of
                // the model would only take memory.
                tracing::info!(
                    "model {model} version {version}: its component does not import wasi:nn, so the model runs in the guest"
                );
                None
            }
            None => None,
        };
        let servable = Servable {
            name: model.to_string(),
            version,
            dir: dir.to_path_buf(),
            graph,
        };
        let call = if self.warmup {
            WarmupCall::Inference
        } else {
            WarmupCall::LoadOnly
        };
        let pool = InstancePool::start(
            &self.linker,
            &component,
            servable,
            self.instances,
            self.budgets.clone(),
            call,
            self.guest_runtime.clone(),
        )
        .await?;
        if !prepared.warmup.is_empty() {
            run_warmup(&pool, model, version, &prepared.warmup, self.instances).await?;
            tracing::info!(
                "model {model} version {version}: ran {} warm-up requests from assets.extra on each of {} instances",
                prepared.warmup.len(),
                self.instances.max(1)
            );
        }
        Ok(pool)
    }
}

/// Whether `component` can borrow the host's graph (the host path).
fn imports_wasi_nn(engine: &wasmtime::Engine, component: &Component) -> bool {
    component
        .component_type()
        .imports(engine)
        .any(|(name, _)| name.starts_with("wasi:nn/"))
}

/// What a version folder brings besides the model: read before loading.
struct Prepared {
    component: Option<Vec<u8>>,
    warmup: Vec<warmup::WarmupRequest>,
}

fn prepare(dir: &Path, warm: bool) -> anyhow::Result<Prepared> {
    let listing = repository::listing(dir)
        .with_context(|| format!("cannot read the version folder {}", dir.display()))?;
    let missing = listing.missing();
    if !missing.is_empty() {
        anyhow::bail!(
            "the version folder lacks {}; a version needs {}",
            missing.join(", "),
            repository::REQUIRED_FILES.join(", ")
        );
    }
    let component_path = dir.join(repository::COMPONENT_FILE);
    let component = if component_path.is_file() {
        Some(
            std::fs::read(&component_path)
                .with_context(|| format!("cannot read {}", component_path.display()))?,
        )
    } else {
        None
    };
    let warmup = if warm {
        warmup::requests(dir).context("unusable warm-up requests in assets.extra")?
    } else {
        Vec::new()
    };
    Ok(Prepared { component, warmup })
}

/// Runs every warm-up request once on every instance: `instances` copies at
/// once take every instance's permit, so each lands on a different one.
async fn run_warmup(
    pool: &Arc<InstancePool>,
    model: &str,
    version: u64,
    requests: &[warmup::WarmupRequest],
    instances: usize,
) -> anyhow::Result<()> {
    let path = format!("http://localhost/v1/models/{model}/versions/{version}:predict");
    for request in requests {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..instances.max(1) {
            let (pool, path, body) = (pool.clone(), path.clone(), request.body.clone());
            calls.spawn(async move {
                let req = hyper::Request::post(path)
                    .header("content-type", "application/json")
                    .body(Full::new(body))?;
                let response = pool.handle(req).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                let status = response.status();
                let body: Bytes = response.into_body().collect().await?.to_bytes();
                anyhow::Ok((status, body))
            });
        }
        while let Some(result) = calls.join_next().await {
            let (status, body) =
                result?.with_context(|| format!("warm-up request {} failed", request.source))?;
            if !status.is_success() {
                let message = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                anyhow::bail!(
                    "warm-up request {} failed with {}: {message}",
                    request.source,
                    status.as_u16()
                );
            }
        }
    }
    Ok(())
}

/// One version folder as the manager last saw it.
struct Seen {
    path: PathBuf,
    listing: Listing,
    /// When this exact listing was first seen.
    since: Instant,
    /// Passed the completeness rule.
    complete: bool,
}

/// The manager's view of one configured model.
struct Tracked {
    config: ModelConfig,
    /// Tells a load's result apart from one for an older config of the
    /// same name.
    generation: u64,
    seen: BTreeMap<u64, Seen>,
    /// Versions that failed, with the listing they failed with.
    failed: BTreeMap<u64, Listing>,
    loading: Option<u64>,
    last_look: Option<Instant>,
    look_error: Option<String>,
    /// Nothing to do until the files change: every wanted version is
    /// serving or failed, and no copy is in progress.
    settled: bool,
}

impl Tracked {
    fn new(config: ModelConfig, generation: u64) -> Tracked {
        Tracked {
            config,
            generation,
            seen: BTreeMap::new(),
            failed: BTreeMap::new(),
            loading: None,
            last_look: None,
            look_error: None,
            settled: false,
        }
    }

    /// Folders with a model that have not passed the completeness rule yet.
    fn copying(&self) -> bool {
        self.seen
            .values()
            .any(|s| !s.complete && s.listing.has_model())
    }

    fn look_due(&self, now: Instant, poll: Option<Duration>) -> bool {
        let Some(last) = self.last_look else {
            return true;
        };
        let wait = if self.copying() {
            SETTLE
        } else {
            match poll {
                Some(p) => p,
                None => return false,
            }
        };
        now >= last + wait
    }
}

/// Why a reload was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadError {
    /// The config itself is wrong; nothing was changed.
    InvalidArgument(String),
    /// The models were reconfigured, but some version labels point at
    /// versions that are not loaded; those models keep their old labels.
    FailedPrecondition(String),
}

impl ReloadError {
    /// TF Serving's error code, for the gRPC front end.
    pub fn code(&self) -> &'static str {
        match self {
            ReloadError::InvalidArgument(_) => "INVALID_ARGUMENT",
            ReloadError::FailedPrecondition(_) => "FAILED_PRECONDITION",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ReloadError::InvalidArgument(m) | ReloadError::FailedPrecondition(m) => m,
        }
    }
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// Where a reload takes its config from.
pub enum ConfigSource {
    /// Re-read `--model_config_file`.
    File,
    /// A `ModelServerConfig` in text format.
    Text(String),
    /// Already parsed: the gRPC front end converts its proto to this.
    Parsed(Vec<ModelConfig>),
}

pub struct Lifecycle {
    registry: Arc<Registry>,
    loader: Loader,
    /// `None`: `--file_system_poll_wait_seconds=0`.
    poll: Option<Duration>,
    allow_unavailable_labels: bool,
    config_file: Option<PathBuf>,
    models: Mutex<BTreeMap<String, Tracked>>,
    /// Wakes the manager early: a load finished, a config changed.
    wake: Notify,
    /// Told after every pass of the manager, for reloads waiting on loads.
    progress: Notify,
    /// One reload at a time; holds the config file text last applied.
    reloading: tokio::sync::Mutex<Option<String>>,
    generations: AtomicU64,
    /// Reloads started; the initial labeling gives way to the first one.
    reloads: AtomicU64,
}

impl Lifecycle {
    pub fn new(
        registry: Arc<Registry>,
        loader: Loader,
        poll: Option<Duration>,
        allow_unavailable_labels: bool,
        config_file: Option<PathBuf>,
    ) -> Arc<Lifecycle> {
        Arc::new(Lifecycle {
            registry,
            loader,
            poll,
            allow_unavailable_labels,
            config_file,
            models: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            progress: Notify::new(),
            reloading: tokio::sync::Mutex::new(None),
            generations: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
        })
    }

    fn models(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Tracked>> {
        // Every critical section leaves the map consistent, so a panic in
        // one does not make the state unusable.
        self.models.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configs being served, in name order.
    pub fn configs(&self) -> Vec<ModelConfig> {
        self.models().values().map(|t| t.config.clone()).collect()
    }

    /// Serves `configs` from now on: new models are added, removed ones
    /// unloaded, changed ones updated. Then waits until every model has
    /// loaded what its policy wants (or failed to), and assigns the version
    /// labels, which may only name AVAILABLE versions.
    ///
    /// The REST admin endpoint and the config-file poller call this; the
    /// gRPC `HandleReloadConfigRequest` can too.
    pub async fn reload(self: &Arc<Self>, source: ConfigSource) -> Result<(), ReloadError> {
        // A reload keeps going when its caller gives up (a client that
        // disconnects), so a config is never left half applied.
        let this = self.clone();
        tokio::spawn(async move { this.reload_now(source).await })
            .await
            .unwrap_or_else(|e| {
                Err(ReloadError::InvalidArgument(format!(
                    "the reload failed unexpectedly: {e}"
                )))
            })
    }

    async fn reload_now(self: &Arc<Self>, source: ConfigSource) -> Result<(), ReloadError> {
        let mut last_file = self.reloading.lock().await;
        self.reloads.fetch_add(1, Ordering::AcqRel);
        let (configs, file_text) = match source {
            ConfigSource::Parsed(c) => (c, None),
            ConfigSource::Text(t) => (parse(&t)?, None),
            ConfigSource::File => {
                let Some(path) = self.config_file.clone() else {
                    return Err(ReloadError::InvalidArgument(
                        "this server was started without --model_config_file; send the config itself: {\"config\": \"model_config_list { ... }\"}".into(),
                    ));
                };
                let text = tokio::fs::read_to_string(&path).await.map_err(|e| {
                    ReloadError::InvalidArgument(format!(
                        "cannot read the model config file {}: {e}",
                        path.display()
                    ))
                })?;
                (parse(&text)?, Some(text))
            }
        };
        check_base_paths(&configs).map_err(|e| ReloadError::InvalidArgument(format!("{e:#}")))?;
        let names: Vec<String> = configs.iter().map(|c| c.name.clone()).collect();
        self.configure(configs.clone());
        if let Some(text) = file_text {
            *last_file = Some(text);
        }
        if !self.wait_settled(&names).await {
            tracing::warn!(
                "models {} did not finish loading within {} s; assigning version labels anyway",
                names.join(", "),
                RELOAD_WAIT.as_secs()
            );
        }
        self.assign_labels(&configs, true)
            .map_err(ReloadError::FailedPrecondition)
    }

    /// The part of a reload that takes effect at once: registry and manager
    /// learn the new model set. Used directly at start, before the port opens.
    pub fn configure(&self, configs: Vec<ModelConfig>) {
        let mut models = self.models();
        let wanted: BTreeSet<&str> = configs.iter().map(|c| c.name.as_str()).collect();
        let removed: Vec<String> = models
            .keys()
            .filter(|n| !wanted.contains(n.as_str()))
            .cloned()
            .collect();
        for name in removed {
            models.remove(&name);
            tracing::info!("model {name} is no longer configured; unloading it");
            self.remove_from_registry(&name);
        }
        for config in configs {
            let name = config.name.clone();
            match models.get_mut(&name) {
                Some(t) if t.config.base_path == config.base_path => {
                    if t.config.policy != config.policy {
                        tracing::info!("model {name}: version policy is now {}", config.policy);
                        t.settled = false;
                    }
                    t.config = config;
                }
                existing => {
                    if existing.is_some() {
                        tracing::info!(
                            "model {name} moved to {}; reloading it from there",
                            config.base_path.display()
                        );
                        self.remove_from_registry(&name);
                    } else {
                        tracing::info!(
                            "serving model {name} from {} ({})",
                            config.base_path.display(),
                            config.policy
                        );
                    }
                    self.registry.add_model(&name);
                    let generation = self.generations.fetch_add(1, Ordering::Relaxed);
                    models.insert(name, Tracked::new(config, generation));
                }
            }
        }
        drop(models);
        self.wake.notify_one();
    }

    fn remove_from_registry(&self, name: &str) {
        for (version, pool) in self.registry.remove_model(name) {
            self.drain(name, version, pool, false);
        }
    }

    /// Waits until every model in `names` is settled; false on timeout.
    async fn wait_settled(&self, names: &[String]) -> bool {
        let deadline = tokio::time::Instant::now() + RELOAD_WAIT;
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            let settled = {
                let models = self.models();
                names
                    .iter()
                    .all(|n| models.get(n).is_none_or(|t| t.settled))
            };
            if settled {
                return true;
            }
            if tokio::time::timeout_at(deadline, progress).await.is_err() {
                return false;
            }
        }
    }

    /// Assigns each model's labels, all or nothing per model. A label may
    /// name an AVAILABLE version, keep the version it already names, or, with
    /// `--allow_version_labels_for_unavailable_models`, be new and name any
    /// version.
    fn assign_labels(&self, configs: &[ModelConfig], log: bool) -> Result<(), String> {
        let mut errors = Vec::new();
        for config in configs {
            let name = &config.name;
            let current = self.registry.labels(name);
            let mut refused = Vec::new();
            for (label, &version) in &config.labels {
                let available = matches!(
                    self.registry.state(name, version),
                    Some(VersionState::Available(_))
                );
                let unchanged = current.get(label) == Some(&version);
                let new_ahead = self.allow_unavailable_labels && !current.contains_key(label);
                if !(available || unchanged || new_ahead) {
                    refused.push(format!(
                        "label {label} of model {name} names version {version}, which is not AVAILABLE ({})",
                        self.registry
                            .state(name, version)
                            .map_or("not loaded", |s| s.name())
                    ));
                }
            }
            if refused.is_empty() {
                if current != config.labels {
                    tracing::info!("model {name}: version labels are now {:?}", config.labels);
                }
                self.registry.set_labels(name, config.labels.clone());
            } else {
                errors.extend(refused);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            let message = format!(
                "{}; a label may only name a loaded version: load it first (e.g. add it to the model's version policy), or start vitrine with --allow_version_labels_for_unavailable_models to assign a new label ahead of its version",
                errors.join("; ")
            );
            if log {
                tracing::error!("{message}");
            }
            Err(message)
        }
    }

    /// Re-reads `--model_config_file` every `every` and applies it when its
    /// text changes.
    pub async fn poll_config_file(self: Arc<Self>, every: Duration) {
        let Some(path) = self.config_file.clone() else {
            return;
        };
        let mut last_seen: Option<String> = self.reloading.lock().await.clone();
        loop {
            tokio::time::sleep(every).await;
            let text = match tokio::fs::read_to_string(&path).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(
                        "cannot read the model config file {}: {e}; keeping the current config",
                        path.display()
                    );
                    continue;
                }
            };
            if last_seen.as_deref() == Some(text.as_str()) {
                continue;
            }
            last_seen = Some(text);
            tracing::info!(
                "the model config file {} changed; reloading",
                path.display()
            );
            match self.reload(ConfigSource::File).await {
                Ok(()) => tracing::info!("model config reloaded from {}", path.display()),
                Err(e) => tracing::error!("model config {} not fully applied: {e}", path.display()),
            }
        }
    }

    /// Records `text` as the config file content already applied (at start).
    pub async fn remember_config_file(&self, text: String) {
        *self.reloading.lock().await = Some(text);
    }

    /// Assigns the labels of the config applied at start as soon as the
    /// versions they name are loaded (TF Serving likewise loads first, then
    /// labels). Stops at the first reload, which brings its own labels.
    pub async fn label_initial(self: Arc<Self>) {
        let configs = self.configs();
        if configs.iter().all(|c| c.labels.is_empty()) {
            return;
        }
        let names: Vec<String> = configs.iter().map(|c| c.name.clone()).collect();
        let reloads = self.reloads.load(Ordering::Acquire);
        let mut logged = false;
        loop {
            self.wait_settled(&names).await;
            if self.reloads.load(Ordering::Acquire) != reloads {
                return;
            }
            match self.assign_labels(&configs, !logged) {
                Ok(()) => return,
                Err(_) => logged = true,
            }
            // Try again when the manager has made progress.
            let progress = self.progress.notified();
            let _ = tokio::time::timeout(Duration::from_secs(5), progress).await;
        }
    }

    /// The manager: looks at base paths when due, and loads and unloads.
    pub async fn run(self: Arc<Self>) {
        loop {
            let now = Instant::now();
            let due: Vec<(String, PathBuf, u64)> = self
                .models()
                .iter()
                .filter(|(_, t)| t.look_due(now, self.poll))
                .map(|(n, t)| (n.clone(), t.config.base_path.clone(), t.generation))
                .collect();
            for (name, base, generation) in due {
                let looked = tokio::task::spawn_blocking(move || look(&base)).await;
                let looked = looked.unwrap_or_else(|e| Err(anyhow::anyhow!("{e}")));
                let mut models = self.models();
                if let Some(t) = models.get_mut(&name).filter(|t| t.generation == generation) {
                    apply_look(&name, t, looked, Instant::now());
                }
            }
            self.reconcile_all();
            self.progress.notify_waiters();
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    fn reconcile_all(self: &Arc<Self>) {
        let mut loads = Vec::new();
        let mut unloads = Vec::new();
        {
            let mut models = self.models();
            for (name, t) in models.iter_mut() {
                let (load, unload) = self.reconcile(name, t);
                loads.extend(load.map(|l| (name.clone(), t.generation, l)));
                unloads.extend(unload.into_iter().map(|v| (name.clone(), v)));
            }
        }
        for (name, version) in unloads {
            if let Some(VersionState::Available(pool)) =
                self.registry.set(&name, version, VersionState::Unloading)
            {
                tracing::info!(
                    "model {name} version {version} left routing; unloading it once its requests finish"
                );
                self.drain(&name, version, pool, true);
            }
        }
        for (name, generation, (version, path, listing)) in loads {
            let this = self.clone();
            tokio::spawn(async move {
                this.load(name, generation, version, path, listing).await;
            });
        }
    }

    /// Decides for one model: at most one version to start loading, and the
    /// versions to unload.
    fn reconcile(
        &self,
        name: &str,
        t: &mut Tracked,
    ) -> (Option<(u64, PathBuf, Listing)>, Vec<u64>) {
        let states: BTreeMap<u64, VersionState> =
            self.registry.versions(name).into_iter().collect();
        let loaded = |v: &u64| {
            matches!(
                states.get(v),
                Some(VersionState::Available(_) | VersionState::Loading)
            )
        };
        let candidates: BTreeSet<u64> = t
            .seen
            .iter()
            .filter(|(v, s)| {
                let failed = t.failed.get(v).is_some_and(|l| *l == s.listing);
                // A loaded version stays a candidate while its folder exists:
                // a version is immutable once served.
                (s.complete || loaded(v)) && !failed
            })
            .map(|(v, _)| *v)
            .collect();
        let wanted = t.config.policy.select(&candidates);
        let mut load = None;
        if t.loading.is_none()
            && let Some(&v) = wanted.iter().find(|v| !loaded(v))
            && let Some(seen) = t.seen.get(&v)
        {
            t.loading = Some(v);
            self.registry.set(name, v, VersionState::Loading);
            load = Some((v, seen.path.clone(), seen.listing.clone()));
        }
        let all_serving = wanted
            .iter()
            .all(|v| matches!(states.get(v), Some(VersionState::Available(_))));
        let mut unload = Vec::new();
        if all_serving && load.is_none() {
            for (v, s) in &states {
                if matches!(s, VersionState::Available(_)) && !wanted.contains(v) {
                    unload.push(*v);
                }
            }
        }
        // Ended versions whose folder is gone leave the status.
        for (v, s) in &states {
            if matches!(s, VersionState::End(_)) && !t.seen.contains_key(v) {
                self.registry.forget(name, *v);
                t.failed.remove(v);
            }
        }
        t.settled = t.last_look.is_some()
            && !t.copying()
            && t.loading.is_none()
            && all_serving
            && unload.is_empty();
        (load, unload)
    }

    async fn load(
        self: Arc<Self>,
        name: String,
        generation: u64,
        version: u64,
        path: PathBuf,
        listing: Listing,
    ) {
        let started = Instant::now();
        tracing::info!(
            "model {name} version {version}: loading from {}",
            path.display()
        );
        let result = self.loader.load(&name, version, &path).await;
        let random_weights = result.is_ok() && has_random_weights(&path);
        let mut models = self.models();
        let Some(t) = models.get_mut(&name).filter(|t| t.generation == generation) else {
            tracing::info!(
                "model {name} version {version} finished loading after its model was reconfigured; discarding it"
            );
            return;
        };
        t.loading = None;
        match result {
            Ok(pool) => {
                if random_weights {
                    tracing::warn!(
                        "model {name} version {version} has RANDOM weights (a Vitrine demo model): its predictions are meaningless"
                    );
                }
                crate::metrics::record_load(&name, version, started.elapsed());
                self.registry
                    .set(&name, version, VersionState::Available(pool));
                tracing::info!(
                    "model {name} version {version} is AVAILABLE ({} warm instances, loaded in {:.1} s)",
                    self.loader.instances.max(1),
                    started.elapsed().as_secs_f64()
                );
            }
            Err(e) => {
                let message = format!("{e:#}");
                tracing::error!(
                    "model {name} version {version} failed to load: {message}; it stays out of service until its files change"
                );
                self.registry
                    .set(&name, version, VersionState::End(Some(message)));
                t.failed.insert(version, listing);
            }
        }
        drop(models);
        self.wake.notify_one();
    }

    /// Lets the requests on `pool` finish, then frees it. `mark_end` records
    /// the version as END in the status once it is gone.
    fn drain(&self, name: &str, version: u64, pool: Arc<InstancePool>, mark_end: bool) {
        let weak = Arc::downgrade(&pool);
        drop(pool);
        let registry = self.registry.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let started = Instant::now();
            while weak.strong_count() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if mark_end
                && matches!(
                    registry.state(&name, version),
                    Some(VersionState::Unloading)
                )
            {
                registry.set(&name, version, VersionState::End(None));
            }
            tracing::info!(
                "model {name} version {version} unloaded: its last request finished {:.1} s after it left routing, and its instances and their memory are freed",
                started.elapsed().as_secs_f64()
            );
        });
    }
}

fn parse(text: &str) -> Result<Vec<ModelConfig>, ReloadError> {
    model_config::parse(text)
        .map_err(|e| ReloadError::InvalidArgument(format!("invalid model config: {e:#}")))
}

/// Refuses a config whose base paths are not folders: a typo should fail
/// the reload, not leave a model silently empty.
pub fn check_base_paths(configs: &[ModelConfig]) -> anyhow::Result<()> {
    for c in configs {
        if !c.base_path.is_dir() {
            anyhow::bail!(
                "model {}: base_path {} is not a folder; create it (it holds <version>/ folders) or fix the path",
                c.name,
                c.base_path.display()
            );
        }
    }
    Ok(())
}

/// One look at a base path: every numbered folder and its listing.
type Look = anyhow::Result<Vec<(repository::VersionDir, std::io::Result<Listing>)>>;

fn look(base: &Path) -> Look {
    Ok(repository::version_dirs(base)?
        .into_iter()
        .map(|d| {
            let listing = repository::listing(&d.path);
            (d, listing)
        })
        .collect())
}

/// Updates what the manager knows of a model's folders from one look, and
/// applies the completeness rule.
fn apply_look(name: &str, t: &mut Tracked, looked: Look, now: Instant) {
    let first = t.last_look.is_none();
    t.last_look = Some(now);
    let dirs = match looked {
        Ok(dirs) => dirs,
        Err(e) => {
            let message = format!("{e:#}");
            if t.look_error.as_deref() != Some(message.as_str()) {
                tracing::warn!("model {name}: {message}; its loaded versions keep serving");
                t.look_error = Some(message);
            }
            return;
        }
    };
    if t.look_error.take().is_some() {
        tracing::info!(
            "model {name}: its base path {} is readable again",
            t.config.base_path.display()
        );
    }
    if first
        && !dirs
            .iter()
            .any(|(_, l)| l.as_ref().is_ok_and(Listing::has_model))
    {
        tracing::warn!(
            "model {name}: no version folder with a {} under {} yet",
            repository::MODEL_FILE,
            t.config.base_path.display()
        );
    }
    let mut seen = BTreeMap::new();
    for (dir, listing) in dirs {
        let version = dir.version;
        let Ok(listing) = listing else {
            // Unreadable for a moment (or removed since the base path was
            // listed): keep what was known, so a hiccup never unloads a
            // serving version; a folder really gone is dropped next look.
            if let Some(prev) = t.seen.remove(&version) {
                seen.insert(version, prev);
            }
            continue;
        };
        let (since, was_complete) = match t.seen.get(&version) {
            Some(prev) if prev.listing == listing => (prev.since, prev.complete),
            _ => (now, false),
        };
        let marker = listing.has_ready_marker();
        let complete =
            listing.has_model() && (was_complete || marker || now.duration_since(since) >= SETTLE);
        if complete && !was_complete {
            tracing::info!(
                "model {name} version {version} is complete ({})",
                if marker {
                    "it has a .ready marker"
                } else {
                    "its files stopped changing"
                }
            );
        } else if !complete && listing.has_model() && !t.seen.contains_key(&version) {
            tracing::info!(
                "model {name}: found version {version}; waiting until its files stop changing"
            );
        }
        seen.insert(
            version,
            Seen {
                path: dir.path,
                listing,
                since,
                complete,
            },
        );
    }
    t.seen = seen;
}

/// Demo models mark themselves in `config.json` (`"vitrine": {"random_weights": true}`).
fn has_random_weights(dir: &Path) -> bool {
    std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|c| c["vitrine"]["random_weights"] == true)
}
