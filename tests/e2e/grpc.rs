//! TF Serving's gRPC API, spoken by a Python `grpcio` client whose stubs
//! grpcio-tools generates from our .proto files at test time.

use serde_json::Value;

use crate::support::*;

fn code(result: &Value, case: &str) -> (String, String) {
    let pair = &result["errors"][case];
    (
        pair[0].as_str().unwrap_or_default().to_string(),
        pair[1].as_str().unwrap_or_default().to_string(),
    )
}

/// Predict, Classify, GetModelMetadata, GetModelStatus and Health answer a
/// real client; Predict gives REST v1's answer for the same image; bad
/// requests get the canonical status codes and the server keeps serving.
#[test]
fn grpc_client_predicts_like_rest_and_gets_canonical_errors() {
    let base = tiny_repo();
    let server = Server::start_with_grpc("hf-vit", &base, &["--grpc_max_message_bytes=3000000"]);
    let pixels = vitrine_pixels(&coco_jpeg(), &base.join("1"));
    let result = run_client(
        "grpc_client.py",
        &[
            "basic".into(),
            "--addr".into(),
            server.grpc_addr(),
            "--image".into(),
            coco_jpeg().display().to_string(),
            "--pixels".into(),
            pixels.display().to_string(),
            "--too-large".into(),
            "4000000".into(),
        ],
    );

    assert_eq!(result["health"][""], "SERVING", "{result}");
    assert_eq!(
        result["health"]["tensorflow.serving.PredictionService"],
        "SERVING"
    );

    // Predict answers REST v1's label and confidence for the same photo.
    let (status, rest) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(status, 200, "{rest}");
    let rest = &rest["predictions"][0];
    let outputs = &result["predict"]["outputs"];
    assert_eq!(outputs["label"]["dtype"], "DT_STRING", "{result}");
    assert_eq!(outputs["label"]["shape"], serde_json::json!([1]));
    assert_eq!(outputs["label"]["values"][0], rest["label"], "{result}");
    assert_eq!(outputs["confidence"]["dtype"], "DT_FLOAT");
    let grpc_confidence = floats(&outputs["confidence"]["values"])[0];
    let rest_confidence = rest["confidence"].as_f64().expect("number") as f32;
    assert!(
        (grpc_confidence - rest_confidence).abs() < 1e-6,
        "gRPC {grpc_confidence} vs REST {rest_confidence}"
    );
    assert_eq!(result["predict"]["model_spec"]["name"], "hf-vit");
    assert_eq!(result["predict"]["model_spec"]["version"], 1);
    assert_eq!(
        result["predict"]["model_spec"]["signature_name"],
        "serving_default"
    );

    // A batch of two with an output filter: labels and full probabilities.
    let batch = &result["predict_batch"];
    assert_eq!(batch["label"]["values"][1], rest["label"], "{result}");
    assert!(batch.get("confidence").is_none(), "filtered out: {batch}");
    assert_eq!(
        batch["probabilities"]["shape"],
        serde_json::json!([2, 1000])
    );
    let probs = floats(&batch["probabilities"]["values"]);
    assert!((probs[..1000].iter().sum::<f32>() - 1.0).abs() < 1e-3);

    // Preprocessed pixels give the same answer as the image.
    let by_pixels = &result["predict_pixels"];
    assert_eq!(by_pixels["label"]["values"][0], rest["label"], "{result}");
    assert!((floats(&by_pixels["confidence"]["values"])[0] - rest_confidence).abs() < 1e-5);

    assert_eq!(
        result["status"],
        serde_json::json!([{"version": 1, "state": "AVAILABLE", "error_code": 0, "error_message": ""}])
    );

    assert_eq!(
        result["metadata_type_url"],
        "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    );
    let meta = &result["metadata"];
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["method_name"], "tensorflow/serving/predict");
    assert_eq!(meta["inputs"]["string_input"], "DT_STRING");
    assert_eq!(meta["outputs"]["label"], "DT_STRING");
    assert_eq!(meta["outputs"]["confidence"], "DT_FLOAT");

    // Classify: top 5 classes per example, best first, the top one REST's.
    let classes = result["classify"].as_array().expect("classifications");
    assert_eq!(classes.len(), 2);
    let first = classes[0].as_array().expect("classes");
    assert_eq!(first.len(), 5);
    assert_eq!(first[0][0], rest["label"], "{result}");
    assert!((first[0][1].as_f64().expect("score") as f32 - rest_confidence).abs() < 1e-5);

    for (case, want, text) in [
        ("not an image", "INVALID_ARGUMENT", "string_input element 0"),
        (
            "truncated image",
            "INVALID_ARGUMENT",
            "string_input element 0",
        ),
        (
            "wrong input name",
            "INVALID_ARGUMENT",
            "alias not found in signature: images",
        ),
        ("wrong dtype", "INVALID_ARGUMENT", "must be DT_STRING"),
        (
            "wrong signature",
            "INVALID_ARGUMENT",
            "not found in signature def",
        ),
        ("unknown output", "INVALID_ARGUMENT", "logits"),
        ("unknown model", "NOT_FOUND", "Latest(resnet)"),
        ("unknown version", "NOT_FOUND", "Specific(hf-vit, 7)"),
        ("unknown label", "NOT_FOUND", "no version label \"stable\""),
        ("status of unknown model", "NOT_FOUND", "resnet"),
        (
            "metadata without field",
            "INVALID_ARGUMENT",
            "metadata_field",
        ),
        (
            "too large",
            "RESOURCE_EXHAUSTED",
            "--grpc_max_message_bytes",
        ),
        // An empty ReloadConfigRequest: the lifecycle manager needs a list.
        ("reload config", "INVALID_ARGUMENT", "model_config_list"),
    ] {
        let (got, details) = code(&result, case);
        assert_eq!(got, want, "{case}: {details}");
        assert!(details.contains(text), "{case}: {details:?} lacks {text:?}");
    }
    assert_eq!(result["predict_after"], result["predict"]["outputs"]);
}

