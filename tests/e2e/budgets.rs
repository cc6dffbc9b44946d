//! Sandbox budgets: a guest past its deadline or its memory cap fails only
//! its own request, and a fresh instance takes its place. These run the
//! model in the guest (`--inference=guest`), where its time and memory are
//! the sandbox's to bound.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

fn big_batch() -> serde_json::Value {
    json!({"instances": vec![urlsafe_b64(&coco_jpeg()); 64]})
}

/// The COCO photo upscaled to 2560x1920 (16 times its pixels), made once
/// with PIL. Decoding and resizing it in wasm takes about 100 ms on a
/// 2-core EPYC, against 30 ms for the whole blog request.
fn large_jpeg() -> PathBuf {
    static JPEG: OnceLock<PathBuf> = OnceLock::new();
    JPEG.get_or_init(|| {
        let path = scratch_path("coco-2560x1920.jpg");
        let script = "import sys; from PIL import Image; \
            Image.open(sys.argv[1]).convert('RGB').resize((2560, 1920), Image.BICUBIC).save(sys.argv[2], quality=85)";
        let status = std::process::Command::new(python())
            .args(["-c", script])
            .arg(coco_jpeg())
            .arg(&path)
            .status()
            .expect("run Python to upscale the COCO photo");
        assert!(status.success(), "PIL could not write {}", path.display());
        path
    })
    .clone()
}

/// Starts a one-instance server with `budget`, sends `breaking` (a batch
/// that breaks it), and checks a fresh instance then answers exactly as
/// before. Returns the failed reply's status, error message, and the server
/// log.
fn break_budget_then_recover(budget: &str, breaking: &serde_json::Value) -> (u16, String, String) {
    let base = tiny_repo();
    let mut server = Server::start(
        "hf-vit",
        &base,
        &[
            "--inference=guest",
            "--tensorflow_inter_op_parallelism=1",
            budget,
        ],
    );
    let (status, before) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(status, 200, "{before}");
    let (status, reply) = server.predict(breaking);
    let message = reply["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {reply}"))
        .to_string();
    assert!(server.alive());
    let (after_status, after) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(
        (after_status, &after),
        (200, &before),
        "a fresh instance answers as before"
    );
    (status, message, server.log())
}

#[test]
fn a_guest_past_its_deadline_is_stopped_with_504() {
    // The deadline must hold the blog request (30 ms) and break the batch
    // on any machine, so they lie far apart: 48 large images take about
    // 5 s in wasm, 10 times the deadline. (64 COCO photos once served here:
    // 1.9 s, too close to a 2 s deadline on a faster machine.)
    let batch = json!({"instances": vec![urlsafe_b64(&large_jpeg()); 48]});
    let (status, message, log) = break_budget_then_recover("--rest_api_timeout_in_ms=500", &batch);
    assert_eq!(status, 504, "{message}");
    assert!(message.contains("longer than 500 ms"), "{message}");
    assert!(log.contains("deadline; discarding the instance"), "{log}");
}

#[test]
fn a_guest_over_its_memory_cap_fails_only_its_own_request() {
    // 64 images need ~40 MB of pixels alone, more than the cap.
    let (status, message, log) =
        break_budget_then_recover("--max_instance_memory_mb=48", &big_batch());
    assert_eq!(status, 500, "{message}");
    assert!(message.contains("server logs"), "{message}");
    assert!(
        !message.contains("wasm"),
        "trap details stay in the logs: {message}"
    );
    assert!(log.contains("guest trapped"), "{log}");
}

/// Inference blocks a thread for seconds; liveness and readiness probes must
/// still answer within Kubernetes' default 1 s probe timeout meanwhile.
#[test]
fn health_probes_answer_while_every_instance_is_busy() {
    let base = tiny_repo();
    let server = Server::start(
        "hf-vit",
        &base,
        &["--inference=guest", "--tensorflow_inter_op_parallelism=2"],
    );
    let busy = predict_concurrently(&server, &big_batch(), 2);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let probe = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(1))
        .build()
        .expect("client");
    for path in ["/healthz", "/readyz", "/v1/models/hf-vit"] {
        let status = probe
            .get(server.url(path))
            .send()
            .map(|r| r.status().as_u16());
        assert_eq!(
            status.ok(),
            Some(200),
            "{path} did not answer within 1 s while both instances were busy"
        );
    }
    for b in busy {
        assert_eq!(b.join().expect("thread").ok().map(|p| p.status), Some(200));
    }
}

