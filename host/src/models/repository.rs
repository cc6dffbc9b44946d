//! The model repository: `<base>/<version>/` folders in optimum's layout, and
//! the rule that says when a version folder is complete.
//!
//! **Completeness rule.** Files are copied into a volume one by one and byte
//! by byte, so a folder that exists is not yet a version. A version folder is
//! considered only when
//!
//! 1. its name is a positive integer (`2.tmp/`, `.2/` and `tmp/` are never
//!    read, so copying to a temporary name and renaming is always safe), and
//! 2. it holds `model.onnx`, and
//! 3. either it holds a `.ready` file (the publisher says it is done), or its
//!    listing (the path, size and modification time of every file in it,
//!    recursively) is identical in two looks at least [`SETTLE`] apart, or
//!    nothing in it has changed for [`QUIET`] by the filesystem's own change
//!    times (a version already in place when the server starts is loaded at
//!    once, as TF Serving does, without waiting [`SETTLE`]).
//!
//! Only then is it loaded; a folder missing `config.json` at that point is a
//! failed version, reported in the model's status. A version that failed is
//! retried when its listing changes (the publisher fixed or finished it),
//! never otherwise.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;

/// Files a version folder must hold before it is served.
pub const REQUIRED_FILES: [&str; 3] = ["model.onnx", "config.json", "preprocessor_config.json"];

/// The file whose presence makes a folder a version candidate.
pub const MODEL_FILE: &str = "model.onnx";

/// A publisher's "this version is complete" marker.
pub const READY_MARKER: &str = ".ready";

/// A version folder may carry its own component (pre/postprocessing code).
pub const COMPONENT_FILE: &str = "component.wasm";

/// How long a version folder's listing must stay unchanged before it is
/// loaded.
pub const SETTLE: Duration = Duration::from_secs(1);

/// A version folder whose files and folders all last changed at least this
/// long ago is complete at the first look. Change times (ctime), not
/// modification times: `cp -p`, `tar` and `rsync -a` set a file's mtime back
/// to the source's once it is written, but any write, rename or `utimes`
/// sets its ctime to now, so a copy in progress always has a recent one.
/// Ten times [`SETTLE`], so a network filesystem's clock running a few
/// seconds behind ours still cannot pass a copy in progress.
pub const QUIET: Duration = Duration::from_secs(10);

/// Files listed per version folder at most; a folder with more is listed
/// partially (it still settles once the listed part stops changing).
const MAX_LISTED_FILES: usize = 10_000;

/// A numbered folder found under a model's base path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDir {
    pub version: u64,
    pub path: PathBuf,
}

/// What a version folder held at one look: enough to tell whether a copy
/// into it is still going on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    /// `(relative path, size, modification time)` of every file, sorted.
    pub files: Vec<(PathBuf, u64, Option<SystemTime>)>,
    /// The newest change time (ctime) of the folder, its subfolders and files.
    pub last_change: Option<SystemTime>,
}

impl Listing {
    fn has(&self, name: &str) -> bool {
        self.files.iter().any(|(p, _, _)| p == Path::new(name))
    }

    /// Holds `model.onnx`: worth watching.
    pub fn has_model(&self) -> bool {
        self.has(MODEL_FILE)
    }

    pub fn has_ready_marker(&self) -> bool {
        self.has(READY_MARKER)
    }

    /// Nothing in the folder has changed for [`QUIET`] before `now`.
    pub fn quiet(&self, now: SystemTime) -> bool {
        self.last_change
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age >= QUIET)
    }

    /// The required files that are missing.
    pub fn missing(&self) -> Vec<&'static str> {
        REQUIRED_FILES
            .iter()
            .copied()
            .filter(|f| !self.has(f))
            .collect()
    }
}

/// Lists the numbered folders under `base`, oldest first, complete or not.
/// Names that are not a positive integer are ignored, as in TF Serving.
pub fn version_dirs(base: &Path) -> anyhow::Result<Vec<VersionDir>> {
    let entries = std::fs::read_dir(base).with_context(|| {
        format!(
            "cannot read the model base path {}; it must hold <version>/ folders such as {}/1/",
            base.display(),
            base.display()
        )
    })?;
    let mut versions = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(version) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|v| *v > 0)
        else {
            continue;
        };
        let path = entry.path();
        if path.is_dir() {
            versions.push(VersionDir { version, path });
        }
    }
    versions.sort_by_key(|v| v.version);
    Ok(versions)
}

