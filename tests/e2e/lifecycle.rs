//! Model lifecycle: new versions and new components picked up from the file
//! system under load, failed versions kept out of service, version policies,
//! the model config file, labels, the reload endpoint, readiness, warm-up,
//! and memory across many swaps.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(600);

pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("create folder");
    for entry in std::fs::read_dir(src).expect("read folder") {
        let entry = entry.expect("entry");
        let to = dst.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).expect("copy file");
        }
    }
}

/// Publishes a version folder atomically: a hidden copy, then one rename.
pub fn publish(src: &Path, dst: &Path) {
    let name = dst.file_name().and_then(|n| n.to_str()).expect("name");
    let tmp = dst.with_file_name(format!(".incoming-{name}"));
    copy_dir(src, &tmp);
    std::fs::rename(&tmp, dst).expect("rename into place");
}

/// Copies a version folder the way a plain `cp` onto a volume does, only
/// slower: the folder and the small files appear at once, then `model.onnx`
/// grows in 20 writes 150 ms apart (3 s). Loading it early would fail.
pub fn copy_slowly(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("create version folder");
    for entry in std::fs::read_dir(src).expect("read folder") {
        let entry = entry.expect("entry");
        if entry.file_name() != "model.onnx" {
            let to = dst.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                copy_dir(&entry.path(), &to);
            } else {
                std::fs::copy(entry.path(), &to).expect("copy file");
            }
        }
    }
    let model = std::fs::read(src.join("model.onnx")).expect("read model");
    let mut out = std::fs::File::create(dst.join("model.onnx")).expect("create model");
    for chunk in model.chunks(model.len() / 20 + 1) {
        out.write_all(chunk).expect("write");
        out.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// Waits for `cond`, failing with the server log after [`WAIT`].
pub fn wait_until(server: &Server, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `version → (state, error message)` from `GET /v1/models/{model}`.
pub fn states(server: &Server, model: &str) -> BTreeMap<u64, (String, String)> {
    // Tolerates a server that is still starting.
    let Ok(resp) = client()
        .get(server.url(&format!("/v1/models/{model}")))
        .send()
    else {
        return BTreeMap::new();
    };
    if resp.status() != 200 {
        return BTreeMap::new();
    }
    let reply: Value = resp.json().unwrap_or(Value::Null);
    reply["model_version_status"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|v| {
                    Some((
                        v["version"].as_str()?.parse().ok()?,
                        (
                            v["state"].as_str()?.to_string(),
                            v["status"]["error_message"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                        ),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn state(server: &Server, model: &str, version: u64) -> Option<String> {
    states(server, model).remove(&version).map(|(s, _)| s)
}

pub fn available(server: &Server, model: &str) -> Vec<u64> {
    states(server, model)
        .into_iter()
        .filter(|(_, (s, _))| s == "AVAILABLE")
        .map(|(v, _)| v)
        .collect()
}

/// One predict reply as a client saw it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub sent: Instant,
    pub received: Instant,
    pub status: u16,
    pub version: Option<u64>,
    pub body: Value,
}

pub fn post(url: &str, body: &str) -> Observed {
    let sent = Instant::now();
    let result = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send();
    let (status, version, body) = match result {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let version = resp
                .headers()
                .get("x-vitrine-model-version")
                .and_then(|v| v.to_str().ok()?.parse().ok());
            let body = resp.json().unwrap_or(Value::Null);
            (status, version, body)
        }
        Err(e) => (0, None, Value::from(e.to_string())),
    };
    Observed {
        sent,
        received: Instant::now(),
        status,
        version,
        body,
    }
}

/// Clients sending predicts back to back until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Vec<Observed>>>,
}

impl Load {
    pub fn start(server: &Server, path: &str, body: &Value, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let (url, body, stop) = (server.url(path), body.to_string(), stop.clone());
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        seen.push(post(&url, &body));
                    }
                    seen
                })
            })
            .collect();
        Load { stop, clients }
    }

    pub fn finish(self) -> Vec<Vec<Observed>> {
        self.stop.store(true, Ordering::Relaxed);
        self.clients
            .into_iter()
            .map(|c| c.join().expect("client thread"))
            .collect()
    }
}

