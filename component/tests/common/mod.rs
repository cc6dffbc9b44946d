//! What the parity tests share: where the workspace, `../shared` and the
//! reference Python are, a scratch folder, and reading a reference tensor.

// Each test binary uses only some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// This package's folder: as cargo says when it runs the test, else as it
/// said at build time. A build cache shared between checkouts may hold a
/// test binary compiled in another checkout.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .into()
}

pub fn workspace_root() -> PathBuf {
    manifest_dir().join("..")
}

pub fn shared_dir() -> PathBuf {
    workspace_root().join("../shared")
}

pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("VITRINE_PYTHON") {
        let python = PathBuf::from(python);
        // A bare name such as `python3` is looked up on PATH when run.
        assert!(
            python.components().count() == 1 || python.exists(),
            "VITRINE_PYTHON={} does not exist; unset it, or run ./test.sh (see README.md), \
             which sets up .venv",
            python.display()
        );
        return python;
    }
    let venv = workspace_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with transformers: {} is missing and VITRINE_PYTHON is unset; \
         run ./test.sh (see README.md), which sets up .venv",
        venv.display()
    );
    venv
}

/// A scratch directory removed when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vitrine-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch directory");
        Self(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The little-endian f32s of a tensor the reference wrote.
pub fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("read reference tensor");
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
