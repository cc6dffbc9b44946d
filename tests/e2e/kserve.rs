//! KServe's v2 inference protocol on the REST port, spoken by the official
//! `tritonclient[http]` package and by hand.

use serde_json::{Value, json};

use crate::support::*;

#[test]
fn tritonclient_infers_like_rest_v1() {
    let base = tiny_repo();
    let server = Server::start("hf-vit", &base, &[]);
    let pixels = vitrine_pixels(&coco_jpeg(), &base.join("1"));
    let result = run_client(
        "triton_client.py",
        &[
            "--url".into(),
            format!("127.0.0.1:{}", server.port),
            "--image".into(),
            coco_jpeg().display().to_string(),
            "--pixels".into(),
            pixels.display().to_string(),
        ],
    );
    let (status, rest) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(status, 200, "{rest}");
    let label = &rest["predictions"][0]["label"];
    let confidence = rest["predictions"][0]["confidence"]
        .as_f64()
        .expect("number") as f32;

    for probe in ["live", "ready", "model_ready", "version_ready"] {
        assert_eq!(result[probe], true, "{probe}: {result}");
    }
    assert_eq!(result["unknown_model_ready"], false);
    assert_eq!(result["server_metadata"]["name"], "vitrine");
    assert!(
        result["server_metadata"]["extensions"]
            .as_array()
            .expect("extensions")
            .contains(&json!("binary_tensor_data"))
    );
    let meta = &result["model_metadata"];
    assert_eq!(meta["name"], "hf-vit");
    assert_eq!(meta["versions"], json!(["1"]));
    assert_eq!(meta["inputs"][0]["datatype"], "BYTES");
    assert_eq!(meta["inputs"][1]["name"], "pixel_values");

    // Binary images: the same top-1 as REST v1, for each image of the batch.
    let binary = &result["binary"];
    assert_eq!(binary["label"]["values"], json!([label, label]), "{result}");
    for c in floats(&binary["confidence"]["values"]) {
        assert!((c - confidence).abs() < 1e-6, "{c} vs {confidence}");
    }
    assert_eq!(binary["probabilities"]["shape"], json!([2, 1000]));
    let probs = floats(&binary["probabilities"]["values"]);
    let top = top_indices(&probs[..1000], 1)[0];
    assert!((probs[top] - confidence).abs() < 1e-6);
    assert_eq!(result["binary_response"]["id"], "42");
    assert_eq!(result["binary_response"]["model_version"], "1");

    for case in ["json", "pixels_binary", "pixels_json"] {
        assert_eq!(
            result[case]["label"]["values"],
            json!([label]),
            "{case}: {result}"
        );
        let c = floats(&result[case]["confidence"]["values"])[0];
        assert!((c - confidence).abs() < 1e-5, "{case}: {c} vs {confidence}");
    }

    let classes = &result["classification"]["probabilities"];
    assert_eq!(classes["shape"], json!([1, 3]));
    let best = classes["values"][0].as_str().expect("class string");
    let parts: Vec<&str> = best.splitn(3, ':').collect();
    assert_eq!(parts[1], top.to_string(), "{best}");
    assert_eq!(json!(parts[2]), *label, "{best}");

    for (case, status, text) in [
        ("not an image", "400", "string_input element 0"),
        ("wrong pixel shape", "400", "must be shaped [N, 3,"),
        ("unknown model", "404", "Latest(resnet)"),
        ("unknown version", "404", "Specific(hf-vit, 7)"),
        ("unknown output", "400", "unknown output \"logits\""),
    ] {
        let e = &result["errors"][case];
        assert_eq!(e["status"], status, "{case}: {e}");
        assert!(
            e["message"].as_str().unwrap_or_default().contains(text),
            "{case}: {e} lacks {text:?}"
        );
    }
}

