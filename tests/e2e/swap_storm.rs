//! Many hot swaps under steady load, with zero failed requests: clients on
//! REST v1, KServe v2 and gRPC run throughout while 25 versions (in CI;
//! `VITRINE_SWAPS` sets the count) are
//! published the ways users publish them (copy-then-rename, a `.ready`
//! marker, a slow plain copy), a broken version now and then (it must end
//! `END` while the served one answers), and a version with its own
//! `component.wasm` every 10 swaps. Every request is recorded; none may
//! fail, and the version that answered only ever increases.
//! `./reliability.sh --swaps 100` runs the long version.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::lifecycle::{
    copy_dir, copy_slowly, post, publish, serve_args, states, top3_component, wait_until,
};
use crate::support::*;

/// Swaps per run: 25 in CI, `VITRINE_SWAPS` for `./reliability.sh`.
fn swaps() -> u64 {
    swaps_or(25)
}

/// One client's record: (status, answering version) per request, in order.
type Record = Vec<(String, Option<u64>)>;

/// A thread posting `body` to `path` back to back until `stop`; the version
/// comes from `X-Vitrine-Model-Version`, or KServe's `model_version`.
fn http_client(
    server: &Server,
    path: &str,
    body: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Record> {
    let url = server.url(path);
    std::thread::spawn(move || {
        let mut record = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let seen = post(&url, &body);
            let version = seen.version.or_else(|| {
                seen.body["model_version"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
            });
            record.push((seen.status.to_string(), version));
        }
        record
    })
}

fn grpc_client(server: &Server, stop_file: &Path) -> std::thread::JoinHandle<Record> {
    let args = vec![
        "steady".into(),
        "--addr".into(),
        server.grpc_addr(),
        "--image".into(),
        coco_jpeg().display().to_string(),
        "--model".into(),
        "m".into(),
        "--stop-file".into(),
        stop_file.display().to_string(),
    ];
    std::thread::spawn(move || {
        let result = run_client("grpc_client.py", &args);
        result["calls"]
            .as_array()
            .expect("calls")
            .iter()
            .map(|c| {
                let code = c[0].as_str().unwrap_or_default().to_string();
                (code, c[1].as_u64())
            })
            .collect()
    })
}

/// How version `v` is published; `broken` ones have half a model.
fn publish_version(repo: &Path, v: u64, swap: u64, broken: bool) -> &'static str {
    let staged = fresh_dir(&format!("storm-{v}"));
    copy_dir(&tiny_version(v % 2), staged.path());
    if broken {
        let model = std::fs::read(staged.path().join("model.onnx")).expect("model");
        std::fs::write(staged.path().join("model.onnx"), &model[..model.len() / 2]).expect("write");
        publish(staged.path(), &repo.join(v.to_string()));
        return "broken, copy-then-rename";
    }
    if swap.is_multiple_of(10) {
        std::fs::copy(top3_component(), staged.path().join("component.wasm"))
            .expect("copy component");
    }
    let dst = repo.join(v.to_string());
    match swap % 3 {
        0 => {
            publish(staged.path(), &dst);
            "copy-then-rename"
        }
        1 => {
            copy_dir(staged.path(), &dst);
            std::fs::write(dst.join(".ready"), b"").expect("marker");
            ".ready marker"
        }
        _ => {
            copy_slowly(staged.path(), &dst);
            "slow plain copy"
        }
    }
}

