//! The container image, run by podman the way a cluster runs it: the
//! Dockerfile's own arguments (the blog's), a read-only root, ports on
//! loopback. It must predict as the binary does, say SERVING on gRPC, be
//! ready, run as 65532, drain on `podman stop`, and stay under its size bound.
//!
//! `VITRINE_IMAGE` names the image to check: `./image.sh` builds it and runs
//! these tests, and `./test.sh` builds it before the suite. Without it, or
//! where podman cannot run, the tests print SKIPPED, except in CI
//! (`CI=true`), where they fail.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// The image built with `MODEL=none` may not grow past this (MB = 10^6
/// bytes, as `podman images` counts): 93.6 MB measured, 34.8 MB of it
/// onnxruntime; see DEPLOY.md, "The image".
const SIZE_BOUND_MB: u64 = 94;

/// The image to check, or `None` (after saying SKIPPED) where it cannot be.
fn image_under_test() -> Option<String> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let skip = |why: &str| {
        assert!(!ci, "the container checks must run in CI, but {why}");
        eprintln!("SKIPPED: container checks: {why}");
        None
    };
    let Some(image) = std::env::var("VITRINE_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
    else {
        return skip("VITRINE_IMAGE is not set; ./image.sh builds the image and runs them");
    };
    match podman(&["image", "exists", &image]) {
        Ok(o) if o.status.success() => Some(image),
        Ok(_) => skip(&format!("podman has no image {image}; run ./image.sh")),
        Err(e) => skip(&format!("podman cannot run ({e}); ./image.sh installs it")),
    }
}

/// `podman --runtime runc ARGS` (crun fails on this kind of cgroup layout).
fn podman(args: &[&str]) -> std::io::Result<Output> {
    Command::new("podman")
        .args(["--runtime", "runc"])
        .args(args)
        .output()
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args).expect("run podman");
    assert!(
        out.status.success(),
        "podman {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A container removed when dropped, whatever the test's outcome.
struct Container {
    name: String,
    rest: u16,
    grpc: u16,
}

impl Container {
    /// `podman run` of `image` as a pod would run it, with the tiny demo
    /// model mounted read-only where the blog's arguments look for it, and
    /// waits until it is ready.
    fn start(image: &str) -> Container {
        let container = Container::run(image, "serve", &[]);
        container.wait_ready();
        container
    }

    /// Like [`Container::start`] without waiting; `args` replace the image's
    /// `CMD` (the blog's arguments) when not empty.
    fn run(image: &str, role: &str, args: &[&str]) -> Container {
        let (rest, grpc) = (free_port(), free_port());
        let name = format!("vitrine-check-{role}-{}", std::process::id());
        let _ = podman(&["rm", "-f", &name]);
        let model = tiny_repo();
        podman_ok(
            &[
                "run",
                "-d",
                "--name",
                &name,
                "--read-only",
                "-p",
                &format!("127.0.0.1:{rest}:8501"),
                "-p",
                &format!("127.0.0.1:{grpc}:8500"),
                "-v",
                &format!("{}:/models/hf-vit:ro", model.display()),
                image,
            ]
            .into_iter()
            .chain(args.iter().copied())
            .collect::<Vec<_>>(),
        );
        Container { name, rest, grpc }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.rest)
    }

    fn inspect(&self, format: &str) -> String {
        podman_ok(&["inspect", "--format", format, &self.name])
    }

    fn logs(&self) -> String {
        let out = podman(&["logs", &self.name]).expect("run podman logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            if self.inspect("{{.State.Running}}") != "true" {
                panic!("the container exited before serving:\n{}", self.logs());
            }
            if let Ok(r) = client().get(self.url("/readyz")).send()
                && r.status() == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "the container was not ready within 5 minutes:\n{}",
            self.logs()
        );
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
    }
}

/// One request's reply and when it arrived.
struct Reply {
    status: u16,
    body: Value,
    at: Instant,
}

fn post_predict(url: String, body: String) -> std::thread::JoinHandle<Reply> {
    std::thread::spawn(move || {
        let resp = client()
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .expect("an in-flight request must not be cut off");
        let status = resp.status().as_u16();
        let body = resp.json().unwrap_or(Value::Null);
        Reply {
            status,
            body,
            at: Instant::now(),
        }
    })
}

