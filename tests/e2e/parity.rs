//! Served logits against onnxruntime on the same model and tensor, for our
//! demo model and for a genuine torch export served unchanged, on every
//! path: the host's onnxruntime engine (direct and batched) and tract
//! engine through wasi:nn, and tract in the guest.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::support::*;

/// One way of serving a model, and how close to Python's onnxruntime on the
/// same pixel tensor it must be.
struct Serving {
    flags: &'static [&'static str],
    inference: &'static str,
    engine: &'static str,
    tolerance: f32,
    /// Whether overlapping requests run side by side on onnxruntime's
    /// single-threaded session (`--onnxruntime_lanes`, on without batching).
    lanes: bool,
}

const ORT: Serving = Serving {
    flags: &["--inference=host", "--native_engine=onnxruntime"],
    inference: "host",
    engine: "onnxruntime",
    tolerance: 1e-5,
    lanes: true,
};
const ORT_BATCHED: Serving = Serving {
    flags: &[
        "--inference=host",
        "--native_engine=onnxruntime",
        "--enable_batching",
    ],
    inference: "host",
    engine: "onnxruntime",
    tolerance: 1e-5,
    lanes: false,
};
const TRACT: Serving = Serving {
    flags: &["--inference=host", "--native_engine=tract"],
    inference: "host",
    engine: "tract",
    tolerance: 1e-4,
    lanes: false,
};
const GUEST: Serving = Serving {
    flags: &["--inference=guest"],
    inference: "guest",
    engine: "tract",
    tolerance: 1e-4,
    lanes: false,
};

/// Serves `base` (a `<name>/<version>/` repository whose newest version is
/// `model_dir`) on `path`, checks every shared image, and returns the served
/// logits, one row per image.
fn check_parity(name: &str, base: &Path, model_dir: &Path, serving: &Serving) -> Vec<Vec<f32>> {
    let server = Server::start(name, base, serving.flags);
    let (inference, engine) = (serving.inference, serving.engine);
    // The path and engine asked for are the ones taken: no silent fallback.
    let (_, metadata) = server.get(&format!("/v1/models/{name}/metadata"));
    assert_eq!(metadata["vitrine"]["inference"], inference, "{metadata}");
    assert_eq!(metadata["vitrine"]["engine"], engine, "{metadata}");
    if inference == "host" {
        let (_, stats) = server.get("/vitrine/stats");
        assert_eq!(stats["models"][name][0]["engine"], engine, "{stats}");
    }
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
        // Same model, same tensor: every engine equals onnxruntime.
        let exact = reference.pixel_logits(pixels);
        let diff = max_abs_diff(&served, &exact);
        assert!(
            diff <= serving.tolerance,
            "{inference} path on {engine} ({:?}), {}: served logits differ from Python's onnxruntime by {diff}",
            serving.flags,
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
            "{inference} path on {engine} ({:?}), {}: |served - onnxruntime| = {diff:.2e}, |served - HF pipeline| = {noise:.2e}",
            serving.flags,
            image.display()
        );
        rows.push(served);
    }
    check_side_by_side(&server, serving, &instances, &rows);
    rows
}

/// Each image in its own request, many at once: replies equal the lone
/// requests' logits, and on onnxruntime with lanes some of those runs went
/// side by side (rounds repeat until one overlaps; a tiny model's runs are
/// short), while without lanes none does.
fn check_side_by_side(server: &Server, serving: &Serving, instances: &[String], rows: &[Vec<f32>]) {
    if serving.inference != "host" {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let side_by_side = || {
        let (_, stats) = server.get("/vitrine/stats");
        stats["models"][&server.model][0]["runs"]["side_by_side"].as_u64()
    };
    for round in 1..=20 {
        let replies: Vec<_> = (0..8)
            .map(|i| {
                let body =
                    json!({"instances": [instances[i % instances.len()]], "return_logits": true});
                (i % instances.len(), predict_concurrently(server, &body, 1))
            })
            .collect();
        for (image, handles) in replies {
            for handle in handles {
                let posted = handle.join().expect("client thread").expect("reply");
                assert_eq!(posted.status, 200, "{}", posted.body);
                let served = floats(&posted.body["predictions"][0]["logits"]);
                let diff = max_abs_diff(&served, &rows[image]);
                assert!(
                    diff <= serving.tolerance,
                    "{:?}: image {image} alone and among concurrent requests differs by {diff}",
                    serving.flags
                );
            }
        }
        if !serving.lanes || side_by_side().unwrap_or(0) > 0 {
            eprintln!(
                "{:?}: {round} rounds of 8 concurrent requests",
                serving.flags
            );
            break;
        }
    }
    match (serving.lanes, cores > 1) {
        (true, true) => assert!(
            side_by_side().unwrap_or(0) > 0,
            "{:?}: 20 rounds of 8 concurrent requests never ran side by side",
            serving.flags
        ),
        (true, false) => eprintln!("SKIPPED: side-by-side runs need more than one core"),
        (false, _) => assert_eq!(side_by_side(), None, "{:?} has no lanes", serving.flags),
    }
}

/// Logits of two paths within `tolerance` of each other, with the same top-5.
fn check_agree(what: &str, a: &[Vec<f32>], b: &[Vec<f32>], tolerance: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let diff = max_abs_diff(x, y);
        assert!(diff <= tolerance, "image {i}: {what} differ by {diff}");
        assert_eq!(
            top_indices(x, 5),
            top_indices(y, 5),
            "image {i}: {what}: top-5 differs"
        );
        eprintln!("image {i}: |{what}| = {diff:.2e}");
    }
}

/// Every path serves the same model: onnxruntime direct and batched within
/// 1e-5 of each other, and of tract (host and guest) within 1e-4.
fn check_all_paths(name: &str, base: &Path, model_dir: &Path) {
    let ort = check_parity(name, base, model_dir, &ORT);
    let batched = check_parity(name, base, model_dir, &ORT_BATCHED);
    let tract = check_parity(name, base, model_dir, &TRACT);
    let guest = check_parity(name, base, model_dir, &GUEST);
    check_agree("onnxruntime direct - batched", &ort, &batched, 1e-5);
    check_agree("onnxruntime - tract engine", &ort, &tract, 1e-4);
    check_agree("host tract - guest tract", &tract, &guest, 1e-4);
}

#[test]
fn demo_model_logits_match_onnxruntime() {
    let base = tiny_repo();
    check_all_paths("hf-vit", &base, &base.join("1"));
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
    check_all_paths("vit-export", &base, &export);
}