/// Runs the storm on `--inference=<inference>` with the server's extra
/// `flags`; `what` names the path in the summary line.
fn storm(what: &str, inference: &str, flags: &[&str]) {
    let swaps = swaps();
    // Built before the clock starts: the first build takes minutes.
    top3_component();
    let repo_dir = fresh_dir(&format!("storm-{inference}"));
    let repo = repo_dir.path();
    publish(&tiny_version(1), &repo.join("1"));
    let mut server = Server::spawn_with_grpc(
        "m",
        &serve_args(
            repo,
            &[&[format!("--inference={inference}").as_str()], flags].concat(),
        ),
    );
    server.wait_ready();
    let stop = Arc::new(AtomicBool::new(false));
    let v1_body = blog_request(&coco_jpeg()).to_string();
    let v2_body = {
        use base64::Engine as _;
        let bytes = std::fs::read(coco_jpeg()).expect("image");
        json!({"inputs": [{"name": "string_input", "datatype": "BYTES", "shape": [1],
                           "data": [base64::engine::general_purpose::STANDARD.encode(bytes)]}]})
        .to_string()
    };
    let stop_dir = fresh_dir("storm-stop");
    let stop_file = stop_dir.path().join("stop");
    let clients = vec![
        (
            "REST v1",
            http_client(
                &server,
                "/v1/models/m:predict",
                v1_body.clone(),
                stop.clone(),
            ),
        ),
        (
            "REST v1",
            http_client(&server, "/v1/models/m:predict", v1_body, stop.clone()),
        ),
        (
            "KServe v2",
            http_client(&server, "/v2/models/m/infer", v2_body, stop.clone()),
        ),
        ("gRPC", grpc_client(&server, &stop_file)),
    ];
    let started = Instant::now();
    let (mut v, mut served, mut broken) = (1u64, 1u64, Vec::new());
    for swap in 1..=swaps {
        v += 1;
        if v.is_multiple_of(5) {
            let how = publish_version(repo, v, swap, true);
            wait_until(&server, &format!("broken version {v} ({how}) ends"), || {
                states(&server, "m")
                    .get(&v)
                    .is_some_and(|(s, e)| s == "END" && !e.is_empty())
            });
            broken.push(v);
            v += 1;
        }
        let how = publish_version(repo, v, swap, false);
        wait_until(
            &server,
            &format!("version {v} ({how}) replaces {served}"),
            || {
                let s = states(&server, "m");
                s.get(&v).is_some_and(|(s, _)| s == "AVAILABLE")
                    && s.get(&served).is_none_or(|(s, _)| s == "END")
            },
        );
        std::fs::remove_dir_all(repo.join(served.to_string())).expect("remove old version");
        served = v;
    }
    // Let every client see the last version.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    std::fs::write(&stop_file, b"").expect("stop file");
    let records: Vec<(&str, Record)> = clients
        .into_iter()
        .map(|(what, c)| (what, c.join().expect("client thread")))
        .collect();

    let mut total = 0;
    for (i, (what, record)) in records.iter().enumerate() {
        total += record.len();
        let failed: Vec<_> = record
            .iter()
            .filter(|(s, _)| s != "200" && s != "OK")
            .collect();
        assert!(
            failed.is_empty(),
            "client {i} ({what}): {} of {} requests failed, e.g. {:?}\n{}",
            failed.len(),
            record.len(),
            failed.first(),
            server.log()
        );
        let versions: Vec<u64> = record.iter().map(|(_, v)| v.unwrap_or(0)).collect();
        assert!(
            versions.windows(2).all(|w| w[0] <= w[1]) && versions.first() >= Some(&1),
            "client {i} ({what}): the answering version went back (or was missing): {versions:?}"
        );
        assert!(
            versions.iter().all(|v| !broken.contains(v)),
            "client {i} ({what}) was answered by a broken version"
        );
        assert_eq!(versions.last(), Some(&served), "client {i} ({what})");
    }
    let seen: std::collections::BTreeSet<u64> = records
        .iter()
        .flat_map(|(_, r)| r.iter().filter_map(|(_, v)| *v))
        .collect();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{what}: {swaps} swaps in {secs:.0} s under load, {total} requests, none failed; versions answering: {} of {}; broken versions {broken:?} ended END",
        seen.len(),
        swaps + 1
    );
    // For `./reliability.sh --swaps`, which puts the runs in RELIABILITY.md.
    let per_client: Vec<_> = records
        .iter()
        .map(|(client, r)| json!({"client": client, "requests": r.len()}))
        .collect();
    eprintln!(
        "RELIABILITY-SUMMARY {}",
        json!({"test": "swap_storm", "path": what, "swaps": swaps, "seconds": secs,
               "requests": total, "failed": 0, "versions_answering": seen.len(),
               "broken_versions": broken, "clients": per_client})
    );
}

#[test]
fn hot_swaps_under_load_fail_no_request_on_the_host_path_with_onnxruntime() {
    storm(
        "host path, onnxruntime",
        "host",
        &["--native_engine=onnxruntime"],
    );
}

#[test]
fn hot_swaps_under_load_fail_no_request_on_the_host_path_with_tract() {
    storm("host path, tract", "host", &["--native_engine=tract"]);
}

#[test]
fn hot_swaps_under_load_fail_no_request_on_the_guest_path() {
    storm("guest path", "guest", &[]);
}