/// Every request succeeded, and the served version went from `from` to `to`
/// exactly once: each client saw `from…from, to…to`, and no request sent
/// after any client received an answer from `to` was answered by `from`.
fn assert_switched_once(clients: &[Vec<Observed>], from: u64, to: u64) {
    let all: Vec<&Observed> = clients.iter().flatten().collect();
    let failed: Vec<&&Observed> = all.iter().filter(|o| o.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failed.len(),
        all.len(),
        failed.first()
    );
    for (i, client) in clients.iter().enumerate() {
        let versions: Vec<Option<u64>> = client.iter().map(|o| o.version).collect();
        assert!(
            versions.iter().all(|v| *v == Some(from) || *v == Some(to)),
            "client {i} saw {versions:?}"
        );
        let switch = versions
            .iter()
            .position(|v| *v == Some(to))
            .unwrap_or(versions.len());
        assert!(
            versions[switch..].iter().all(|v| *v == Some(to)),
            "client {i} went back from {to} to {from}: {versions:?}"
        );
        assert_eq!(
            client.last().and_then(|o| o.version),
            Some(to),
            "client {i} did not end on version {to}"
        );
    }
    let first_new = all
        .iter()
        .filter(|o| o.version == Some(to))
        .map(|o| o.received)
        .min()
        .expect("version {to} answered");
    let late_old: Vec<_> = all
        .iter()
        .filter(|o| o.version == Some(from) && o.sent > first_new)
        .collect();
    assert!(
        late_old.is_empty(),
        "{} requests sent after version {to} answered went to version {from}",
        late_old.len()
    );
    assert!(
        all.iter().any(|o| o.version == Some(from)),
        "the load never saw version {from}"
    );
}

/// Model `m` on `base`, 2 instances, polling every second; `extra` adds
/// flags or replaces these.
pub fn serve_args(base: &Path, extra: &[&str]) -> Vec<String> {
    let name = |a: &str| a.split('=').next().unwrap_or_default().to_string();
    let mut args: Vec<String> = [
        "--model_name=m".to_string(),
        format!("--model_base_path={}", base.display()),
        "--tensorflow_inter_op_parallelism=2".to_string(),
        "--file_system_poll_wait_seconds=1".to_string(),
    ]
    .into_iter()
    .filter(|a| !extra.iter().any(|e| name(e) == name(a)))
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn summary(clients: &[Vec<Observed>]) -> String {
    let mut counts = BTreeMap::new();
    for o in clients.iter().flatten() {
        *counts.entry(o.version.unwrap_or(0)).or_insert(0usize) += 1;
    }
    format!("{counts:?} (version: requests)")
}

#[test]
fn a_new_version_is_swapped_in_under_load_without_a_failed_request() {
    swap_under_load(&["--native_engine=onnxruntime"]);
}

#[test]
fn a_new_version_is_swapped_in_under_load_on_the_tract_engine() {
    swap_under_load(&["--native_engine=tract"]);
}

fn swap_under_load(extra: &[&str]) {
    let repo_dir = fresh_dir("swap");
    let repo = repo_dir.path();
    publish(&tiny_version(0), &repo.join("1"));
    let mut server = Server::spawn("m", &serve_args(repo, extra));
    server.wait_ready();
    let load = Load::start(
        &server,
        "/v1/models/m:predict",
        &blog_request(&coco_jpeg()),
        4,
    );
    std::thread::sleep(Duration::from_secs(1));

    // Version 2 has other weights (seed 1): its answers differ.
    let copy_started = Instant::now();
    copy_slowly(&tiny_version(1), &repo.join("2"));
    let copied = copy_started.elapsed();
    let mut seen_states = Vec::new();
    wait_until(
        &server,
        "version 2 serves and version 1 is unloaded",
        || {
            let s = states(&server, "m");
            seen_states.push(s.clone());
            s.get(&2).is_some_and(|(s, _)| s == "AVAILABLE")
                && s.get(&1).is_some_and(|(s, _)| s == "END")
        },
    );
    let swapped = copy_started.elapsed();
    std::fs::remove_dir_all(repo.join("1")).expect("remove version 1");
    wait_until(&server, "version 1 leaves the status", || {
        state(&server, "m", 1).is_none()
    });
    std::thread::sleep(Duration::from_secs(1));
    let clients = load.finish();

    assert_switched_once(&clients, 1, 2);
    let answer = |v: u64| {
        clients
            .iter()
            .flatten()
            .find(|o| o.version == Some(v))
            .map(|o| o.body["predictions"][0]["confidence"].clone())
    };
    assert_ne!(answer(1), answer(2), "version 2's own weights answer");
    // The half-copied folder was never loaded: version 2 never failed.
    assert!(
        seen_states
            .iter()
            .all(|s| s.get(&2).is_none_or(|(state, _)| state != "END")),
        "version 2 failed on the way: {seen_states:?}"
    );
    let log = server.log();
    assert!(!log.contains("version 2 failed"), "{log}");
    assert!(log.contains("model m version 1 unloaded"), "{log}");
    if extra.contains(&"--native_engine=onnxruntime") {
        assert!(
            log.contains("model m version 1: onnxruntime session freed"),
            "the old version's session is released:\n{log}"
        );
    }
    eprintln!(
        "swap under load ({extra:?}): {}; copy took {:.1} s, version 2 served and version 1 unloaded {:.1} s after the copy began",
        summary(&clients),
        copied.as_secs_f64(),
        swapped.as_secs_f64()
    );
}

/// The component built with a default top-k of 3: different code, not a
/// setting.
pub fn top3_component() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build_component("top3", &["wasi-nn"], &[("VITRINE_DEFAULT_TOP_K", "3")]))
        .clone()
}

