//! The component under real `wasmtime serve` (wasmtime-cli 48, which
//! ./test.sh installs): the plain Spin build with the model folder preopened,
//! and the pre-initialized build with no files at all. Each must answer the
//! blog's request, KServe v2 metadata and infer, and bad requests as the
//! `vitrine` host does, and answer its own probes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::*;

/// The wasmtime-cli release the tests run, as ./test.sh installs it.
const WASMTIME_VERSION: &str = "48.0.8";

/// `$VITRINE_WASMTIME`, else ./test.sh's install, else `wasmtime` on the
/// PATH, if it is [`WASMTIME_VERSION`]. Missing, the test is skipped loudly
/// on a developer's machine and fails in CI.
fn wasmtime_cli(test: &str) -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("VITRINE_WASMTIME")
        .map(PathBuf::from)
        .into_iter()
        .chain(dirs_home().map(|h| h.join(".cache/vitrine-tools/bin/wasmtime")))
        .chain([PathBuf::from("wasmtime")])
        .collect();
    for bin in &candidates {
        let Ok(out) = Command::new(bin).arg("--version").output() else {
            continue;
        };
        let version = String::from_utf8_lossy(&out.stdout);
        if version.starts_with(&format!("wasmtime {WASMTIME_VERSION}")) {
            return Some(bin.clone());
        }
        eprintln!("{}: {version} is not {WASMTIME_VERSION}", bin.display());
    }
    let why = format!(
        "{test}: no wasmtime-cli {WASMTIME_VERSION} (looked at {candidates:?}); ./test.sh installs it"
    );
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{why}, and CI must run this test");
    }
    eprintln!("\n==================== SKIPPED: {why} ====================\n");
    None
}

fn dirs_home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// A running `wasmtime serve` on a loopback port, killed on drop.
struct WasmtimeServe {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl WasmtimeServe {
    /// Serves `component` with `args` before it and waits for `/healthz`.
    fn start(bin: &Path, component: &Path, args: &[String]) -> WasmtimeServe {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let log = cache_dir()
            .parent()
            .expect("scratch")
            .join(format!("wasmtime-serve-{port}.log"));
        let child = Command::new(bin)
            .arg("serve")
            .arg(format!("--addr=127.0.0.1:{port}"))
            // wasi:cli (environment, filesystem, stderr) beside wasi:http.
            .arg("-Scli")
            .args(args)
            .arg(component)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn wasmtime serve");
        let mut server = WasmtimeServe { child, port, log };
        // Cranelift compiles the component first: tens of seconds.
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Ok(Some(exit)) = server.child.try_wait() {
                panic!("wasmtime serve exited with {exit}:\n{}", server.log());
            }
            if let Ok(resp) = client().get(server.url("/healthz")).send() {
                let status = resp.status().as_u16();
                assert_eq!(status, 200, "/healthz: {:?}\n{}", resp.text(), server.log());
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "wasmtime serve did not answer within 10 minutes:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Anything that answers HTTP on a loopback port.
trait Endpoint {
    fn url(&self, path: &str) -> String;
}

impl Endpoint for WasmtimeServe {
    fn url(&self, path: &str) -> String {
        WasmtimeServe::url(self, path)
    }
}

impl Endpoint for Server {
    fn url(&self, path: &str) -> String {
        Server::url(self, path)
    }
}

/// Status and JSON body (`Null` if the body is not JSON).
fn send(server: &dyn Endpoint, method: &str, path: &str, body: Option<String>) -> (u16, Value) {
    let url = server.url(path);
    let req = match method {
        "GET" => client().get(url),
        "POST" => client()
            .post(url)
            .header("content-type", "application/json"),
        "DELETE" => client().delete(url),
        other => panic!("no such method in this test: {other}"),
    };
    let resp = req.body(body.unwrap_or_default()).send().expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The pre-initialized build of [`spin_component`] with the tiny model as
/// `hf-vit` version 1, written once per test run.
fn preinitialized_component() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = cache_dir()
                .parent()
                .expect("scratch")
                .join("wasmtime-serve-preinit-hf-vit-1.wasm");
            let status = vitrine()
                .args(["preinit", "--model_name", "hf-vit", "--model_version", "1"])
                .arg("--model")
                .arg(tiny_version(0))
                .arg("--component")
                .arg(spin_component())
                .arg("--out")
                .arg(&out)
                .status()
                .expect("run vitrine preinit");
            assert!(status.success(), "vitrine preinit failed");
            out
        })
        .clone()
}

/// The requests every runtime must answer alike: the blog's, v2 metadata and
/// infer, and bad ones.
fn same_answers(host: &Server, served: &WasmtimeServe, what: &str) {
    let image = coco_jpeg();
    let b64 =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&image).expect("image"));
    let infer = json!({
        "inputs": [{"name": "string_input", "datatype": "BYTES", "shape": [1], "data": [b64]}],
        "outputs": [{"name": "label"}, {"name": "confidence"}, {"name": "probabilities"}]
    });
    let with_logits = json!({"instances": [urlsafe_b64(&image)], "return_logits": true});
    let predict = "/v1/models/hf-vit:predict";
    let cases: Vec<(&str, &str, &str, Option<String>)> = vec![
        ("blog request", "POST", predict, Some(blog_request(&image).to_string())),
        ("logits", "POST", predict, Some(with_logits.to_string())),
        ("v1 status", "GET", "/v1/models/hf-vit", None),
        ("v2 metadata", "GET", "/v2/models/hf-vit", None),
        ("v2 infer", "POST", "/v2/models/hf-vit/infer", Some(infer.to_string())),
        ("body not JSON", "POST", predict, Some("{".into())),
        ("not an image", "POST", predict, Some(json!({"instances": ["aGVsbG8"]}).to_string())),
        ("no instances", "POST", predict, Some(json!({"signature_name": "serving_default"}).to_string())),
        ("unknown model", "POST", "/v1/models/resnet:predict", Some(blog_request(&image).to_string())),
        ("v2 not JSON", "POST", "/v2/models/hf-vit/infer", Some("{".into())),
        ("v2 unknown input", "POST", "/v2/models/hf-vit/infer",
            Some(json!({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [b64]}]}).to_string())),
        ("wrong method", "GET", predict, None),
    ];
    for (case, method, path, body) in cases {
        let (want_status, want) = send(host, method, path, body.clone());
        let (status, got) = send(served, method, path, body);
        let at = format!("{what}, {case} ({method} {path})");
        assert_eq!(status, want_status, "{at}: {got} vs the host's {want}");
        if status != 200 {
            // The API's error shape, and the same words.
            assert!(got["error"].is_string(), "{at}: {got}");
            assert_eq!(got, want, "{at}");
            continue;
        }
        assert_close(&got, &want, &at);
    }
}