#[test]
fn container_serves_locked_down_and_drains_on_stop() {
    let Some(image) = image_under_test() else {
        return;
    };
    let container = Container::start(&image);

    // The blog's request on the published REST port: the same prediction as
    // the binary with the full component, on this machine.
    let reply = client()
        .post(container.url("/v1/models/hf-vit:predict"))
        .json(&blog_request(&coco_jpeg()))
        .send()
        .expect("REST predict");
    assert_eq!(reply.status(), 200);
    let reply: Value = reply.json().expect("a JSON prediction");
    precompile();
    let local = Server::start("hf-vit", &tiny_repo(), &[]);
    let (status, expected) = local.predict(&blog_request(&coco_jpeg()));
    assert_eq!(status, 200, "{expected}");
    let (got, want) = (&reply["predictions"][0], &expected["predictions"][0]);
    assert_eq!(got["label"], want["label"], "{reply} vs {expected}");
    let (c, w) = (got["confidence"].as_f64(), want["confidence"].as_f64());
    assert!(
        c.zip(w).is_some_and(|(c, w)| (c - w).abs() < 1e-5),
        "{reply} vs {expected}"
    );
    drop(local);

    // The precompiled component matched this CPU: no compile at start.
    let logs = container.logs();
    assert!(!logs.contains("compiling the component"), "{logs}");

    // The image's onnxruntime (from the wheel) serves, not a fallback to tract.
    let metadata: Value = client()
        .get(container.url("/v1/models/hf-vit/metadata"))
        .send()
        .and_then(|r| r.json())
        .expect("metadata");
    assert_eq!(
        metadata["vitrine"]["engine"], "onnxruntime",
        "{metadata}\n{logs}"
    );

    let grpc = run_client(
        "grpc_client.py",
        &[
            "health".into(),
            "--addr".into(),
            format!("127.0.0.1:{}", container.grpc),
        ],
    );
    assert_eq!(grpc["health"][""], "SERVING", "{grpc}");
    assert_eq!(
        grpc["health"]["tensorflow.serving.PredictionService"], "SERVING",
        "{grpc}"
    );

    let ready = client()
        .get(container.url("/readyz"))
        .send()
        .expect("/readyz");
    assert_eq!(ready.status(), 200);

    // What the kernel says of the serving process, not what podman was asked.
    let pid = container.inspect("{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    for key in ["Uid:", "Gid:"] {
        let ids: Vec<&str> = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|ids| ids.split_whitespace().collect())
            .unwrap_or_default();
        assert_eq!(
            ids, ["65532"; 4],
            "{key} of the container's process:\n{status}"
        );
    }
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let root = mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(4) == Some(&"/"))
        .unwrap_or_else(|| panic!("no root mount in:\n{mounts}"));
    assert!(
        root.get(5).is_some_and(|o| o.split(',').any(|o| o == "ro")),
        "the root file system is writable: {root:?}"
    );

    // SIGTERM while full batches are in flight: each still gets its answer,
    // and at least one arrives after the stop began (it was in flight).
    let body = json!({"instances": vec![urlsafe_b64(&coco_jpeg()); 64]}).to_string();
    let url = container.url("/v1/models/hf-vit:predict");
    let clients: Vec<_> = (0..4)
        .map(|_| post_predict(url.clone(), body.clone()))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let stop_sent = Instant::now();
    podman_ok(&["stop", "-t", "60", &container.name]);
    let replies: Vec<Reply> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();
    for r in &replies {
        let n = r.body["predictions"].as_array().map_or(0, Vec::len);
        assert_eq!(
            (r.status, n),
            (200, 64),
            "an in-flight request was lost: {}",
            r.body
        );
    }
    assert!(
        replies.iter().any(|r| r.at > stop_sent),
        "every request finished before `podman stop`: nothing was in flight, so the drain went untested"
    );
    let logs = container.logs();
    assert_eq!(container.inspect("{{.State.ExitCode}}"), "0", "{logs}");
    assert!(logs.contains("shutting down"), "{logs}");
}

/// The image carries the host-path component only: `--inference=guest`
/// cannot load a model, and the version's status says how to get the full one.
#[test]
fn guest_inference_in_the_image_says_to_pass_the_full_component() {
    let Some(image) = image_under_test() else {
        return;
    };
    let args = [
        "--rest_api_port=8501",
        "--model_name=hf-vit",
        "--model_base_path=/models/hf-vit",
        "--inference=guest",
    ];
    let container = Container::run(&image, "guest", &args);
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        assert!(
            Instant::now() < deadline,
            "no load failure within 5 minutes:\n{}",
            container.logs()
        );
        if let Ok(r) = client().get(container.url("/v1/models/hf-vit")).send()
            && let Ok(body) = r.json::<Value>()
            && body["model_version_status"][0]["state"] == "END"
        {
            break body;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let message = status["model_version_status"][0]["status"]["error_message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("without tract") && message.contains("--component"),
        "{status}"
    );
}

#[test]
fn image_size_is_within_its_bound() {
    let Some(image) = image_under_test() else {
        return;
    };
    let bytes: u64 = podman_ok(&["image", "inspect", "--format", "{{.Size}}", &image])
        .parse()
        .expect("podman prints the size in bytes");
    let mb = bytes.div_ceil(1_000_000);
    assert!(
        mb <= SIZE_BOUND_MB,
        "{image} is {mb} MB, over its bound of {SIZE_BOUND_MB} MB: `podman history {image}` shows which layer grew"
    );
}
