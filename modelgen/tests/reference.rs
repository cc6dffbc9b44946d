//! Parity with a numpy implementation of HF's ViTForImageClassification forward pass
//! (tests/reference/vit_forward.py), run through onnxruntime.

use std::path::PathBuf;
use std::process::Command;

use vitrine_modelgen::{VitConfig, write_model};

fn workspace_root() -> PathBuf {
    manifest_dir().join("..")
}

/// `$VITRINE_PYTHON`, else the workspace's `.venv`.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("VITRINE_PYTHON") {
        return python.into();
    }
    let venv = workspace_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python for the reference tests: set VITRINE_PYTHON, or create {} as the README's \
         test command does (python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt)",
        venv.display()
    );
    venv
}

#[test]
fn onnxruntime_on_our_graph_matches_numpy_hf_forward() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &VitConfig::tiny(), 11, &mut |_| {}).unwrap();

    let mut dirs = vec![dir.path().to_path_buf()];
    // A genuine torch export validates the numpy reference itself.
    let fixture = workspace_root().join("../shared/models/vit-tiny-random-torch-export");
    if fixture.join("model.onnx").exists() {
        dirs.push(fixture);
    } else {
        eprintln!(
            "note: {} absent; checking our model only",
            fixture.display()
        );
    }

    let script = workspace_root().join("tests/reference/vit_forward.py");
    let python = python();
    let output = Command::new(&python)
        .arg(&script)
        .args(&dirs)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "reference check failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(stdout.matches("ok   ").count(), 2 * dirs.len(), "{stdout}");
}

/// This package's folder: as cargo says when it runs the test, else as it
/// said at build time. A build cache shared between checkouts may hold a
/// test binary compiled in another checkout.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .into()
}