#[test]
fn a_version_with_its_own_component_is_swapped_in_under_load() {
    let component = top3_component();
    let repo_dir = fresh_dir("component-swap");
    let repo = repo_dir.path();
    publish(&tiny_version(0), &repo.join("1"));
    let mut server = Server::spawn("m", &serve_args(repo, &[]));
    server.wait_ready();
    let load = Load::start(
        &server,
        "/v1/models/m:predict",
        &blog_request(&coco_jpeg()),
        4,
    );
    std::thread::sleep(Duration::from_secs(1));

    // Same weights, new code: only the component differs.
    let staged_dir = fresh_dir("component-v2");
    let staged = staged_dir.path();
    copy_dir(&tiny_version(0), staged);
    std::fs::copy(&component, staged.join("component.wasm")).expect("copy component");
    let started = Instant::now();
    copy_slowly(staged, &repo.join("2"));
    wait_until(
        &server,
        "version 2 serves and version 1 is unloaded",
        || {
            let s = states(&server, "m");
            s.get(&2).is_some_and(|(s, _)| s == "AVAILABLE")
                && s.get(&1).is_some_and(|(s, _)| s == "END")
        },
    );
    let swapped = started.elapsed();
    std::fs::remove_dir_all(repo.join("1")).expect("remove version 1");
    std::thread::sleep(Duration::from_secs(1));
    let clients = load.finish();

    assert_switched_once(&clients, 1, 2);
    for o in clients.iter().flatten() {
        let label = &o.body["predictions"][0]["label"];
        match o.version {
            Some(1) => assert!(label.is_string(), "version 1 answers top-1: {}", o.body),
            _ => assert_eq!(
                label.as_array().map(Vec::len),
                Some(3),
                "version 2's component answers top-3: {}",
                o.body
            ),
        }
    }
    let log = server.log();
    assert!(log.contains("brings its own component.wasm"), "{log}");
    eprintln!(
        "component swap under load: {}; version 2 (new component) served {:.1} s after its copy began",
        summary(&clients),
        swapped.as_secs_f64()
    );
}

