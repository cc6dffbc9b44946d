//! Pre-initialization (`vitrine preinit`, wasmtime-wizer): the component Spin
//! runs, snapshotted with the model loaded, serves from a fresh instance per
//! request (Spin's model, emulated by `--max_requests_per_instance=1`) with
//! the right logits and without reading the model's files.

use std::path::Path;

use serde_json::json;

use crate::support::*;

fn copy_version(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("create version folder");
    for entry in std::fs::read_dir(src).expect("read version folder") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dst.join(entry.file_name())).expect("copy model file");
    }
}

/// Served logits for the blog's image, one request.
fn logits(server: &Server) -> (u16, serde_json::Value) {
    server.predict(&json!({
        "instances": [urlsafe_b64(&coco_jpeg())],
        "return_logits": true
    }))
}

#[test]
fn a_preinitialized_component_serves_fresh_instances_without_reading_the_model() {
    let plain = spin_component();
    let repo_dir = fresh_dir("preinit");
    let repo = repo_dir.path();
    copy_version(&tiny_version(0), &repo.join("1"));
    let out_dir = fresh_dir("preinit-out");
    let snapshot = out_dir.path().join("vitrine-m-1.wasm");
    let preinit = vitrine()
        .args(["preinit", "--model_name", "m", "--model"])
        .arg(repo.join("1"))
        .arg("--component")
        .arg(&plain)
        .arg("--out")
        .arg(&snapshot)
        .output()
        .expect("run vitrine preinit");
    let said = String::from_utf8_lossy(&preinit.stderr);
    assert!(preinit.status.success(), "vitrine preinit failed: {said}");
    // Below half, wasmtime's default configuration copies the whole image
    // into every instance instead of mapping it (Spin: hundreds of MB per
    // concurrent request for ViT-B/16).
    let density: u64 = said
        .split_once("the snapshot's memory: ")
        .and_then(|(_, line)| line.split_once(" ("))
        .and_then(|(_, rest)| rest.split_once('%'))
        .and_then(|(percent, _)| percent.parse().ok())
        .unwrap_or_else(|| panic!("no memory figures in preinit's output: {said}"));
    assert!(
        density >= 50,
        "the snapshot's data is {density}% of its span; wasmtime wants 50%: {said}"
    );
    let (plain_len, snapshot_len) = (
        std::fs::metadata(&plain).expect("component").len(),
        std::fs::metadata(&snapshot).expect("snapshot").len(),
    );
    eprintln!(
        "pre-initialized component: {} MB (plain build {} MB, tiny model), its memory {density}% data",
        snapshot_len >> 20,
        plain_len >> 20
    );

    // What the model computes: the onnxruntime reference on our own pixels.
    let pixels = vitrine_pixels(&coco_jpeg(), &repo.join("1"));
    let reference = Reference::compute(
        &repo.join("1"),
        &[coco_jpeg()],
        std::slice::from_ref(&pixels),
    );
    let expected = reference.pixel_logits(&pixels);

    let flags = [
        "--max_requests_per_instance=1",
        "--tensorflow_inter_op_parallelism=1",
    ];
    let snapshot_arg = format!("--component={}", snapshot.display());
    let mut args = vec![snapshot_arg.as_str()];
    args.extend(flags);
    // Default flags otherwise (the host path): the host sees the component
    // cannot borrow its graph and leaves the model to the guest.
    let server = Server::start("m", repo, &args);
    let (_, metadata) = server.get("/v1/models/m/metadata");
    assert_eq!(metadata["vitrine"]["preinitialized"], true, "{metadata}");
    assert_eq!(metadata["vitrine"]["inference"], "guest", "{metadata}");
    // The warm-up inference ran in `vitrine preinit`; the server only loads.
    assert!(
        server
            .log()
            .contains("ran the warm-up inference when it was built"),
        "{}",
        server.log()
    );

    let plain_arg = format!("--component={}", plain.display());
    let mut args = vec![plain_arg.as_str()];
    args.extend(flags);
    let control = Server::start("m", repo, &args);
    assert!(!control.log().contains("when it was built"));

    // From here on the model's files hold garbage: any instance that reads
    // them fails to load.
    for file in ["model.onnx", "config.json", "preprocessor_config.json"] {
        std::fs::write(repo.join("1").join(file), b"not a model").expect("overwrite");
    }
    for round in 0..3 {
        let (status, reply) = logits(&server);
        assert_eq!(status, 200, "request {round}: {reply}");
        let served = floats(&reply["predictions"][0]["logits"]);
        let diff = max_abs_diff(&served, &expected);
        assert!(
            diff <= 1e-4,
            "request {round}: logits differ from onnxruntime by {diff}"
        );
    }

    // The control proves each request got a fresh instance: the plain build
    // loads the model per instance, so once its one warm instance is spent,
    // requests fail on the garbage files.
    let statuses: Vec<(u16, serde_json::Value)> = (0..3).map(|_| logits(&control)).collect();
    for (status, reply) in &statuses[1..] {
        assert_eq!(*status, 503, "{statuses:?}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(error.contains("failed to load"), "{error}");
    }
}

#[test]
fn preinit_explains_a_folder_that_is_not_a_model() {
    let dir = fresh_dir("preinit-empty");
    let output = vitrine()
        .args(["preinit", "--model"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("out.wasm"))
        .output()
        .expect("run vitrine preinit");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("model.onnx is missing") && stderr.contains("optimum-cli export onnx"),
        "{stderr}"
    );
    assert!(!dir.path().join("out.wasm").exists());
}
