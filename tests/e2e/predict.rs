//! The blog's request, answered end to end, and the API shapes around it.

use serde_json::{Value, json};

use crate::support::*;

/// The blog's exact client request gets the blog's reply shape, and its label
/// and confidence match onnxruntime on HF's preprocessing of the same photo.
#[test]
fn blog_request_is_answered_like_the_reference() {
    let base = tiny_repo();
    // TF Serving flags vitrine does not implement are accepted with a warning.
    let server = Server::start(
        "hf-vit",
        &base,
        &[
            "--enable_model_warmup=true",
            "--xla_cpu_compilation_enabled=false",
        ],
    );
    assert!(
        server
            .log()
            .contains("ignoring flag --xla_cpu_compilation_enabled=false")
    );

    let (status, reply) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(status, 200, "{reply}");
    let predictions = reply["predictions"].as_array().expect("predictions list");
    assert_eq!(predictions.len(), 1);
    let p = predictions[0].as_object().expect("prediction object");
    let mut keys: Vec<&str> = p.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["confidence", "label"],
        "exactly the blog's shape: {reply}"
    );
    let label = p["label"].as_str().expect("label is a string");
    let confidence = p["confidence"].as_f64().expect("confidence is a number") as f32;

    let model_dir = base.join("1");
    let reference = Reference::compute(&model_dir, &[coco_jpeg()], &[]);
    let ref_logits = reference.image_logits(&coco_jpeg());
    let ref_probs = softmax(&ref_logits);
    let best = top_indices(&ref_probs, 1)[0];
    assert!(
        (confidence - ref_probs[best]).abs() < 1e-4,
        "confidence {confidence} vs reference {}",
        ref_probs[best]
    );
    let labels = id2label(&model_dir);
    // Random weights give nearly flat probabilities: the label must be the
    // reference's, or one whose reference probability ties it within 1e-5.
    let label_index = labels
        .iter()
        .position(|l| l == label)
        .expect("a known label");
    assert!(
        ref_probs[best] - ref_probs[label_index] < 1e-5,
        "served {label:?} (p={}) but the reference's top-1 is {:?} (p={})",
        ref_probs[label_index],
        labels[best],
        ref_probs[best]
    );
}

fn id2label(model_dir: &std::path::Path) -> Vec<String> {
    let config: Value =
        serde_json::from_slice(&std::fs::read(model_dir.join("config.json")).expect("config"))
            .expect("json");
    let map = config["id2label"].as_object().expect("id2label");
    (0..map.len())
        .map(|i| map[&i.to_string()].as_str().expect("label").to_string())
        .collect()
}

/// Instances in every accepted form, several per request, top-k and the
/// columnar format, plus status and metadata.
#[test]
fn request_forms_status_and_metadata() {
    let base = tiny_repo();
    let server = Server::start("hf-vit", &base, &[]);
    let jpeg = std::fs::read(coco_jpeg()).expect("image");
    use base64::Engine as _;
    let standard = base64::engine::general_purpose::STANDARD.encode(&jpeg);
    let urlsafe = urlsafe_b64(&coco_jpeg());

    let (status, reply) = server.predict(&json!({
        "instances": [urlsafe, {"b64": standard}, {"string_input": {"b64": standard}}],
        "top_k": 3,
    }));
    assert_eq!(status, 200, "{reply}");
    let predictions = reply["predictions"].as_array().expect("list");
    assert_eq!(predictions.len(), 3);
    let first = floats(&predictions[0]["confidence"]);
    for p in predictions {
        // Rows of one batch may differ in the last bit (tract tiles rows differently).
        assert_eq!(
            p["label"], predictions[0]["label"],
            "the same image gives the same answer in any form"
        );
        let confidences = floats(&p["confidence"]);
        assert!(
            max_abs_diff(&confidences, &first) < 1e-6,
            "{confidences:?} vs {first:?}"
        );
        assert_eq!(confidences.len(), 3);
        assert!(
            confidences.windows(2).all(|w| w[0] >= w[1]),
            "best first: {confidences:?}"
        );
        assert_eq!(p["label"].as_array().map(Vec::len), Some(3));
    }

    let (status, reply) = server.predict(&json!({"inputs": {"string_input": [urlsafe]}}));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["outputs"]["label"][0], predictions[0]["label"][0]);

    let (status, reply) = server.get("/v1/models/hf-vit");
    assert_eq!(status, 200);
    assert_eq!(
        reply,
        json!({"model_version_status": [{"version": "1", "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]})
    );
    let (status, reply) = server.get("/v1/models/hf-vit/versions/1");
    assert_eq!(
        (status, &reply["model_version_status"][0]["state"]),
        (200, &json!("AVAILABLE"))
    );

    let (status, meta) = server.get("/v1/models/hf-vit/metadata");
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["model_spec"]["name"], "hf-vit");
    assert_eq!(meta["model_spec"]["version"], "1");
    let sig = &meta["metadata"]["signature_def"]["signature_def"]["serving_default"];
    assert_eq!(sig["inputs"]["string_input"]["dtype"], "DT_STRING");
    assert_eq!(sig["outputs"]["confidence"]["dtype"], "DT_FLOAT");
    assert_eq!(
        meta["vitrine"]["random_weights"], true,
        "the demo model says its weights are random"
    );
    assert!(
        server.log().contains("RANDOM"),
        "the logs say the weights are random"
    );

    let (status, _) = server.get("/readyz");
    assert_eq!(status, 200);
}

/// With no model repository at all, `vitrine serve` writes and serves the
/// full-size ViT-B/16 demo model, as the README's first command does.
#[test]
fn serves_the_base_demo_model_without_a_repository() {
    precompile();
    let cache = cache_dir();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port()
    };
    let mut child = vitrine()
        .env("VITRINE_CACHE_DIR", &cache)
        .args([
            "serve",
            "--rest_api_host=127.0.0.1",
            "--port=0",
            "--tensorflow_inter_op_parallelism=1",
        ])
        .arg(format!("--rest_api_port={port}"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(900);
    let reply = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "demo model not served in time"
        );
        assert!(matches!(child.try_wait(), Ok(None)), "vitrine exited");
        if let Ok(r) = client()
            .post(format!("{url}/v1/models/hf-vit:predict"))
            .json(&blog_request(&coco_jpeg()))
            .send()
            && r.status() == 200
        {
            break r.json::<Value>().expect("json");
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(reply["predictions"][0]["label"].is_string(), "{reply}");
    let demo = cache.join("demo-vit-base/hf-vit/1");
    let config: Value =
        serde_json::from_slice(&std::fs::read(demo.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["hidden_size"], 768);
    assert_eq!(config["num_hidden_layers"], 12);
    assert_eq!(config["id2label"]["285"], "Egyptian cat");
    assert_eq!(config["vitrine"]["random_weights"], true);
}