#[test]
fn broken_versions_fail_in_status_and_the_served_version_keeps_serving() {
    let repo_dir = fresh_dir("broken");
    let repo = repo_dir.path();
    publish(&tiny_version(0), &repo.join("1"));
    let mut server = Server::spawn("m", &serve_args(repo, &[]));
    server.wait_ready();
    let load = Load::start(
        &server,
        "/v1/models/m:predict",
        &blog_request(&coco_jpeg()),
        2,
    );

    let good = tiny_version(1);
    let model = std::fs::read(good.join("model.onnx")).expect("model");
    let stage = |name: &str, change: &dyn Fn(&Path)| {
        let dir = fresh_dir(name);
        copy_dir(&good, dir.path());
        change(dir.path());
        dir
    };
    let cases: Vec<(u64, tempfile::TempDir, &str)> = vec![
        (
            2,
            stage("truncated", &|d| {
                std::fs::write(d.join("model.onnx"), &model[..model.len() / 2]).expect("write")
            }),
            // The host path names the host's file; the guest path, /model/.
            "model.onnx as ONNX",
        ),
        (
            3,
            stage("no-config", &|d| {
                std::fs::remove_file(d.join("config.json")).expect("remove")
            }),
            "lacks config.json",
        ),
        (
            4,
            stage("garbage-component", &|d| {
                std::fs::write(d.join("component.wasm"), b"\0asm but not really").expect("write")
            }),
            "component.wasm is unusable",
        ),
        (
            5,
            stage("wrong-shape", &|d| {
                let path = d.join("preprocessor_config.json");
                let mut c: Value =
                    serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
                c["size"] = json!({"height": 32, "width": 32});
                std::fs::write(&path, c.to_string()).expect("write")
            }),
            "check preprocessor_config.json's size",
        ),
        (
            6,
            // A valid, empty component: it compiles, but exports nothing.
            stage("empty-component", &|d| {
                std::fs::write(d.join("component.wasm"), b"\0asm\x0d\x00\x01\x00").expect("write")
            }),
            "does not export wasi:http/incoming-handler",
        ),
    ];
    for (version, dir, _) in &cases {
        publish(dir.path(), &repo.join(version.to_string()));
    }
    wait_until(&server, "every broken version has failed", || {
        let s = states(&server, "m");
        cases
            .iter()
            .all(|(v, _, _)| s.get(v).is_some_and(|(s, _)| s == "END"))
    });
    let s = states(&server, "m");
    assert_eq!(
        s.get(&1).map(|(s, _)| s.as_str()),
        Some("AVAILABLE"),
        "{s:?}"
    );
    for (version, _, want) in &cases {
        let (_, error) = &s[version];
        assert!(
            error.contains(want),
            "version {version}: {error:?} lacks {want:?}"
        );
    }
    let (status, reply) = server.get("/v1/models/m/versions/3");
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["model_version_status"][0]["status"]["error_code"],
        "UNKNOWN"
    );
    let (status, reply) = server.post(
        "/v1/models/m/versions/2:predict",
        blog_request(&coco_jpeg()).to_string(),
    );
    assert_eq!(status, 503, "{reply}");

    // Fixing version 2 (the whole model.onnx) gets it retried and served.
    let fixed = repo.join("2").join(".model.onnx.part");
    std::fs::write(&fixed, &model).expect("write");
    std::fs::rename(&fixed, repo.join("2/model.onnx")).expect("rename");
    wait_until(&server, "the fixed version 2 serves", || {
        available(&server, "m") == vec![2]
    });
    std::thread::sleep(Duration::from_secs(1));
    let clients = load.finish();
    assert_switched_once(&clients, 1, 2);
    let s = states(&server, "m");
    for v in [3, 4, 5, 6] {
        assert_eq!(
            s[&v].0, "END",
            "version {v} is not retried: its files did not change"
        );
    }
    eprintln!("broken versions under load: {}", summary(&clients));
}

fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

