//! Served logits against onnxruntime on the same model and tensor, for our
//! demo model and for a genuine torch export served unchanged, on both
//! inference paths: host-native through wasi:nn, and tract in the guest.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::support::*;

/// Serves `base` (a `<name>/<version>/` repository whose newest version is
/// `model_dir`) on `inference` (`host` or `guest`), checks every shared
/// image, and returns the served logits, one row per image.
fn check_parity(name: &str, base: &Path, model_dir: &Path, inference: &str) -> Vec<Vec<f32>> {
    let server = Server::start(name, base, &[&format!("--inference={inference}")]);
    // The path asked for is the path taken: no silent fallback.
    let (_, metadata) = server.get(&format!("/v1/models/{name}/metadata"));
    assert_eq!(metadata["vitrine"]["inference"], inference, "{metadata}");
    let images = shared_images();
    let instances: Vec<String> = images.iter().map(|p| urlsafe_b64(p)).collect();
    // All images in one request: also proves several instances per request.
    let (status, reply) =
        server.predict(&json!({"instances": instances, "top_k": 5, "return_logits": true}));
    assert_eq!(status, 200, "{reply}");
    let predictions = reply["predictions"].as_array().expect("predictions");
    assert_eq!(predictions.len(), images.len());

    let ours: Vec<PathBuf> = images
        .iter()
        .map(|i| vitrine_pixels(i, model_dir))
        .collect();
    let reference = Reference::compute(model_dir, &images, &ours);
    let mut rows = Vec::new();
    for ((image, pixels), p) in images.iter().zip(&ours).zip(predictions) {
        let served = floats(&p["logits"]);
        // Same model, same tensor: tract in wasm equals onnxruntime.
        let exact = reference.pixel_logits(pixels);
        let diff = max_abs_diff(&served, &exact);
        assert!(
            diff <= 1e-4,
            "{}: served logits differ from onnxruntime by {diff}",
            image.display()
        );

        // Against HF's own preprocessing: the ranking agrees wherever the
        // reference's logits are further apart than the preprocessing noise.
        let hf = reference.image_logits(image);
        let noise = max_abs_diff(&served, &hf);
        let tol = 2.0 * noise + 1e-4;
        let served_top = top_indices(&served, 5);
        let hf_top = top_indices(&hf, 5);
        for (rank, (s, h)) in served_top.iter().zip(&hf_top).enumerate() {
            assert!(
                hf[*h] - hf[*s] <= tol,
                "{}: rank {rank} served class {s} but HF's reference has {h}, {} apart (tolerance {tol})",
                image.display(),
                hf[*h] - hf[*s]
            );
        }
        // The reply's labels are the served logits' top-5, best first.
        let probs = floats(&p["confidence"]);
        let expected = softmax(&served);
        for (c, i) in probs.iter().zip(&served_top) {
            assert!((c - expected[*i]).abs() < 1e-6);
        }
        eprintln!(
            "{inference} path, {}: |served - onnxruntime| = {diff:.2e}, |served - HF pipeline| = {noise:.2e}",
            image.display()
        );
        rows.push(served);
    }
    rows
}

/// Both paths serve the same model: same top-5, logits within 1e-4.
fn check_both_paths(name: &str, base: &Path, model_dir: &Path) {
    let host = check_parity(name, base, model_dir, "host");
    let guest = check_parity(name, base, model_dir, "guest");
    assert_eq!(host.len(), guest.len());
    for (i, (h, g)) in host.iter().zip(&guest).enumerate() {
        let diff = max_abs_diff(h, g);
        assert!(
            diff <= 1e-4,
            "image {i}: host and guest logits differ by {diff}"
        );
        assert_eq!(
            top_indices(h, 5),
            top_indices(g, 5),
            "image {i}: top-5 differs"
        );
        eprintln!("image {i}: |host - guest| = {diff:.2e}");
    }
}

#[test]
fn demo_model_logits_match_onnxruntime() {
    let base = tiny_repo();
    check_both_paths("hf-vit", &base, &base.join("1"));
}

/// `../shared/models/vit-tiny-random-torch-export` is what optimum writes for
/// a real model; it must serve unchanged.
#[test]
fn real_torch_export_serves_unchanged() {
    let export = shared().join("models/vit-tiny-random-torch-export");
    let repo = tempfile::tempdir().expect("tempdir");
    let base = repo.path().join("vit-export");
    std::fs::create_dir_all(&base).expect("mkdir");
    std::os::unix::fs::symlink(&export, base.join("1")).expect("symlink the export as version 1");
    check_both_paths("vit-export", &base, &export);
}
