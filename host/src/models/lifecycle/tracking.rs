//! What the lifecycle manager knows of each configured model's folders,
//! from its looks at the base path, and the completeness rule that decides
//! when a version is fully copied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::models::config::ModelConfig;
use crate::models::repository::{self, Listing, QUIET, SETTLE};

/// One version folder as the manager last saw it.
pub(super) struct Seen {
    pub(super) path: PathBuf,
    pub(super) listing: Listing,
    /// When this exact listing was first seen.
    pub(super) since: Instant,
    /// Passed the completeness rule.
    pub(super) complete: bool,
}

/// The manager's view of one configured model.
pub(super) struct Tracked {
    pub(super) config: ModelConfig,
    /// Tells a load's result apart from one for an older config of the
    /// same name.
    pub(super) generation: u64,
    pub(super) seen: BTreeMap<u64, Seen>,
    /// Versions that failed, with the listing they failed with.
    pub(super) failed: BTreeMap<u64, Listing>,
    pub(super) loading: Option<u64>,
    pub(super) last_look: Option<Instant>,
    pub(super) look_error: Option<String>,
    /// Nothing to do until the files change: every wanted version is
    /// serving or failed, and no copy is in progress.
    pub(super) settled: bool,
}

impl Tracked {
    pub(super) fn new(config: ModelConfig, generation: u64) -> Tracked {
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
    pub(super) fn copying(&self) -> bool {
        self.seen
            .values()
            .any(|s| !s.complete && s.listing.has_model())
    }

    pub(super) fn look_due(&self, now: Instant, poll: Option<Duration>) -> bool {
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

/// One look at a base path: every numbered folder and its listing.
pub(super) type Look = anyhow::Result<Vec<(repository::VersionDir, std::io::Result<Listing>)>>;

pub(super) fn look(base: &Path) -> Look {
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
pub(super) fn apply_look(name: &str, t: &mut Tracked, looked: Look, now: Instant) {
    let wall_clock = std::time::SystemTime::now();
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
        let quiet = listing.quiet(wall_clock);
        let complete = listing.has_model()
            && (was_complete || marker || quiet || now.duration_since(since) >= SETTLE);
        if complete && !was_complete {
            let why = if marker {
                "it has a .ready marker".to_string()
            } else if quiet {
                format!("nothing in it changed for {} s", QUIET.as_secs())
            } else {
                "its files stopped changing".to_string()
            };
            tracing::info!("model {name} version {version} is complete ({why})");
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