#[test]
fn version_policies_and_labels_from_a_config_file() {
    let repo_dir = fresh_dir("policies");
    let repo = repo_dir.path();
    for v in 1..=3 {
        publish(&tiny_version(v - 1), &repo.join(v.to_string()));
    }
    let config_dir = fresh_dir("policies-config");
    let config = config_dir.path().join("models.config");
    let base = repo.display();
    write_config(
        &config,
        &format!(
            r#"# one base path, four policies
            model_config_list {{
              config {{ name: "latest1" base_path: "{base}" model_platform: "tensorflow" }}
              config {{ name: "latest2" base_path: "{base}"
                        model_version_policy {{ latest {{ num_versions: 2 }} }} }}
              config {{ name: "all" base_path: "{base}" model_version_policy {{ all {{}} }} }}
              config: {{
                name: "specific", base_path: "{base}";
                model_version_policy < specific < versions: [1, 3] > >
                version_labels {{ key: "stable" value: 1 }}
                version_labels {{ key: "canary" value: 3 }}
              }}
            }}"#
        ),
    );
    // --check-config reads the same file and finds the same versions.
    let out = vitrine()
        .args(["serve", "--check-config"])
        .arg(format!("--model_config_file={}", config.display()))
        .output()
        .expect("run --check-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resolved: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let models = resolved["models"].as_array().expect("models");
    assert_eq!(models.len(), 4, "{resolved}");
    assert_eq!(models[3]["name"], "specific");
    assert_eq!(models[3]["versions_found"], json!([1, 2, 3]));
    assert_eq!(
        models[3]["version_labels"],
        json!({"canary": 3, "stable": 1})
    );
    let broken = config.with_file_name("broken.config");
    std::fs::write(
        &broken,
        "model_config_list {\n  config { name: 'x' base_path: '/x' }\n  config {",
    )
    .expect("write");
    let out = vitrine()
        .args(["serve", "--check-config"])
        .arg(format!("--model_config_file={}", broken.display()))
        .output()
        .expect("run --check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("line 3:"),
        "{stderr}"
    );

    let mut server = Server::spawn(
        "specific",
        &[
            format!("--model_config_file={}", config.display()),
            "--tensorflow_inter_op_parallelism=1".to_string(),
        ],
    );
    server.wait_ready();
    let cases: [(&str, &[u64]); 4] = [
        ("latest1", &[3]),
        ("latest2", &[2, 3]),
        ("all", &[1, 2, 3]),
        ("specific", &[1, 3]),
    ];
    for (model, want) in cases {
        wait_until(&server, &format!("{model} serves {want:?}"), || {
            available(&server, model) == want
        });
    }
    let body = blog_request(&coco_jpeg()).to_string();
    let routes: [(&str, u16, Option<u64>); 9] = [
        ("/v1/models/latest1:predict", 200, Some(3)),
        ("/v1/models/latest1/versions/1:predict", 404, None),
        ("/v1/models/latest2/versions/2:predict", 200, Some(2)),
        ("/v1/models/all/versions/1:predict", 200, Some(1)),
        ("/v1/models/specific:predict", 200, Some(3)),
        ("/v1/models/specific/versions/2:predict", 404, None),
        ("/v1/models/specific/labels/stable:predict", 200, Some(1)),
        ("/v1/models/specific/labels/canary:predict", 200, Some(3)),
        ("/v1/models/specific/labels/nightly:predict", 404, None),
    ];
    for (path, want_status, want_version) in routes {
        let o = post(&server.url(path), &body);
        assert_eq!(
            (o.status, o.version),
            (want_status, want_version),
            "{path}: {}",
            o.body
        );
        if want_status != 200 {
            assert!(o.body["error"].is_string(), "{path}: {}", o.body);
        }
    }
    let (status, reply) = server.get("/v1/models/specific/labels/canary");
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["model_version_status"],
        json!([{"version": "3", "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""}}])
    );
    let (status, reply) = server.get("/v1/models/specific/labels/nightly");
    assert_eq!(status, 404, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .is_some_and(|e| e.contains("stable")),
        "{reply}"
    );
    let (status, reply) = server.get("/v1/models/specific/labels/stable/metadata");
    assert_eq!(
        (status, &reply["model_spec"]["version"]),
        (200, &json!("1")),
        "{reply}"
    );
}

fn reload(server: &Server, body: Value) -> (u16, Value) {
    server.post("/v1/admin/reload-config", body.to_string())
}

#[test]
fn the_reload_endpoint_reconfigures_models_and_labels() {
    let repo_dir = fresh_dir("reload");
    let repo = repo_dir.path();
    for v in 1..=3 {
        publish(&tiny_version(0), &repo.join(v.to_string()));
    }
    let other_dir = fresh_dir("reload-other");
    let other = other_dir.path();
    publish(&tiny_version(1), &other.join("1"));
    let config = |policy: &str, canary: u64, extra: &str| {
        format!(
            r#"model_config_list {{
                 config {{ name: "m" base_path: "{}"
                           model_version_policy {{ {policy} }}
                           version_labels {{ key: "stable" value: 1 }}
                           version_labels {{ key: "canary" value: {canary} }} }}
                 {extra}
               }}"#,
            repo.display()
        )
    };
    let file_dir = fresh_dir("reload-config");
    let file = file_dir.path().join("models.config");
    write_config(&file, &config("specific { versions: [1, 2] }", 2, ""));
    let mut server = Server::spawn(
        "m",
        &[
            format!("--model_config_file={}", file.display()),
            "--tensorflow_inter_op_parallelism=1".to_string(),
            "--enable_admin_api".to_string(),
        ],
    );
    server.wait_ready();
    let body = blog_request(&coco_jpeg()).to_string();
    let canary = || post(&server.url("/v1/models/m/labels/canary:predict"), &body);
    wait_until(&server, "the labels are assigned", || {
        canary().status == 200
    });
    assert_eq!(canary().version, Some(2));

    let other_model = format!(r#"config {{ name: "n" base_path: "{}" }}"#, other.display());
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "a label may not name a version that is not loaded",
            json!({"config": config("specific { versions: [1, 2] }", 3, "")}),
            400,
            "FAILED_PRECONDITION: label canary of model m names version 3",
        ),
        (
            "loading version 3 and moving the label in one reload",
            json!({"config": config("specific { versions: [1, 2, 3] }", 3, "")}),
            200,
            "",
        ),
        (
            "syntax errors say where",
            json!({"config": "model_config_list { config { name: 'm' "}),
            400,
            "INVALID_ARGUMENT: invalid model config: line 1:",
        ),
        (
            "a base path that does not exist",
            json!({"config": "model_config_list { config { name: 'm' base_path: '/no/such/dir' } }"}),
            400,
            "base_path /no/such/dir is not a folder",
        ),
        ("not a config", json!({"conf": 1}), 400, "send {\"config\""),
        (
            "adding a model",
            json!({"config": config("specific { versions: [1, 2, 3] }", 3, &other_model)}),
            200,
            "",
        ),
    ];
    for (what, request, want_status, want_error) in cases {
        let (status, reply) = reload(&server, request);
        assert_eq!(status, want_status, "{what}: {reply}");
        if want_status == 200 {
            assert_eq!(reply["status"]["error_code"], "OK", "{what}: {reply}");
        } else {
            let error = reply["error"].as_str().unwrap_or_default();
            assert!(
                error.contains(want_error),
                "{what}: {error:?} lacks {want_error:?}"
            );
        }
        if what == "a label may not name a version that is not loaded" {
            assert_eq!(canary().version, Some(2), "{what}: the label did not move");
        }
        if what == "loading version 3 and moving the label in one reload" {
            assert_eq!(canary().version, Some(3), "{what}");
            assert_eq!(available(&server, "m"), vec![1, 2, 3], "{what}");
        }
    }
    assert_eq!(available(&server, "n"), vec![1], "model n was added");
    assert_eq!(
        post(&server.url("/v1/models/n:predict"), &body).version,
        Some(1)
    );

    // An empty body re-reads the file: back to versions 1 and 2, canary on 2,
    // and model n is gone.
    let (status, reply) = server.post("/v1/admin/reload-config", String::new());
    assert_eq!(status, 200, "{reply}");
    assert_eq!(canary().version, Some(2));
    wait_until(&server, "version 3 is unloaded", || {
        available(&server, "m") == vec![1, 2]
    });
    let (status, reply) = server.get("/v1/models/n");
    assert_eq!(status, 404, "{reply}");
    assert_eq!(post(&server.url("/v1/models/n:predict"), &body).status, 404);
}