/// TF Serving's official Python stubs (tensorflow-serving-api, installed
/// without TensorFlow by test.sh) get the same answers as our own stubs:
/// package names, field numbers and method paths match TF Serving's.
#[test]
fn official_tensorflow_serving_api_stubs_interoperate() {
    let base = tiny_repo();
    let server = Server::start_with_grpc("hf-vit", &base, &[]);
    let result = run_client(
        "official_client.py",
        &[
            "--addr".into(),
            server.grpc_addr(),
            "--image".into(),
            coco_jpeg().display().to_string(),
        ],
    );
    assert!(
        result["official_package"]
            .as_str()
            .unwrap_or_default()
            .contains("site-packages"),
        "{result}"
    );
    let (status, rest) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(status, 200, "{rest}");
    let outputs = &result["predict"]["outputs"];
    assert_eq!(
        outputs["label"]["values"][0], rest["predictions"][0]["label"],
        "{result}"
    );
    assert_eq!(result["predict"]["model_spec"]["version"], 1);
    assert_eq!(result["status"][0]["state"], "AVAILABLE");
    assert_eq!(result["metadata"]["inputs"]["string_input"], "DT_STRING");
    assert_eq!(result["classify"][0][0][0], rest["predictions"][0]["label"]);
    assert_eq!(code(&result, "unknown label").0, "NOT_FOUND");
    assert_eq!(code(&result, "not an image").0, "INVALID_ARGUMENT");
    // Declared by TF Serving, not by a ViT classifier.
    assert_eq!(result["regress"][0], "UNIMPLEMENTED");
}

/// A full queue is RESOURCE_EXHAUSTED, not a hang or a generic error.
#[test]
fn grpc_overload_is_resource_exhausted() {
    let base = tiny_repo();
    let server = Server::start_with_grpc(
        "hf-vit",
        &base,
        &[
            "--tensorflow_inter_op_parallelism=1",
            "--max_queued_requests=0",
        ],
    );
    let result = grpc_predicts(&server, 6);
    let codes = grpc_codes(&result);
    assert!(codes.contains(&"OK"), "{result}");
    assert!(codes.contains(&"RESOURCE_EXHAUSTED"), "{result}");
    assert!(
        codes
            .iter()
            .all(|c| *c == "OK" || *c == "RESOURCE_EXHAUSTED"),
        "{result}"
    );
}

/// A request past --rest_api_timeout_in_ms is DEADLINE_EXCEEDED.
#[test]
fn grpc_past_the_deadline_is_deadline_exceeded() {
    let base = tiny_repo();
    let server = Server::start_with_grpc("hf-vit", &base, &["--rest_api_timeout_in_ms=1"]);
    let result = grpc_predicts(&server, 1);
    assert_eq!(result["codes"][0][0], "DEADLINE_EXCEEDED", "{result}");
    assert!(
        result["codes"][0][1]
            .as_str()
            .unwrap_or_default()
            .contains("--rest_api_timeout_in_ms"),
        "{result}"
    );
}

/// With no version able to serve, Predict is UNAVAILABLE and health says
/// NOT_SERVING; the status says why.
#[test]
fn grpc_without_an_available_version_is_unavailable() {
    let base = broken_repo();
    let mut server = Server::spawn_with_grpc("hf-vit", &model_args("hf-vit", &base, &[]));
    // Wait for the load to fail.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        assert!(server.alive(), "{}", server.log());
        // Connections are refused until the server listens.
        let state = client()
            .get(server.url("/v1/models/hf-vit"))
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .map(|v| v["model_version_status"][0]["state"].clone());
        if state == Some(Value::from("END")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let result = run_client(
        "grpc_client.py",
        &["unavailable".into(), "--addr".into(), server.grpc_addr()],
    );
    assert_eq!(result["predict"][0], "UNAVAILABLE", "{result}");
    assert!(
        result["predict"][1]
            .as_str()
            .unwrap_or_default()
            .contains("failed to load"),
        "{result}"
    );
    assert_eq!(result["health"], "NOT_SERVING");
    assert_eq!(result["status"][0]["state"], "END");
}

/// A repository whose only version has a model.onnx that is not ONNX.
fn broken_repo() -> std::path::PathBuf {
    let good = tiny_repo().join("1");
    let dir = tempfile::tempdir().expect("tempdir").keep().join("hf-vit");
    let version = dir.join("1");
    std::fs::create_dir_all(&version).expect("mkdir");
    for file in ["config.json", "preprocessor_config.json"] {
        std::fs::copy(good.join(file), version.join(file)).expect("copy");
    }
    std::fs::write(version.join("model.onnx"), b"not an onnx file").expect("write");
    dir
}