/// The v2 endpoints by hand: errors are `{"error": ...}` with the right
/// status, and the host answers health before any model is asked.
#[test]
fn v2_endpoints_and_errors() {
    let base = tiny_repo();
    let server = Server::start("hf-vit", &base, &[]);
    let (status, live) = server.get("/v2/health/live");
    assert_eq!((status, &live), (200, &json!({"live": true})));
    let (status, ready) = server.get("/v2/health/ready");
    assert_eq!((status, &ready), (200, &json!({"ready": true})));
    let (status, ready) = server.get("/v2/models/hf-vit/versions/1/ready");
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["ready"], true);

    let infer = "/v2/models/hf-vit/infer";
    let image = urlsafe_b64(&coco_jpeg());
    let cases: Vec<(&str, String, String, u16, &str)> = vec![
        ("not JSON", infer.into(), "{".into(), 400, "not valid JSON"),
        (
            "no inputs",
            infer.into(),
            json!({"outputs": []}).to_string(),
            400,
            "\"inputs\"",
        ),
        (
            "bad base64",
            infer.into(),
            json!({"inputs": [{"name": "string_input", "datatype": "BYTES", "shape": [1], "data": ["!!"]}]})
                .to_string(),
            400,
            "not valid base64",
        ),
        (
            "label path",
            "/v2/models/hf-vit/versions/x/infer".into(),
            "{}".into(),
            400,
            "positive integer",
        ),
        (
            "unknown model",
            "/v2/models/resnet/infer".into(),
            json!({"inputs": [{"name": "string_input", "datatype": "BYTES", "shape": [1], "data": [image]}]})
                .to_string(),
            404,
            "Latest(resnet)",
        ),
        (
            "no such endpoint",
            "/v2/repository/index".into(),
            "{}".into(),
            404,
            "no such endpoint",
        ),
    ];
    for (what, path, body, want_status, want_text) in cases {
        let (status, reply) = server.post(&path, body);
        assert_eq!(status, want_status, "{what}: {reply}");
        let message = reply["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no \"error\" in {reply}"));
        assert!(message.contains(want_text), "{what}: {message:?}");
    }
    let resp = client()
        .post(server.url(infer))
        .header("inference-header-content-length", "twelve")
        .body("{}")
        .send()
        .expect("request");
    assert_eq!(resp.status().as_u16(), 400);
    let reply: Value = resp.json().expect("JSON error");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("inference-header-content-length"),
        "{reply}"
    );
    let (status, reply) = server.get(infer);
    assert_eq!(status, 405, "{reply}");
    let (status, reply) = server.get("/v2/models/resnet");
    assert_eq!(status, 404, "{reply}");
    let (status, reply): (u16, Value) = server.post(
        infer,
        json!({"inputs": [{"name": "string_input", "datatype": "BYTES", "shape": [1], "data": [image]}]})
            .to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["outputs"][0]["name"], "label");
    assert_eq!(reply["outputs"][1]["datatype"], "FP32");
}

/// The component answers v2 by itself, as it does under Spin or `wasmtime
/// serve`: the same code, compiled natively, with no host in front.
#[test]
fn the_component_answers_v2_without_the_host() {
    use vitrine_component::kserve::{HEADER_LENGTH, push_bytes};
    use vitrine_component::service::{Service, ServiceConfig};
    let base = tiny_repo();
    let service = Service::new(ServiceConfig {
        model_name: "hf-vit".into(),
        version: 1,
        model_dir: base.join("1"),
        request_limits: Default::default(),
        decode_limits: Default::default(),
    });
    let ready = service.respond("GET", "/v2/health/ready", None, b"");
    assert_eq!(ready.status, 200);
    let metadata = service.respond("GET", "/v2/models/hf-vit/versions/1", None, b"");
    assert_eq!(metadata.status, 200);

    let image = std::fs::read(coco_jpeg()).expect("image");
    let mut binary = Vec::new();
    push_bytes(&mut binary, &image);
    let header = json!({
        "inputs": [{"name": "string_input", "datatype": "BYTES", "shape": [1],
                    "parameters": {"binary_data_size": binary.len()}}],
        "outputs": [{"name": "label"}, {"name": "confidence", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let body = [header.as_bytes(), &binary].concat();
    let reply = service.respond("POST", "/v2/models/hf-vit/infer", Some(header.len()), &body);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.content_type, "application/octet-stream");
    assert_eq!(reply.batch_size, Some(1));
    let json_len = reply.header_length.expect(HEADER_LENGTH);
    let head: Value = serde_json::from_slice(&reply.body[..json_len]).expect("JSON header");
    assert_eq!(head["outputs"][1]["parameters"]["binary_data_size"], 4);
    let confidence = f32::from_le_bytes(reply.body[json_len..].try_into().expect("one FP32"));

    let v1 = service.handle(
        "POST",
        "/v1/models/hf-vit:predict",
        blog_request(&coco_jpeg()).to_string().as_bytes(),
    );
    let v1: Value = serde_json::from_slice(&v1.body).expect("JSON");
    assert_eq!(head["outputs"][0]["data"][0], v1["predictions"][0]["label"]);
    assert!(
        (confidence - v1["predictions"][0]["confidence"].as_f64().expect("number") as f32).abs()
            < 1e-6
    );
}