/// Lists every file under `dir` with its size and modification time, and
/// the newest change time of everything in it.
pub fn listing(dir: &Path) -> std::io::Result<Listing> {
    let mut files = Vec::new();
    let mut last_change = change_time(&std::fs::metadata(dir)?);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(dir.join(&rel))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            last_change = last_change.max(change_time(&meta));
            let path = rel.join(entry.file_name());
            if meta.is_dir() {
                stack.push(path);
            } else if files.len() < MAX_LISTED_FILES {
                files.push((path, meta.len(), meta.modified().ok()));
            }
        }
    }
    files.sort();
    Ok(Listing { files, last_change })
}

/// A file's status-change time (ctime), which no copy tool can set.
fn change_time(meta: &std::fs::Metadata) -> Option<SystemTime> {
    use std::os::unix::fs::MetadataExt;
    let secs = u64::try_from(meta.ctime()).ok()?;
    let nanos = u32::try_from(meta.ctime_nsec()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// Lists the version folders under `base` that hold a model, oldest first:
/// what `--check-config` reports. It looks once, so it cannot tell a
/// finished copy from one in progress.
pub fn scan(base: &Path) -> anyhow::Result<Vec<VersionDir>> {
    Ok(version_dirs(base)?
        .into_iter()
        .filter(|v| v.path.join(MODEL_FILE).is_file())
        .collect())
}

/// What to tell a user whose base path holds no servable version.
pub fn no_versions(base: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "no version folder under {}: add {}/1/ with {}",
        base.display(),
        base.display(),
        REQUIRED_FILES.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_numeric_versions_with_a_model() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, with_model) in [
            ("1", true),
            ("10", true),
            ("2", false),
            ("tmp", true),
            ("0", true),
            ("3.tmp", true),
        ] {
            let v = dir.path().join(name);
            std::fs::create_dir(&v).expect("mkdir");
            let files: &[&str] = if with_model {
                &REQUIRED_FILES
            } else {
                &REQUIRED_FILES[1..]
            };
            for f in files {
                std::fs::write(v.join(f), b"x").expect("write");
            }
        }
        let all: Vec<u64> = version_dirs(dir.path())
            .expect("scan")
            .iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(all, vec![1, 2, 10]);
        let found: Vec<u64> = scan(dir.path())
            .expect("scan")
            .iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(found, vec![1, 10]);
        assert!(
            scan(&dir.path().join("nope"))
                .unwrap_err()
                .to_string()
                .contains("<version>/")
        );
    }

    #[test]
    fn a_folder_is_quiet_only_once_nothing_changed_for_quiet_even_with_old_mtimes() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("model.onnx"), b"weights").expect("write");
        // What `cp -p` or `tar` leaves: the source's modification time, an
        // hour old, on a file written just now.
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("model.onnx"))
            .and_then(|f| f.set_modified(an_hour_ago))
            .expect("set mtime");
        let written = listing(dir.path()).expect("listing");
        let now = SystemTime::now();
        assert!(!written.quiet(now), "a file just written is not quiet");
        assert!(!written.quiet(now + QUIET / 2));
        assert!(written.quiet(now + QUIET));
        // A new file changes the folder's own change time.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(dir.path().join("config.json"), b"{}").expect("write");
        let grown = listing(dir.path()).expect("listing");
        assert!(grown.last_change > written.last_change);
        assert_ne!(grown, written);
    }

    #[test]
    fn a_listing_changes_while_a_file_grows() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("assets.extra/warmup")).expect("mkdir");
        std::fs::write(dir.path().join("config.json"), b"{}").expect("write");
        std::fs::write(dir.path().join("assets.extra/warmup/a.json"), b"{}").expect("write");
        let before = listing(dir.path()).expect("listing");
        assert!(!before.has_model());
        assert_eq!(
            before.missing(),
            vec!["model.onnx", "preprocessor_config.json"]
        );
        assert_eq!(
            before.files[0].0,
            PathBuf::from("assets.extra/warmup/a.json")
        );
        std::fs::write(dir.path().join("model.onnx"), b"half").expect("write");
        let half = listing(dir.path()).expect("listing");
        assert!(half.has_model() && half != before);
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("model.onnx"))
            .expect("open");
        f.write_all(b" and the rest").expect("append");
        drop(f);
        assert_ne!(listing(dir.path()).expect("listing"), half);
        assert_eq!(
            listing(dir.path()).expect("listing"),
            listing(dir.path()).expect("listing")
        );
        std::fs::write(dir.path().join(READY_MARKER), b"").expect("write");
        assert!(listing(dir.path()).expect("listing").has_ready_marker());
    }
}
