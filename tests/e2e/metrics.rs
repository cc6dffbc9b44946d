//! Prometheus metrics: on by default at TF Serving's path, counting every
//! front end's requests, parsed by prometheus_client's reference parser.

use serde_json::{Value, json};

use crate::support::*;

/// The value of the `name` sample whose labels include `labels`.
pub fn sample(scrape: &Value, family: &str, name: &str, labels: &Value) -> Option<f64> {
    scrape["families"][family]["samples"]
        .as_array()?
        .iter()
        .find(|s| {
            s[0] == name
                && labels
                    .as_object()
                    .is_some_and(|want| want.iter().all(|(k, v)| s[1][k] == *v))
        })
        .and_then(|s| s[2].as_f64())
}

pub fn scrape(server: &Server, path: &str) -> Value {
    run_client("scrape_metrics.py", &[server.url(path)])
}

#[test]
fn metrics_count_requests_of_every_api() {
    let base = tiny_repo();
    let server = Server::start_with_grpc("hf-vit", &base, &[]);
    const N: usize = 3;
    for _ in 0..N {
        let (status, reply) = server.predict(&blog_request(&coco_jpeg()));
        assert_eq!(status, 200, "{reply}");
    }
    // One bad request, one v2 infer of two images.
    let (status, _) = server.predict(&json!({"instances": ["aGk"]}));
    assert_eq!(status, 400);
    let (status, reply) = server.post(
        "/v2/models/hf-vit/infer",
        json!({"inputs": [{"name": "string_input", "datatype": "BYTES", "shape": [2],
                           "data": [urlsafe_b64(&coco_jpeg()), urlsafe_b64(&coco_jpeg())]}]})
        .to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    // One gRPC Predict of 16 images.
    let grpc = grpc_predicts(&server, 1);
    assert_eq!(grpc["codes"], json!([["OK", ""]]));

    let m = scrape(&server, "/monitoring/prometheus/metrics");
    assert!(
        m["content_type"]
            .as_str()
            .unwrap_or_default()
            .starts_with("text/plain"),
        "{m}"
    );
    let ok_v1 = json!({"model": "hf-vit", "version": "1", "api": "rest_v1", "status": "OK"});
    assert_eq!(
        sample(&m, "vitrine_requests", "vitrine_requests_total", &ok_v1),
        Some(N as f64),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "vitrine_request_duration_seconds",
            "vitrine_request_duration_seconds_count",
            &ok_v1
        ),
        Some(N as f64)
    );
    let sum = sample(
        &m,
        "vitrine_request_duration_seconds",
        "vitrine_request_duration_seconds_sum",
        &ok_v1,
    )
    .expect("latency sum");
    assert!(sum > 0.0, "{m}");
    let inf_bucket = json!({"api": "rest_v1", "status": "OK", "le": "+Inf"});
    assert_eq!(
        sample(
            &m,
            "vitrine_request_duration_seconds",
            "vitrine_request_duration_seconds_bucket",
            &inf_bucket
        ),
        Some(N as f64)
    );
    assert_eq!(
        sample(
            &m,
            "vitrine_requests",
            "vitrine_requests_total",
            &json!({"api": "rest_v1", "status": "INVALID_ARGUMENT"})
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "vitrine_requests",
            "vitrine_requests_total",
            &json!({"api": "rest_v2", "status": "OK"})
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "vitrine_requests",
            "vitrine_requests_total",
            &json!({"api": "grpc", "status": "OK"})
        ),
        Some(1.0)
    );
    // Batch sizes: the model runs of the host path, so the version's one
    // warm-up image, then N requests of 1 image, one of 2 and one of 16 (a
    // failed request runs no batch).
    let version = json!({"model": "hf-vit", "version": "1"});
    assert_eq!(
        sample(
            &m,
            "vitrine_batch_size",
            "vitrine_batch_size_count",
            &version
        ),
        Some(N as f64 + 3.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "vitrine_batch_size", "vitrine_batch_size_sum", &version),
        Some(N as f64 + 19.0)
    );
    // Each of those runs is timed, on its own, apart from the request.
    let run = |series: &str| {
        sample(
            &m,
            "vitrine_model_run_duration_seconds",
            &format!("vitrine_model_run_duration_seconds_{series}"),
            &version,
        )
    };
    assert_eq!(run("count"), Some(N as f64 + 3.0), "{m}");
    assert!(run("sum").is_some_and(|s| s > 0.0), "{m}");
    // Where each answered inference's time went: every host-path phase once
    // per request that was answered (N on v1, one on v2, one on gRPC; not
    // the refused one, nor warm-up).
    let phase = |phase: &str, series: &str| {
        sample(
            &m,
            "vitrine_request_phase_seconds",
            &format!("vitrine_request_phase_seconds_{series}"),
            &json!({"model": "hf-vit", "version": "1", "phase": phase}),
        )
    };
    let answered = N as f64 + 2.0;
    let before_reply = [
        "queue",
        "start",
        "preprocess",
        "engine_queue",
        "engine_run",
        "engine_return",
    ];
    for p in before_reply.iter().chain(&["postprocess"]) {
        assert_eq!(phase(p, "count"), Some(answered), "phase {p}: {m}");
    }
    assert_eq!(phase("guest", "count"), None, "{m}");
    // They are the request's own time: the phases before the guest writes
    // its reply fit in the latency of the replies, and the engine's phase
    // is within the runs the engine timed (warm-up's among them).
    let latency: f64 = ["rest_v1", "rest_v2", "grpc"]
        .iter()
        .filter_map(|api| {
            sample(
                &m,
                "vitrine_request_duration_seconds",
                "vitrine_request_duration_seconds_sum",
                &json!({"model": "hf-vit", "version": "1", "api": api, "status": "OK"}),
            )
        })
        .sum();
    let before: f64 = before_reply.iter().filter_map(|p| phase(p, "sum")).sum();
    assert!(
        before > 0.0 && before <= latency,
        "{before} s of phases against {latency} s: {m}"
    );
    let engine_run = phase("engine_run", "sum").expect("engine_run sum");
    let runs = run("sum").expect("run sum");
    assert!(
        engine_run > 0.0 && engine_run <= runs,
        "{engine_run} s against {runs} s"
    );
    assert!(phase("preprocess", "sum").is_some_and(|s| s > 0.0), "{m}");
    assert_eq!(
        sample(
            &m,
            "vitrine_model_state",
            "vitrine_model_state",
            &json!({"model": "hf-vit", "version": "1", "state": "AVAILABLE"})
        ),
        Some(1.0)
    );
    let load = sample(
        &m,
        "vitrine_model_load_seconds",
        "vitrine_model_load_seconds",
        &version,
    )
    .expect("load time");
    assert!(load > 0.0);
    let instances =
        sample(&m, "vitrine_instances", "vitrine_instances", &version).expect("pool size");
    assert!(instances >= 1.0);
    assert_eq!(
        sample(&m, "vitrine_queue_depth", "vitrine_queue_depth", &version),
        Some(0.0)
    );
    assert_eq!(
        m["families"]["vitrine_request_duration_seconds"]["type"],
        "histogram"
    );
}

