//! Config changes for the lifecycle manager: a reload from the config file,
//! the admin endpoint or gRPC, and the version labels it assigns.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::models::config::{self as model_config, ModelConfig};
use crate::models::registry::VersionState;

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

impl Lifecycle {
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
}

fn parse(text: &str) -> Result<Vec<ModelConfig>, ReloadError> {
    model_config::parse(text)
        .map_err(|e| ReloadError::InvalidArgument(format!("invalid model config: {e:#}")))
}