/// `got` equals `want`, numbers within 1e-4 (the logits' tolerance).
fn assert_close(got: &Value, want: &Value, at: &str) {
    match (got, want) {
        (Value::Number(g), Value::Number(w)) => {
            let (g, w) = (
                g.as_f64().unwrap_or(f64::NAN),
                w.as_f64().unwrap_or(f64::NAN),
            );
            assert!((g - w).abs() <= 1e-4, "{at}: {g} vs the host's {w}");
        }
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{at}: {got} vs the host's {want}");
            for (g, w) in g.iter().zip(w) {
                assert_close(g, w, at);
            }
        }
        (Value::Object(g), Value::Object(w)) => {
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(g), keys(w), "{at}: {got} vs the host's {want}");
            for (k, g) in g {
                assert_close(g, &w[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(got, want, "{at}"),
    }
}

/// What every runtime's probes and unknown paths answer.
fn probes(served: &WasmtimeServe, preinitialized: bool, what: &str) {
    let (status, ready) = send(served, "GET", "/readyz", None);
    assert_eq!(status, 200, "{what}: /readyz: {ready}");
    assert_eq!(ready["status"], "ready", "{what}: {ready}");
    assert_eq!(ready["preinitialized"], preinitialized, "{what}: {ready}");
    let (_, metadata) = send(served, "GET", "/v1/models/hf-vit/metadata", None);
    assert_eq!(
        metadata["vitrine"]["preinitialized"], preinitialized,
        "{what}: {metadata}"
    );
    assert_eq!(
        metadata["vitrine"]["inference"], "guest",
        "{what}: {metadata}"
    );
    for path in ["/", "/favicon.ico", "/v3/models", "/healthz/deeper"] {
        let (status, body) = send(served, "GET", path, None);
        assert_eq!(status, 404, "{what}: GET {path}: {body}");
        assert!(body["error"].is_string(), "{what}: GET {path}: {body}");
    }
    let (status, body) = send(served, "DELETE", "/readyz", None);
    assert_eq!(status, 405, "{what}: DELETE /readyz: {body}");
}

#[test]
fn wasmtime_serve_runs_the_plain_and_the_preinitialized_component_like_the_host() {
    let test = "wasmtime_serve_runs_the_plain_and_the_preinitialized_component_like_the_host";
    let Some(bin) = wasmtime_cli(test) else {
        return;
    };
    let host = Server::start("hf-vit", &tiny_repo(), &[]);

    // The plain build loads the model from the preopened folder, in every
    // instance (wasmtime serve makes one per request).
    let model_dir = tiny_version(0);
    let plain = WasmtimeServe::start(
        &bin,
        &spin_component(),
        &[
            format!("--dir={}::/model", model_dir.display()),
            "--env=VITRINE_MODEL_DIR=/model".into(),
        ],
    );
    probes(&plain, false, "plain build");
    same_answers(&host, &plain, "plain build");
    drop(plain);

    // The snapshot needs no files and no environment; the option is the one
    // README gives for sharing its heap copy-on-write between instances.
    // A mistyped limit makes the component warn on stderr in every request's
    // instance. The snapshot was taken after warnings of its own, so this is
    // where a stderr handle kept from pre-initialization would trap.
    let preinit = WasmtimeServe::start(
        &bin,
        &preinitialized_component(),
        // wasmtime's default configuration, as users run it (README).
        &["--env=VITRINE_MAX_IMAGE_DIMENSION=wide".into()],
    );
    probes(&preinit, true, "pre-initialized build");
    same_answers(&host, &preinit, "pre-initialized build");
    let log = preinit.log();
    assert!(
        log.contains("VITRINE_MAX_IMAGE_DIMENSION=\"wide\" is not a positive integer"),
        "the warning is not in wasmtime serve's stderr:\n{log}"
    );
    assert!(
        !log.contains("unknown handle"),
        "a warning trapped in a pre-initialized instance:\n{log}"
    );
}

/// Without the model folder the plain build is alive but not ready, and
/// says why in the API's error shape.
#[test]
fn wasmtime_serve_without_the_model_is_live_but_not_ready() {
    let test = "wasmtime_serve_without_the_model_is_live_but_not_ready";
    let Some(bin) = wasmtime_cli(test) else {
        return;
    };
    let served = WasmtimeServe::start(&bin, &spin_component(), &[]);
    let (status, body) = send(&served, "GET", "/readyz", None);
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("failed to load") && error.contains("/model"),
        "{error}"
    );
}

/// The same probes in the component's own code, compiled natively: they run
/// even where wasmtime-cli is missing.
#[test]
fn the_component_answers_probes_and_unknown_paths_itself() {
    use vitrine_component::service::{Service, ServiceConfig};
    let service = |dir: PathBuf| {
        Service::new(ServiceConfig {
            model_dir: dir,
            ..ServiceConfig::from_vars(|_| None)
        })
    };
    let json = |r: &vitrine_component::service::Reply| -> Value {
        serde_json::from_slice(&r.body).unwrap_or(Value::Null)
    };
    let good = service(tiny_version(0));
    let live = good.handle("GET", "/healthz", b"");
    assert_eq!((live.status, json(&live)), (200, json!({"status": "ok"})));
    let ready = good.handle("GET", "/readyz?verbose=1", b"");
    assert_eq!(ready.status, 200, "{:?}", json(&ready));
    assert_eq!(json(&ready)["model"], "hf-vit");
    let missing = service(PathBuf::from("/nonexistent/vitrine-model"));
    assert_eq!(missing.handle("GET", "/healthz", b"").status, 200);
    let not_ready = missing.handle("GET", "/readyz", b"");
    assert_eq!(not_ready.status, 503);
    assert!(json(&not_ready)["error"].is_string());
    for path in ["/", "/metrics", "/v1", "/v1/model/hf-vit"] {
        let reply = good.handle("GET", path, b"");
        assert_eq!(reply.status, 404, "{path}");
        assert!(json(&reply)["error"].is_string(), "{path}");
    }
    assert_eq!(good.handle("POST", "/healthz", b"").status, 405);
}
