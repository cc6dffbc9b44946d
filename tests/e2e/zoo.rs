//! Every image classifier the project has a fixture for (`../shared/models/zoo`,
//! the shared tiny ViT export, `tests/fixtures/zoo`) served at once from one
//! `--model_config_file`, on the host and the guest path:
//!
//! - each reports its input size in REST v1 and KServe v2 metadata;
//! - for every shared image its served logits equal onnxruntime's on the
//!   pixel tensor transformers' own processor (`AutoImageProcessor`, PIL
//!   backend) makes, within 1e-4: preprocessing and inference together;
//! - models whose preprocessor config asks for what Vitrine cannot do
//!   (`do_pad`, an unknown processor type) show END with the refusal in
//!   their status, and every other model keeps serving.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// The fixtures: `(model name, version folder)`.
fn fixtures() -> Vec<(String, PathBuf)> {
    let mut out = vec![(
        "vit-tiny-export".to_string(),
        shared().join("models/vit-tiny-random-torch-export"),
    )];
    for root in [
        shared().join("models/zoo"),
        workspace_root().join("tests/fixtures/zoo"),
    ] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("list {}: {e}", root.display()))
            .map(|e| e.expect("entry").path())
            .filter(|p| p.join("model.onnx").is_file())
            .collect();
        found.sort();
        for dir in found {
            let name = dir
                .file_name()
                .and_then(|n| n.to_str())
                .expect("utf-8 name")
                .replace('_', "-");
            out.push((name, dir));
        }
    }
    out
}

/// Exports tract 0.23 cannot load (see component/tests/zoo_graphs.rs), and
/// the node their refusal names: END on the guest path, served by the
/// onnxruntime engine on the host path.
const TRACT_REFUSES: [(&str, &str); 2] = [
    ("bit", "BatchNormalization"),
    ("levit", "queries_subsample/Slice"),
];

/// Configs no processor here can honour, on a real model: `(name, edit, refusal)`.
fn refused() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "refused-pad",
            json!({"do_pad": true, "pad_size": {"height": 256, "width": 256}}),
            "do_pad",
        ),
        (
            "refused-type",
            json!({"image_processor_type": "DonutImageProcessor"}),
            "DonutImageProcessor",
        ),
    ]
}

/// A version folder beside `base` holding `source`'s files, with
/// `preprocessor_config.json` changed by `edit`.
fn edited_version(base: &Path, source: &Path, edit: &Value) -> PathBuf {
    let dir = base.join("1");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for file in ["model.onnx", "config.json"] {
        std::fs::copy(source.join(file), dir.join(file)).expect("copy");
    }
    let mut config: Value = serde_json::from_slice(
        &std::fs::read(source.join("preprocessor_config.json")).expect("read"),
    )
    .expect("json");
    for (k, v) in edit.as_object().expect("object") {
        config[k] = v.clone();
    }
    std::fs::write(dir.join("preprocessor_config.json"), config.to_string()).expect("write");
    dir
}