#[test]
fn the_config_file_is_polled_and_readiness_covers_every_model() {
    let a_dir = fresh_dir("ready-a");
    let a = a_dir.path();
    publish(&tiny_version(0), &a.join("1"));
    let b_dir = fresh_dir("ready-b");
    let b = b_dir.path();
    let file_dir = fresh_dir("ready-config");
    let file = file_dir.path().join("models.config");
    let model = |name: &str, base: &Path, labels: &str| {
        format!(
            r#"config {{ name: "{name}" base_path: "{}" {labels} }}"#,
            base.display()
        )
    };
    let a_labels =
        r#"version_labels { key: "stable" value: 1 } version_labels { key: "next" value: 9 }"#;
    write_config(
        &file,
        &format!(
            "model_config_list {{ {} {} }}",
            model("a", a, a_labels),
            model("b", b, "")
        ),
    );
    let server = Server::spawn(
        "a",
        &[
            format!("--model_config_file={}", file.display()),
            "--model_config_file_poll_wait_seconds=1".to_string(),
            "--file_system_poll_wait_seconds=1".to_string(),
            "--tensorflow_inter_op_parallelism=1".to_string(),
            "--allow_version_labels_for_unavailable_models=true".to_string(),
        ],
    );
    wait_until(&server, "model a serves", || {
        available(&server, "a") == vec![1]
    });
    let ready = || {
        let resp = client().get(server.url("/readyz")).send().expect("readyz");
        (resp.status().as_u16(), resp.text().unwrap_or_default())
    };
    let (status, text) = ready();
    assert_eq!(status, 503, "model b has no version yet: {text}");
    assert!(text.ends_with("available yet for: b"), "{text}");
    assert_eq!(server.get("/healthz").0, 200, "alive while not ready");
    let body = blog_request(&coco_jpeg()).to_string();
    wait_until(&server, "label stable is assigned", || {
        post(&server.url("/v1/models/a/labels/stable:predict"), &body).version == Some(1)
    });
    // A new label may name a version that is not there yet with the flag.
    let next = post(&server.url("/v1/models/a/labels/next:predict"), &body);
    assert_eq!(next.status, 503, "{}", next.body);

    publish(&tiny_version(1), &b.join("1"));
    wait_until(&server, "ready once b serves", || ready().0 == 200);

    // Editing the file adds and removes models without a restart.
    let c_dir = fresh_dir("ready-c");
    let c = c_dir.path();
    publish(&tiny_version(0), &c.join("4"));
    write_config(
        &file,
        &format!(
            "model_config_list {{ {} {} }}",
            model("b", b, ""),
            model("c", c, "")
        ),
    );
    wait_until(&server, "model c serves", || {
        available(&server, "c") == vec![4]
    });
    wait_until(&server, "model a is gone", || {
        server.get("/v1/models/a").0 == 404
    });
    assert_eq!(ready().0, 200);
    // A broken file is refused and what is served stays.
    write_config(&file, "model_config_list { config { name: ");
    wait_until(&server, "the broken file is refused", || {
        server.log().contains("not fully applied")
    });
    assert_eq!(
        post(&server.url("/v1/models/c:predict"), &body).version,
        Some(4)
    );
    assert_eq!(ready().0, 200);
}

