//! The model lifecycle manager: which versions of which models are loaded,
//! and how they come and go while requests keep flowing.
//!
//! One background task looks at every model's base path (every
//! `--file_system_poll_wait_seconds`, and every [`SETTLE`] while a copy is
//! in progress), applies the completeness rule of [`crate::models::repository`],
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
//!
//! - [`loader`]: turns one version folder into a warm pool.
//! - [`tracking`]: what the manager knows of each model's folders, and the
//!   completeness rule applied to what it sees.
//! - [`reload`]: config changes and version labels.
//! - this file: the manager's loop, which loads, swaps and unloads.

mod loader;
mod reload;
mod tracking;

pub use loader::Loader;
use loader::has_random_weights;
pub use reload::ConfigSource;
use tracking::{Tracked, apply_look, look};

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::models::config::ModelConfig;
use crate::models::registry::{Registry, VersionState};
use crate::models::repository::Listing;
use crate::runtime::pool::InstancePool;

/// How often the manager wakes up to see whether a look is due.
const TICK: Duration = Duration::from_millis(250);

/// How long a reload waits for its models to load before it applies the
/// version labels anyway (and reports the ones whose version is missing).
const RELOAD_WAIT: Duration = Duration::from_secs(900);

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
        let mut wanted = t.config.policy.select(&candidates);
        let gone = self.note_deleted_folders(name, t, &states);
        // A served version whose folder was deleted keeps serving from
        // memory until the policy has a version on disk to serve instead:
        // deleting files never takes a model dark.
        if wanted.is_empty() {
            wanted = gone;
        }
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

    /// The AVAILABLE versions whose folder is gone, newest first; says so in
    /// their status and the log when that changes.
    fn note_deleted_folders(
        &self,
        name: &str,
        t: &Tracked,
        states: &BTreeMap<u64, VersionState>,
    ) -> Vec<u64> {
        let mut gone = Vec::new();
        for (&v, s) in states.iter().rev() {
            if !matches!(s, VersionState::Available(_)) {
                continue;
            }
            let folder = t.config.base_path.join(v.to_string());
            if t.seen.contains_key(&v) {
                if self.registry.set_note(name, v, None) {
                    tracing::info!("model {name} version {v}: its folder is back");
                }
                continue;
            }
            gone.push(v);
            let note = format!(
                "its folder {} was removed from disk while it served; it serves from memory and cannot be reloaded: publish a new version",
                folder.display()
            );
            if self.registry.set_note(name, v, Some(note)) {
                tracing::warn!(
                    "model {name} version {v}: its folder {} was removed from disk; serving it from memory until another version can replace it",
                    folder.display()
                );
            }
        }
        gone
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
            crate::metrics::forget_version(&name, version);
            tracing::info!(
                "model {name} version {version} unloaded: its last request finished {:.1} s after it left routing, and its instances and their memory are freed",
                started.elapsed().as_secs_f64()
            );
            // Freed is not returned: see `runtime::memory`.
            let _ = tokio::task::spawn_blocking(crate::runtime::memory::release_freed_memory).await;
        });
    }
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