#[test]
fn monitoring_config_file_moves_or_disables_metrics() {
    let base = tiny_repo();
    let dir = tempfile::tempdir().expect("tempdir");
    let custom = dir.path().join("custom.config");
    std::fs::write(
        &custom,
        "prometheus_config {\n  enable: true,\n  path: \"/metrics\"\n}\n",
    )
    .expect("write");
    let server = Server::start(
        "hf-vit",
        &base,
        &[&format!("--monitoring_config_file={}", custom.display())],
    );
    let m = scrape(&server, "/metrics");
    assert!(m["families"]["vitrine_model_state"].is_object(), "{m}");
    let (status, _) = server.get("/monitoring/prometheus/metrics");
    assert_eq!(status, 404);
    drop(server);

    let off = dir.path().join("off.config");
    std::fs::write(&off, "prometheus_config { enable: false }").expect("write");
    let server = Server::start(
        "hf-vit",
        &base,
        &[&format!("--monitoring_config_file={}", off.display())],
    );
    let (status, _) = server.get("/monitoring/prometheus/metrics");
    assert_eq!(status, 404);

    let bad = dir.path().join("bad.config");
    std::fs::write(&bad, "prometheus_config { enable: maybe }").expect("write");
    let output = vitrine()
        .args(["serve", "--check-config"])
        .arg(format!("--monitoring_config_file={}", bad.display()))
        .arg(format!("--model_base_path={}", base.display()))
        .output()
        .expect("run vitrine");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a valid monitoring config"), "{stderr}");
}