#[test]
fn warm_up_requests_from_assets_extra_run_before_a_version_serves() {
    let repo_dir = fresh_dir("warmup");
    let repo = repo_dir.path();
    let with_warmup = |name: &str, files: &[(&str, Vec<u8>)]| {
        let dir = fresh_dir(name);
        copy_dir(&tiny_version(0), dir.path());
        let warmup = dir.path().join("assets.extra/warmup");
        std::fs::create_dir_all(&warmup).expect("mkdir");
        for (file, bytes) in files {
            std::fs::write(warmup.join(file), bytes).expect("write");
        }
        dir
    };
    let jpeg = std::fs::read(coco_jpeg()).expect("image");
    let good = with_warmup(
        "warmup-good",
        &[
            (
                "1.json",
                blog_request(&coco_jpeg()).to_string().into_bytes(),
            ),
            ("2.jpg", jpeg),
        ],
    );
    let bad = with_warmup(
        "warmup-bad",
        &[("1.json", br#"{"instances": []}"#.to_vec())],
    );
    publish(good.path(), &repo.join("1"));
    publish(bad.path(), &repo.join("2"));
    let config_dir = fresh_dir("warmup-config");
    let config = config_dir.path().join("models.config");
    write_config(
        &config,
        &format!(
            r#"model_config_list {{ config {{ name: "m" base_path: "{}" model_version_policy {{ all {{}} }} }} }}"#,
            repo.display()
        ),
    );
    let server = Server::spawn(
        "m",
        &[
            format!("--model_config_file={}", config.display()),
            "--tensorflow_inter_op_parallelism=2".to_string(),
        ],
    );
    wait_until(&server, "both versions are done loading", || {
        let s = states(&server, "m");
        s.get(&1).is_some_and(|(s, _)| s == "AVAILABLE")
            && s.get(&2).is_some_and(|(s, _)| s == "END")
    });
    let (_, error) = &states(&server, "m")[&2];
    assert!(
        error.contains("warm-up request assets.extra/warmup/1.json failed with 400")
            && error.contains("empty"),
        "{error}"
    );
    assert!(
        server.log().contains(
            "model m version 1: ran 2 warm-up requests from assets.extra on each of 2 instances"
        ),
        "{}",
        server.log()
    );

    // With warm-up off, the same bad request is never sent.
    let off_dir = fresh_dir("warmup-off");
    let off = off_dir.path();
    publish(bad.path(), &off.join("1"));
    let mut server = Server::spawn("m", &serve_args(off, &["--enable_model_warmup=false"]));
    server.wait_ready();
    assert_eq!(server.predict(&blog_request(&coco_jpeg())).0, 200);
    assert!(
        !server.log().contains("warm-up request"),
        "{}",
        server.log()
    );
}

#[test]
fn with_polling_off_new_versions_wait_for_a_restart() {
    let repo_dir = fresh_dir("no-poll");
    let repo = repo_dir.path();
    publish(&tiny_version(0), &repo.join("1"));
    let mut server = Server::spawn(
        "m",
        &serve_args(repo, &["--file_system_poll_wait_seconds=0"]),
    );
    server.wait_ready();
    publish(&tiny_version(1), &repo.join("2"));
    // Long enough for several looks, were polling on.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(available(&server, "m"), vec![1]);
    assert_eq!(state(&server, "m", 2), None);
    let (status, reply) = server.post("/v1/admin/reload-config", String::new());
    assert_eq!(status, 403, "the admin API is off by default: {reply}");
    assert!(
        reply["error"]
            .as_str()
            .is_some_and(|e| e.contains("--enable_admin_api")),
        "{reply}"
    );
}

/// Resident memory of a process, from /proc.
pub fn rss_mb(pid: u32) -> f64 {
    proc_status_mb(pid, "VmRSS")
}

/// One of /proc/PID/status's memory lines, in MB.
pub fn proc_status_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kb / 1024.0
}

/// A server for model `m` on a fresh repository whose version 1 is the tiny
/// model (with a `.ready` marker), ready and answering the blog's request;
/// also the repository, version 1's folder (to publish again as each new
/// version), the request body and the predict URL, for tests that swap
/// versions in.
pub fn serve_tiny_for_swaps(
    prefix: &str,
    args: &[&str],
) -> (tempfile::TempDir, tempfile::TempDir, Server, String, String) {
    let repo_dir = fresh_dir(prefix);
    let v1_dir = fresh_dir(&format!("{prefix}-v1"));
    let v1 = v1_dir.path();
    copy_dir(&tiny_version(0), v1);
    std::fs::write(v1.join(".ready"), b"").expect("marker");
    publish(v1, &repo_dir.path().join("1"));
    let mut server = Server::spawn("m", &serve_args(repo_dir.path(), args));
    server.wait_ready();
    let body = blog_request(&coco_jpeg()).to_string();
    let url = server.url("/v1/models/m:predict");
    assert_eq!(post(&url, &body).version, Some(1));
    (repo_dir, v1_dir, server, body, url)
}

/// Swapping versions 20 times must not grow memory: every old version's
/// instances are freed. Measured: +6 MB after 20 swaps; a leaked pool of
/// the tiny model (one instance) costs ~12 MB, so the 32 MB bound fails on
/// three leaked pools.
#[test]
fn memory_stays_flat_across_twenty_swaps() {
    // The guest path: the sandbox's memory. (`swap_memory.rs` bounds the
    // host path's.)
    let _served = memory_across_swaps(
        &["--inference=guest", "--tensorflow_inter_op_parallelism=1"],
        32.0,
    );
}

/// The same on the host path's onnxruntime engine: each old version's
/// session is released (the log says so for every one), and RSS stays
/// within the bound a few leaked sessions of the tiny model would break.
#[test]
fn memory_stays_flat_across_twenty_swaps_on_onnxruntime() {
    let (server, _repo, _v1) = memory_across_swaps(
        &[
            "--inference=host",
            "--native_engine=onnxruntime",
            "--tensorflow_inter_op_parallelism=1",
        ],
        32.0,
    );
    wait_until(&server, "all 20 old sessions are released", || {
        server.log().matches("onnxruntime session freed").count() == 20
    });
}

/// Serves the tiny model with `flags`, swaps in 20 new versions one by
/// one, checks RSS ends within `bound_mb` of the first load, and returns
/// the server (with the folders it serves from, which must outlive it).
fn memory_across_swaps(
    flags: &[&str],
    bound_mb: f64,
) -> (Server, tempfile::TempDir, tempfile::TempDir) {
    let (repo_dir, v1_dir, server, body, url) = serve_tiny_for_swaps("rss", flags);
    let (repo, v1) = (repo_dir.path(), v1_dir.path());
    let first = rss_mb(server.pid());
    let mut figures = vec![first];
    let started = Instant::now();
    for v in 2..=21u64 {
        publish(v1, &repo.join(v.to_string()));
        wait_until(&server, &format!("version {v} replaces {}", v - 1), || {
            let s = states(&server, "m");
            s.get(&v).is_some_and(|(s, _)| s == "AVAILABLE")
                && s.get(&(v - 1)).is_none_or(|(s, _)| s != "AVAILABLE")
        });
        std::fs::remove_dir_all(repo.join((v - 1).to_string())).expect("remove old version");
        assert_eq!(post(&url, &body).version, Some(v));
        figures.push(rss_mb(server.pid()));
    }
    let last = *figures.last().expect("figures");
    let peak = figures.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "RSS across 20 swaps ({flags:?}, {:.0} s): first load {first:.0} MB, after 20 swaps {last:.0} MB, peak {peak:.0} MB; all: {:?}",
        started.elapsed().as_secs_f64(),
        figures.iter().map(|f| f.round() as i64).collect::<Vec<_>>()
    );
    assert!(
        last <= first + bound_mb,
        "RSS grew from {first:.0} MB to {last:.0} MB across 20 swaps: {figures:?}"
    );
    wait_until(&server, "all 20 old versions are unloaded", || {
        server
            .log()
            .matches("unloaded: its last request finished")
            .count()
            == 20
    });
    (server, repo_dir, v1_dir)
}
