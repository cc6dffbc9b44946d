//! What the front ends see: every configured model, the state of each of its
//! versions, and its version labels.
//!
//! The lifecycle manager writes it; REST (and the other front ends) only
//! read it, through [`Registry::resolve`] and [`Registry::status`]. The lock
//! is a plain `RwLock` held for a map lookup and never across an await, so
//! routing switches from one version to the next atomically and requests
//! never wait on a load.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use vitrine_component::api::{VersionSelector, VersionStatus};

use crate::runtime::pool::InstancePool;

/// Where one model version stands, in TF Serving's terms.
#[derive(Clone)]
pub enum VersionState {
    /// Being compiled, instantiated and warmed up; not served yet.
    Loading,
    /// Serving requests.
    Available(Arc<InstancePool>),
    /// Out of routing; requests already on it are finishing.
    Unloading,
    /// Unloaded (`None`), or failed to load (`Some(error)`).
    End(Option<String>),
}

impl VersionState {
    pub fn name(&self) -> &'static str {
        match self {
            VersionState::Loading => "LOADING",
            VersionState::Available(_) => "AVAILABLE",
            VersionState::Unloading => "UNLOADING",
            VersionState::End(_) => "END",
        }
    }
}

/// One configured model.
#[derive(Default, Clone)]
struct ModelEntry {
    versions: BTreeMap<u64, VersionState>,
    labels: BTreeMap<String, u64>,
    /// What the status says of a version that is not failed, e.g. that its
    /// folder was deleted while it serves.
    notes: BTreeMap<u64, String>,
}

/// Why a request found nothing to run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// No such model, version or label: 404.
    NotFound(String),
    /// Known, but not AVAILABLE right now (loading, or failed): 503.
    Unavailable(String),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::NotFound(m) | ResolveError::Unavailable(m) => f.write_str(m),
        }
    }
}

/// The models this server serves and the state of each version.
pub struct Registry {
    models: RwLock<BTreeMap<String, ModelEntry>>,
    pub max_request_bytes: usize,
    /// Time a REST client has to send a body (`None`: no limit).
    pub body_read_timeout: Option<std::time::Duration>,
    /// Signalled after every change of models or version states, so the
    /// gRPC health service turns SERVING as the first version turns
    /// AVAILABLE, not a poll later. One permit is kept for one watcher.
    pub changed: tokio::sync::Notify,
}

impl Registry {
    pub fn new(max_request_bytes: usize) -> Registry {
        Registry {
            models: RwLock::new(BTreeMap::new()),
            max_request_bytes,
            body_read_timeout: None,
            changed: tokio::sync::Notify::new(),
        }
    }