/// `(state, error message)` of version 1 of `model`.
fn state(server: &Server, model: &str) -> (String, String) {
    let (_, v) = server.get(&format!("/v1/models/{model}"));
    let s = &v["model_version_status"][0];
    (
        s["state"].as_str().unwrap_or_default().to_string(),
        s["status"]["error_message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// HF pixels and onnxruntime logits on them, per (model folder, image).
fn reference(
    dir: &Path,
    fixtures: &[(String, PathBuf)],
    images: &[PathBuf],
) -> (Value, Vec<Vec<PathBuf>>) {
    let mut jobs = Vec::new();
    let mut outs = Vec::new();
    for (name, folder) in fixtures {
        let mut row = Vec::new();
        for (i, image) in images.iter().enumerate() {
            let out = dir.join(format!("{name}-{i}.f32"));
            jobs.push(json!({"model": folder, "image": image, "pixels_out": out, "logits": true}));
            row.push(out);
        }
        outs.push(row);
    }
    let jobs_file = dir.join("jobs.json");
    let out_file = dir.join("reference.json");
    std::fs::write(&jobs_file, Value::Array(jobs).to_string()).expect("write jobs");
    let output = std::process::Command::new(python())
        .arg(workspace_root().join("tests/reference/hf_processor.py"))
        .arg(&jobs_file)
        .arg(&out_file)
        .output()
        .expect("run hf_processor.py");
    assert!(
        output.status.success(),
        "hf_processor.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = serde_json::from_slice(&std::fs::read(&out_file).expect("read")).expect("json");
    (json, outs)
}

fn serve_the_zoo(inference: &str) {
    if !workspace_root().join("../shared/images").is_dir() {
        eprintln!("SKIPPED: ../shared is absent; the zoo test needs its images and models");
        return;
    }
    let fixtures = fixtures();
    let images = shared_images();
    let repo = tempfile::tempdir().expect("tempdir");
    let (reference, pixel_files) = reference(repo.path(), &fixtures, &images);

    let mut config = String::from("model_config_list {\n");
    for (name, folder) in &fixtures {
        let base = repo.path().join(name);
        std::fs::create_dir_all(&base).expect("mkdir");
        std::os::unix::fs::symlink(folder, base.join("1")).expect("symlink");
        config += &format!(
            "  config {{ name: \"{name}\" base_path: \"{}\" model_platform: \"onnx\" }}\n",
            base.display()
        );
    }
    let deit = shared().join("models/zoo/deit");
    for (name, edit, _) in refused() {
        let base = repo.path().join(name);
        edited_version(&base, &deit, &edit);
        config += &format!(
            "  config {{ name: \"{name}\" base_path: \"{}\" }}\n",
            base.display()
        );
    }
    config += "}\n";
    let config_file = repo.path().join("models.config");
    std::fs::write(&config_file, &config).expect("write config");

    let mut server = Server::spawn(
        &fixtures[0].0,
        &[
            format!("--model_config_file={}", config_file.display()),
            format!("--inference={inference}"),
            "--tensorflow_inter_op_parallelism=1".into(),
        ],
    );
    server.wait_listening();
    let names: Vec<&str> = fixtures
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(refused().iter().map(|(n, _, _)| *n))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let states: Vec<(String, String)> = names.iter().map(|n| state(&server, n)).collect();
        if states.iter().all(|(s, _)| s == "AVAILABLE" || s == "END") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every model settled within 15 minutes: {:?}\n{}",
            names.iter().zip(&states).collect::<Vec<_>>(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    for (name, _, refusal) in refused() {
        let (s, error) = state(&server, name);
        assert_eq!(s, "END", "{name} should be refused: {error}");
        assert!(
            error.contains(refusal),
            "{name}: {error:?} does not name {refusal:?}"
        );
        eprintln!("{inference} path, {name}: END, {error}");
    }

    let instances: Vec<String> = images.iter().map(|p| urlsafe_b64(p)).collect();
    let mut failures = Vec::new();
    for ((name, folder), outs) in fixtures.iter().zip(&pixel_files) {
        let (s, error) = state(&server, name);
        // The host path runs these graphs on onnxruntime (support::vitrine
        // finds the .venv's library); only the guest's tract refuses them.
        let tract_refuses = TRACT_REFUSES.iter().find(|(n, _)| n == name);
        if let (Some((_, node)), "guest") = (tract_refuses, inference) {
            assert_eq!(s, "END", "{name}: tract refuses this graph, yet it is {s}");
            assert!(
                error.contains(node),
                "{name}: {error:?} does not name the node {node:?}"
            );
            eprintln!("{inference} path, {name}: END, naming the node: {error}");
            continue;
        }
        if s != "AVAILABLE" {
            failures.push(format!("{name} ({}): {s} {error}", folder.display()));
            continue;
        }
        let first = &reference[outs[0].to_str().expect("utf-8")];
        let shape: Vec<i64> = first["shape"]
            .as_array()
            .expect("reference shape")
            .iter()
            .filter_map(Value::as_i64)
            .collect();
        let (_, meta) = server.get(&format!("/v1/models/{name}/metadata"));
        assert_eq!(meta["vitrine"]["inference"], inference, "{meta}");
        assert_eq!(
            meta["vitrine"]["image_size"],
            json!(shape[1..]),
            "{name}: {meta}"
        );
        let (_, v2) = server.get(&format!("/v2/models/{name}"));
        let pixels_input = v2["inputs"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == "pixel_values"))
            .unwrap_or_else(|| panic!("{name}: no pixel_values in {v2}"));
        assert_eq!(
            pixels_input["shape"],
            json!([-1, shape[0], shape[1], shape[2]]),
            "{name}"
        );

        let (status, reply) = server.post(
            &format!("/v1/models/{name}:predict"),
            json!({"instances": instances, "return_logits": true}).to_string(),
        );
        assert_eq!(status, 200, "{name}: {reply}");
        let predictions = reply["predictions"].as_array().expect("predictions");
        let mut worst = 0.0f32;
        for ((image, out), p) in images.iter().zip(outs).zip(predictions) {
            let want = floats(&reference[out.to_str().expect("utf-8")]["logits"]);
            let diff = max_abs_diff(&floats(&p["logits"]), &want);
            worst = worst.max(diff);
            if diff > 1e-4 {
                failures.push(format!(
                    "{name} / {}: served logits differ from onnxruntime on HF's pixels by {diff:e}",
                    image.display()
                ));
            }
        }
        eprintln!(
            "{inference} path, {name:<16} {}x{}: max |served - onnxruntime(HF pixels)| = {worst:.2e}",
            shape[2], shape[1]
        );
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn zoo_serves_on_the_host_path() {
    serve_the_zoo("host");
}

#[test]
fn zoo_serves_on_the_guest_path() {
    serve_the_zoo("guest");
}
