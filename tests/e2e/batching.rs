//! Dynamic batching on the host path: concurrent requests share model runs
//! and each gets its own answer; a full batch queue answers 503 at once.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::*;

fn params_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("vitrine-{name}-{}.txt", std::process::id()));
    std::fs::write(&path, text).expect("write batching parameters");
    path
}

/// `(model runs, rows)` the host path has done for the served version.
fn runs(server: &Server) -> (u64, u64) {
    let (status, stats) = server.get("/vitrine/stats");
    assert_eq!(status, 200, "{stats}");
    let v = &stats["models"][&server.model][0];
    assert_eq!(v["inference"], "host", "{stats}");
    assert_eq!(v["batching"], true, "{stats}");
    let n = |k: &str| {
        v["runs"][k]
            .as_u64()
            .unwrap_or_else(|| panic!("no {k} in {stats}"))
    };
    let (runs, rows) = (n("model_runs"), n("rows"));
    let seconds = v["runs"]["model_run_seconds"].as_f64().unwrap_or(-1.0);
    assert!(
        (runs == 0) == (seconds == 0.0) && seconds >= 0.0,
        "{runs} runs took {seconds} s: {stats}"
    );
    (runs, rows)
}

fn request(image: &std::path::Path) -> Value {
    json!({"instances": [urlsafe_b64(image)], "return_logits": true})
}

#[test]
fn concurrent_requests_share_model_runs_and_get_their_own_rows() {
    // One batch thread, and a batch waits up to 300 ms for company.
    let params = params_file(
        "batching",
        "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 300000 }\n\
         num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 4 }\n",
    );
    let server = Server::start(
        "hf-vit",
        &tiny_repo(),
        &[
            "--enable_batching",
            &format!("--batching_parameters_file={}", params.display()),
            "--tensorflow_inter_op_parallelism=8",
        ],
    );
    let images = shared_images();
    // Each image alone first: the answers batching must reproduce.
    let alone: Vec<Value> = images
        .iter()
        .map(|i| {
            let (status, reply) = server.predict(&request(i));
            assert_eq!(status, 200, "{reply}");
            reply["predictions"][0].clone()
        })
        .collect();
    // A lone request's batch waited the whole window for company, and the
    // phase metric says so: the wait is engine_queue, not the engine's run.
    let m = crate::metrics::scrape(&server, "/monitoring/prometheus/metrics");
    let waited = |series: &str| {
        crate::metrics::sample(
            &m,
            "vitrine_request_phase_seconds",
            &format!("vitrine_request_phase_seconds_{series}"),
            &json!({"model": "hf-vit", "phase": "engine_queue"}),
        )
        .unwrap_or_else(|| panic!("no engine_queue {series}: {m}"))
    };
    assert_eq!(waited("count"), images.len() as f64, "{m}");
    assert!(
        waited("sum") >= 0.3 * images.len() as f64,
        "{} lone requests waited {} s for the engine in all, under their 300 ms batch windows",
        images.len(),
        waited("sum")
    );

    let (runs_before, rows_before) = runs(&server);
    let n = 6;
    let handles: Vec<_> = (0..n)
        .map(|k| {
            let image = images[k % images.len()].clone();
            let url = server.url("/v1/models/hf-vit:predict");
            std::thread::spawn(move || {
                let resp = client()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(request(&image).to_string())
                    .send()
                    .expect("request");
                (resp.status().as_u16(), resp.json::<Value>().expect("json"))
            })
        })
        .collect();
    for (k, h) in handles.into_iter().enumerate() {
        let (status, reply) = h.join().expect("client thread");
        assert_eq!(status, 200, "{reply}");
        let got = &reply["predictions"][0];
        let want = &alone[k % images.len()];
        assert_eq!(
            got["label"], want["label"],
            "request {k} got another image's answer"
        );
        let diff = max_abs_diff(&floats(&got["logits"]), &floats(&want["logits"]));
        assert!(
            diff <= 1e-5,
            "request {k}: logits differ by {diff} from its own image's"
        );
    }
    let (runs_after, rows_after) = runs(&server);
    let (model_runs, rows) = (runs_after - runs_before, rows_after - rows_before);
    eprintln!("{n} concurrent requests: {model_runs} model runs, {rows} rows");
    assert_eq!(rows, n as u64, "every request's image ran exactly once");
    assert!(
        model_runs < n as u64,
        "{n} concurrent requests took {model_runs} model runs: nothing was batched"
    );
}

#[test]
fn a_full_batch_queue_answers_503_at_once() {
    // Room for two one-image batches; a 64-image request is split into 64.
    let params = params_file(
        "full-queue",
        "max_batch_size { value: 1 }\nmax_enqueued_batches { value: 2 }\nnum_batch_threads { value: 1 }\n",
    );
    let server = Server::start(
        "hf-vit",
        &tiny_repo(),
        &[
            "--enable_batching=true",
            &format!("--batching_parameters_file={}", params.display()),
        ],
    );
    let body = json!({"instances": vec![urlsafe_b64(&coco_jpeg()); 64]});
    let reply = predict_concurrently(&server, &body, 1)
        .pop()
        .expect("one request")
        .join()
        .expect("thread")
        .expect("request");
    assert_eq!(reply.status, 503, "{:?}", reply.body);
    assert_eq!(reply.retry_after.as_deref(), Some("1"));
    let message = reply.body["error"].as_str().unwrap_or_default();
    assert!(message.contains("batch queue is full"), "{message}");
    let (status, ok) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(status, 200, "service goes on once the queue drains: {ok}");
}

#[test]
fn bad_batching_parameters_are_refused_at_start() {
    let params = params_file(
        "bad",
        "max_batch_size { value: 8 }\nallowed_batch_sizes: 4\n",
    );
    let out = vitrine()
        .args(["serve", "--check-config", "--enable_batching"])
        .arg(format!("--batching_parameters_file={}", params.display()))
        .arg(format!("--model_base_path={}", tiny_repo().display()))
        .output()
        .expect("run vitrine");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("must equal max_batch_size"), "{stderr}");
}