/// With every instance busy and the queue full, a request is refused at once
/// with 503 and `Retry-After`, and service resumes when load drops.
#[test]
fn a_full_queue_answers_503_at_once() {
    let base = tiny_repo();
    let server = Server::start(
        "hf-vit",
        &base,
        &[
            "--inference=guest",
            "--tensorflow_inter_op_parallelism=1",
            "--max_queued_requests=1",
        ],
    );
    let body = json!({"instances": vec![urlsafe_b64(&coco_jpeg()); 32]});
    let requests = predict_concurrently(&server, &body, 4);
    let results: Vec<_> = requests
        .into_iter()
        .map(|r| r.join().expect("thread").expect("request"))
        .collect();
    let served = results.iter().filter(|p| p.status == 200).count();
    let refused: Vec<_> = results.iter().filter(|p| p.status == 503).collect();
    // One runs, one waits; the others find the queue full.
    assert!(served >= 2, "{results:?}");
    assert!(!refused.is_empty(), "nothing was refused: {results:?}");
    assert_eq!(served + refused.len(), 4, "{results:?}");
    for Posted {
        retry_after,
        body: reply,
        ..
    } in refused
    {
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert!(
            reply["error"]
                .as_str()
                .is_some_and(|e| e.contains("overloaded")),
            "{reply}"
        );
    }
    let (status, _) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(status, 200, "service resumes once load drops");
}

/// A version whose warm-up cannot fit its memory cap is reported as failed
/// once; it is not retried in the background forever.
#[test]
fn a_version_that_cannot_warm_up_fails_once() {
    precompile();
    let base = tiny_repo();
    let log = std::env::temp_dir().join(format!("vitrine-warmup-{}.log", std::process::id()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut child = vitrine()
        .args(["serve", "--rest_api_host=127.0.0.1", "--port=0"])
        .arg(format!("--rest_api_port={port}"))
        .arg(format!("--model_base_path={}", base.display()))
        .args([
            "--inference=guest",
            "--tensorflow_inter_op_parallelism=1",
            "--max_instance_memory_mb=8",
        ])
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    let status_url = format!("http://127.0.0.1:{port}/v1/models/hf-vit");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        assert!(std::time::Instant::now() < deadline, "no status in time");
        if let Ok(r) = client().get(&status_url).send()
            && let Ok(v) = r.json::<serde_json::Value>()
            && v["model_version_status"][0]["state"] == "END"
        {
            break v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // Long enough for a retry loop to show itself many times over.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let message = status["model_version_status"][0]["status"]["error_message"]
        .as_str()
        .unwrap_or_default();
    // Past the cap the guest either traps or reports the failed allocation
    // (tract's parser does); either way the version fails once.
    assert!(
        message.contains("warm-up failed") || message.contains("out of memory"),
        "{status}"
    );
    assert_eq!(
        text.matches("it stays out of service until its files change")
            .count(),
        1,
        "{text}"
    );
    assert!(
        text.matches("guest trapped, discarding the instance")
            .count()
            <= 1,
        "{text}"
    );
}

/// `tests/components/spinner`: warms up at once, then loops forever on every
/// inference. Built in the folder `host/build.rs` builds the embedded
/// component in, so spin-sdk is compiled once for both.
fn spinner_component() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build_wasm("vitrine-spinner", &[], &[]))
        .clone()
}

/// A guest stuck in a loop that never calls the host is stopped at its
/// deadline like a slow one: 504 naming the flag, the instance replaced
/// (so the next request is stopped too, not deadlocked behind it), the
/// server healthy, and gRPC's Predict DEADLINE_EXCEEDED.
#[test]
fn a_component_that_loops_forever_is_stopped_at_its_deadline() {
    let component = spinner_component();
    let mut server = Server::start_with_grpc(
        "hf-vit",
        &tiny_repo(),
        &[
            "--inference=guest",
            "--tensorflow_inter_op_parallelism=1",
            &format!("--component={}", component.display()),
            "--rest_api_timeout_in_ms=1000",
        ],
    );
    for attempt in ["first", "second"] {
        let started = Instant::now();
        let (status, reply) = server.predict(&blog_request(&coco_jpeg()));
        let took = started.elapsed();
        assert_eq!(status, 504, "{attempt}: {reply}");
        let message = reply["error"].as_str().unwrap_or_default();
        assert!(
            message.contains("longer than 1000 ms") && message.contains("--rest_api_timeout_in_ms"),
            "{attempt}: {reply}"
        );
        // A hang, not a speed, check: the loop would never end by itself.
        assert!(took < Duration::from_secs(30), "{attempt} took {took:?}");
    }
    assert!(server.alive());
    for path in ["/healthz", "/readyz"] {
        assert_eq!(server.get(path).0, 200, "{path}");
    }
    let (_, status) = server.get("/v1/models/hf-vit");
    assert_eq!(status["model_version_status"][0]["state"], "AVAILABLE");
    let result = grpc_predicts(&server, 1);
    assert_eq!(result["codes"][0][0], "DEADLINE_EXCEEDED", "{result}");
    let log = server.log();
    assert_eq!(
        log.matches("guest stopped at its 1000 ms deadline").count(),
        3,
        "{log}"
    );
}
