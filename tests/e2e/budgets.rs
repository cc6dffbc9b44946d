//! Sandbox budgets: a guest past its deadline or its memory cap fails only
//! its own request, and a fresh instance takes its place.

use serde_json::json;

use crate::support::*;

fn big_batch() -> serde_json::Value {
    json!({"instances": vec![urlsafe_b64(&coco_jpeg()); 64]})
}

/// Starts a one-instance server with `budget`, sends a 64-image batch that
/// breaks it, and checks a fresh instance then answers exactly as before.
/// Returns the failed reply's status, error message, and the server log.
fn break_budget_then_recover(budget: &str) -> (u16, String, String) {
    let base = tiny_repo();
    let mut server = Server::start(
        "hf-vit",
        &base,
        &["--tensorflow_inter_op_parallelism=1", budget],
    );
    let (status, before) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(status, 200, "{before}");
    let (status, reply) = server.predict(&big_batch());
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
    // 64 images take the tiny model several seconds in wasm.
    let (status, message, log) = break_budget_then_recover("--rest_api_timeout_in_ms=2000");
    assert_eq!(status, 504, "{message}");
    assert!(message.contains("longer than 2000 ms"), "{message}");
    assert!(log.contains("deadline; discarding the instance"), "{log}");
}

#[test]
fn a_guest_over_its_memory_cap_fails_only_its_own_request() {
    // 64 images need ~40 MB of pixels alone, more than the cap.
    let (status, message, log) = break_budget_then_recover("--max_instance_memory_mb=48");
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
    let server = Server::start("hf-vit", &base, &["--tensorflow_inter_op_parallelism=2"]);
    let url = server.url("/v1/models/hf-vit:predict");
    let body = big_batch().to_string();
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            std::thread::spawn(move || {
                client()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
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
        assert_eq!(b.join().expect("thread").ok(), Some(200));
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
            "--tensorflow_inter_op_parallelism=1",
            "--max_queued_requests=1",
        ],
    );
    let url = server.url("/v1/models/hf-vit:predict");
    let body = json!({"instances": vec![urlsafe_b64(&coco_jpeg()); 32]}).to_string();
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            std::thread::spawn(move || {
                let resp = client()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .expect("request");
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let status = resp.status().as_u16();
                let reply: serde_json::Value = resp.json().expect("json");
                (status, retry_after, reply)
            })
        })
        .collect();
    let results: Vec<_> = requests
        .into_iter()
        .map(|r| r.join().expect("thread"))
        .collect();
    let served = results.iter().filter(|(s, _, _)| *s == 200).count();
    let refused: Vec<_> = results.iter().filter(|(s, _, _)| *s == 503).collect();
    // One runs, one waits; the others find the queue full.
    assert!(served >= 2, "{results:?}");
    assert!(!refused.is_empty(), "nothing was refused: {results:?}");
    assert_eq!(served + refused.len(), 4, "{results:?}");
    for (_, retry_after, reply) in refused {
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