    pub fn with_body_read_timeout(self, timeout: Option<std::time::Duration>) -> Registry {
        Registry {
            body_read_timeout: timeout,
            ..self
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ModelEntry>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every write is one insert or remove), so a poisoned lock is usable.
        self.models.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ModelEntry>> {
        self.models.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The configured models' names, in order.
    pub fn model_names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    pub fn has_model(&self, model: &str) -> bool {
        self.read().contains_key(model)
    }

    /// Makes `model` known (with no versions yet), so status and readiness
    /// report it.
    pub fn add_model(&self, model: &str) {
        self.write().entry(model.to_string()).or_default();
        self.changed.notify_one();
    }

    /// Forgets `model`: its routes answer 404 from now on. Returns the pools
    /// it was serving, for the caller to drain.
    pub fn remove_model(&self, model: &str) -> Vec<(u64, Arc<InstancePool>)> {
        let removed = self.write().remove(model);
        self.changed.notify_one();
        removed
            .map(|entry| {
                entry
                    .versions
                    .into_iter()
                    .filter_map(|(v, s)| match s {
                        VersionState::Available(p) => Some((v, p)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sets the state of one version, returning the previous one. Does
    /// nothing for a model that is not configured.
    pub fn set(&self, model: &str, version: u64, state: VersionState) -> Option<VersionState> {
        let previous = self
            .write()
            .get_mut(model)
            .and_then(|m| m.versions.insert(version, state));
        self.changed.notify_one();
        previous
    }

    /// Drops a version from status entirely (its folder is gone).
    pub fn forget(&self, model: &str, version: u64) {
        if let Some(m) = self.write().get_mut(model) {
            m.versions.remove(&version);
            m.notes.remove(&version);
        }
        self.changed.notify_one();
    }

    /// Sets or clears the note the status shows for a version; true if it
    /// changed.
    pub fn set_note(&self, model: &str, version: u64, note: Option<String>) -> bool {
        let mut models = self.write();
        let Some(m) = models.get_mut(model) else {
            return false;
        };
        match note {
            Some(note) => m.notes.insert(version, note.clone()).as_ref() != Some(&note),
            None => m.notes.remove(&version).is_some(),
        }
    }

    pub fn state(&self, model: &str, version: u64) -> Option<VersionState> {
        self.read().get(model)?.versions.get(&version).cloned()
    }

    /// Every version of `model` with its state, oldest first.
    pub fn versions(&self, model: &str) -> Vec<(u64, VersionState)> {
        self.read()
            .get(model)
            .map(|m| m.versions.iter().map(|(v, s)| (*v, s.clone())).collect())
            .unwrap_or_default()
    }

    pub fn labels(&self, model: &str) -> BTreeMap<String, u64> {
        self.read()
            .get(model)
            .map(|m| m.labels.clone())
            .unwrap_or_default()
    }

    pub fn set_labels(&self, model: &str, labels: BTreeMap<String, u64>) {
        if let Some(m) = self.write().get_mut(model) {
            m.labels = labels;
        }
    }

    /// The one place a request's model and version become a pool: the
    /// newest AVAILABLE version, a numbered one, or the one a label names.
    pub fn resolve(
        &self,
        model: &str,
        selector: &VersionSelector,
    ) -> Result<Arc<InstancePool>, ResolveError> {
        let models = self.read();
        let entry = models
            .get(model)
            .ok_or_else(|| not_found(model, selector))?;
        let version = match selector {
            VersionSelector::Latest => {
                let newest = entry.versions.values().rev().find_map(|s| match s {
                    VersionState::Available(p) => Some(p.clone()),
                    _ => None,
                });
                return newest.ok_or_else(|| latest_unavailable(model, entry));
            }
            VersionSelector::Number(v) => *v,
            VersionSelector::Label(l) => label_version(model, entry, l)?,
        };
        match entry.versions.get(&version) {
            Some(VersionState::Available(p)) => Ok(p.clone()),
            Some(VersionState::Loading) => Err(ResolveError::Unavailable(format!(
                "model {model} version {version} is still loading; retry shortly"
            ))),
            Some(VersionState::End(Some(e))) => Err(ResolveError::Unavailable(format!(
                "model {model} version {version} failed to load: {e}"
            ))),
            Some(VersionState::Unloading | VersionState::End(None)) => {
                Err(ResolveError::NotFound(format!(
                    "model {model} version {version} was unloaded and is no longer served; {}",
                    serving_hint(entry)
                )))
            }
            None => match selector {
                VersionSelector::Label(l) => Err(ResolveError::Unavailable(format!(
                    "label {l} of model {model} points at version {version}, which is not loaded yet"
                ))),
                _ => Err(not_found(model, selector)),
            },
        }
    }

    /// TF Serving's `model_version_status` for a model, one version, or the
    /// version a label names.
    pub fn status(
        &self,
        model: &str,
        selector: &VersionSelector,
    ) -> Result<Vec<VersionStatus>, ResolveError> {
        let models = self.read();
        let entry = models.get(model).ok_or_else(|| {
            ResolveError::NotFound(format!("Could not find any versions of model {model}"))
        })?;
        let wanted = match selector {
            VersionSelector::Latest => None,
            VersionSelector::Number(v) => Some(*v),
            VersionSelector::Label(l) => Some(label_version(model, entry, l)?),
        };
        let statuses: Vec<VersionStatus> = entry
            .versions
            .iter()
            .filter(|(v, _)| wanted.is_none_or(|w| **v == w))
            .map(|(v, s)| VersionStatus {
                version: *v,
                state: s.name(),
                error: match s {
                    VersionState::End(Some(e)) => Some(e.clone()),
                    _ => entry.notes.get(v).cloned(),
                },
            })
            .collect();
        if statuses.is_empty() {
            return Err(ResolveError::NotFound(match wanted {
                Some(v) => format!("Could not find version {v} of model {model}"),
                None => format!("Could not find any versions of model {model}"),
            }));
        }
        Ok(statuses)
    }

    /// Ready when every configured model has an AVAILABLE version; otherwise
    /// the models that have none.
    pub fn unready_models(&self) -> Vec<String> {
        self.read()
            .iter()
            .filter(|(_, m)| {
                !m.versions
                    .values()
                    .any(|s| matches!(s, VersionState::Available(_)))
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    pub fn is_ready(&self) -> bool {
        let models = self.read();
        !models.is_empty()
            && models.values().all(|m| {
                m.versions
                    .values()
                    .any(|s| matches!(s, VersionState::Available(_)))
            })
    }
}

fn not_found(model: &str, selector: &VersionSelector) -> ResolveError {
    ResolveError::NotFound(format!(
        "Servable not found for request: {}",
        selector.describe(model)
    ))
}

fn label_version(model: &str, entry: &ModelEntry, label: &str) -> Result<u64, ResolveError> {
    entry.labels.get(label).copied().ok_or_else(|| {
        let known: Vec<&str> = entry.labels.keys().map(String::as_str).collect();
        ResolveError::NotFound(if known.is_empty() {
            format!("no version label \"{label}\" is assigned for model {model}; it has no labels")
        } else {
            format!(
                "no version label \"{label}\" is assigned for model {model}; its labels are {}",
                known.join(", ")
            )
        })
    })
}

fn serving_hint(entry: &ModelEntry) -> String {
    let available: Vec<String> = entry
        .versions
        .iter()
        .filter(|(_, s)| matches!(s, VersionState::Available(_)))
        .map(|(v, _)| v.to_string())
        .collect();
    if available.is_empty() {
        "no version is available right now".into()
    } else {
        format!("available: {}", available.join(", "))
    }
}

/// Why `Latest` finds nothing: still loading, failed, or nothing there.
fn latest_unavailable(model: &str, entry: &ModelEntry) -> ResolveError {
    if entry
        .versions
        .values()
        .any(|s| matches!(s, VersionState::Loading))
    {
        return ResolveError::Unavailable(format!("model {model} is still loading; retry shortly"));
    }
    let failed = entry.versions.iter().rev().find_map(|(v, s)| match s {
        VersionState::End(Some(e)) => Some((v, e)),
        _ => None,
    });
    match failed {
        Some((v, e)) => {
            ResolveError::Unavailable(format!("model {model} version {v} failed to load: {e}"))
        }
        None => not_found(model, &VersionSelector::Latest),
    }
}
