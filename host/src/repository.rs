//! The model repository: `<base>/<version>/` folders in optimum's layout.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Files a version folder must hold before it is served.
pub const REQUIRED_FILES: [&str; 3] = ["model.onnx", "config.json", "preprocessor_config.json"];

/// A version folder found under a model's base path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDir {
    pub version: u64,
    pub path: PathBuf,
}

/// Lists the complete version folders under `base`, oldest first. Folders
/// whose name is not a positive integer are ignored, as in TF Serving.
pub fn scan(base: &Path) -> anyhow::Result<Vec<VersionDir>> {
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
        if !path.is_dir() {
            continue;
        }
        let missing: Vec<&str> = REQUIRED_FILES
            .iter()
            .copied()
            .filter(|f| !path.join(f).is_file())
            .collect();
        if missing.is_empty() {
            versions.push(VersionDir { version, path });
        } else {
            tracing::warn!(
                "skipping {}: missing {}",
                path.display(),
                missing.join(", ")
            );
        }
    }
    versions.sort_by_key(|v| v.version);
    Ok(versions)
}

/// What to tell a user whose base path holds no servable version.
pub fn no_versions(base: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "no complete version folder under {}: add {}/1/ with {}",
        base.display(),
        base.display(),
        REQUIRED_FILES.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_complete_numeric_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, complete) in [
            ("1", true),
            ("10", true),
            ("2", false),
            ("tmp", true),
            ("0", true),
        ] {
            let v = dir.path().join(name);
            std::fs::create_dir(&v).expect("mkdir");
            let files: &[&str] = if complete {
                &REQUIRED_FILES
            } else {
                &REQUIRED_FILES[1..]
            };
            for f in files {
                std::fs::write(v.join(f), b"x").expect("write");
            }
        }
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
}
