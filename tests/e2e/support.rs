//! Shared test harness: the real `vitrine` binary on a loopback port, demo
//! models, and the Python reference (HF's ViTImageProcessor + onnxruntime).

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

/// This package's folder: as cargo says when it runs the test, else as it
/// said at build time. A build cache shared between checkouts may hold a
/// test binary compiled in another checkout.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .into()
}

pub fn workspace_root() -> PathBuf {
    manifest_dir()
        .parent()
        .expect("host/ is in the workspace")
        .to_path_buf()
}

/// `../shared/` beside the project root. Tests that need it fail loudly when
/// it is missing rather than pass without checking anything.
pub fn shared() -> PathBuf {
    let dir = workspace_root().join("../shared");
    assert!(
        dir.is_dir(),
        "{} is missing: the parity tests need shared/images and shared/models beside the project root",
        dir.display()
    );
    dir
}

pub fn shared_images() -> Vec<PathBuf> {
    let mut images: Vec<PathBuf> = std::fs::read_dir(shared().join("images"))
        .expect("shared/images")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    images.sort();
    assert!(!images.is_empty(), "shared/images is empty");
    images
}

pub fn coco_jpeg() -> PathBuf {
    shared().join("images/coco_000000039769.jpg")
}

/// The Python with transformers and onnxruntime: `$VITRINE_PYTHON`, else `.venv/`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("VITRINE_PYTHON") {
        return p.into();
    }
    let venv = workspace_root().join(".venv/bin/python");
    assert!(
        venv.is_file(),
        "no Python reference environment at {}: run the README's test command (./test.sh), which creates it, or set VITRINE_PYTHON",
        venv.display()
    );
    venv
}

/// How many hot swaps a swap test runs: `VITRINE_SWAPS` (set by
/// `./reliability.sh --swaps`), or the CI-sized `default`.
pub fn swaps_or(default: u64) -> u64 {
    std::env::var("VITRINE_SWAPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn scratch() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vitrine-e2e")
}

/// A path for a file a test derives, in the scratch folder (created here).
pub fn scratch_path(name: &str) -> PathBuf {
    std::fs::create_dir_all(scratch()).expect("create the e2e scratch folder");
    scratch().join(name)
}

/// Compiled components are cached here, shared by every server the tests start.
pub fn cache_dir() -> PathBuf {
    scratch().join("cache")
}

/// `libonnxruntime.so*` of the onnxruntime wheel in `.venv` (./test.sh
/// installs it), or `$VITRINE_ONNXRUNTIME_LIBRARY`.
pub fn onnxruntime_library() -> PathBuf {
    if let Some(p) = std::env::var_os("VITRINE_ONNXRUNTIME_LIBRARY") {
        return p.into();
    }
    let lib = workspace_root().join(".venv/lib");
    let found = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .filter_map(|py| py.ok())
        .flat_map(|py| {
            std::fs::read_dir(py.path().join("site-packages/onnxruntime/capi"))
                .into_iter()
                .flatten()
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        });
    found.unwrap_or_else(|| {
        panic!(
            "no onnxruntime library in {}: run ./test.sh, which installs the onnxruntime wheel, or set VITRINE_ONNXRUNTIME_LIBRARY",
            lib.display()
        )
    })
}

/// The `vitrine` binary, with the test cache and the `.venv`'s onnxruntime
/// library (`ORT_DYLIB_PATH`), so the host path runs the onnxruntime engine
/// as it does wherever onnxruntime is installed.
pub fn vitrine() -> Command {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vitrine"));
    cmd.env("VITRINE_CACHE_DIR", cache_dir());
    cmd.env("ORT_DYLIB_PATH", LIBRARY.get_or_init(onnxruntime_library));
    cmd
}

/// Compiles the component once per test run, so parallel tests don't each
/// pay Cranelift.
pub fn precompile() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let status = vitrine()
            .arg("compile")
            .status()
            .expect("run vitrine compile");
        assert!(status.success(), "vitrine compile failed");
    });
}

/// A model repository `<base>/<name>/1/` holding the tiny demo ViT (seed 0).
pub fn tiny_repo() -> PathBuf {
    static REPO: OnceLock<PathBuf> = OnceLock::new();
    REPO.get_or_init(|| {
        let base = scratch().join("repo-tiny/hf-vit");
        if !base.join("1/model.onnx").is_file() {
            let status = vitrine()
                .args(["demo-model", "--size", "tiny", "--seed", "0", "--out"])
                .arg(base.join("1"))
                .status()
                .expect("run vitrine demo-model");
            assert!(status.success(), "vitrine demo-model failed");
        }
        base
    })
    .clone()
}

/// A tiny demo ViT version folder with seed `seed` (different seeds give
/// different weights, so different answers), written once per test run.
pub fn tiny_version(seed: u64) -> PathBuf {
    if seed == 0 {
        return tiny_repo().join("1");
    }
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch().join(format!("tiny-seed-{seed}"));
    if !dir.join("model.onnx").is_file() {
        let status = vitrine()
            .args([
                "demo-model",
                "--size",
                "tiny",
                "--seed",
                &seed.to_string(),
                "--out",
            ])
            .arg(&dir)
            .status()
            .expect("run vitrine demo-model");
        assert!(status.success(), "vitrine demo-model failed");
    }
    dir
}

/// A fresh, empty folder for one test's files, removed when dropped.
pub fn fresh_dir(name: &str) -> tempfile::TempDir {
    let parent = scratch().join("repos");
    std::fs::create_dir_all(&parent).expect("create scratch folder");
    tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(parent)
        .expect("create a test folder")
}

/// A running `vitrine serve`, killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    /// The gRPC port, when the server was started with gRPC on.
    pub grpc_port: Option<u16>,
    log: PathBuf,
    pub model: String,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `--model_name` and `--model_base_path`, then `extra`.
pub fn model_args(model: &str, base: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        format!("--model_name={model}"),
        format!("--model_base_path={}", base.display()),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

impl Server {
    /// Starts the server on `base` and waits until `model` is AVAILABLE.
    pub fn start(model: &str, base: &Path, extra: &[&str]) -> Server {
        let mut server = Server::spawn(model, &model_args(model, base, extra));
        server.wait_available();
        server
    }

    /// Like [`Server::start`], with gRPC on a port of its own.
    pub fn start_with_grpc(model: &str, base: &Path, extra: &[&str]) -> Server {
        let mut server = Server::spawn_with_grpc(model, &model_args(model, base, extra));
        server.wait_available();
        server
    }

    /// Starts `vitrine serve ARGS` on a free loopback port without waiting;
    /// `model` is the one [`Server::predict`] talks to.
    pub fn spawn(model: &str, args: &[String]) -> Server {
        Server::launch(model, args, false)
    }

    /// Like [`Server::spawn`], with gRPC on a port of its own.
    pub fn spawn_with_grpc(model: &str, args: &[String]) -> Server {
        Server::launch(model, args, true)
    }

    fn launch(model: &str, args: &[String], grpc: bool) -> Server {
        Server::launch_with(model, args, grpc, |_| {})
    }

    /// Like [`Server::spawn`], with the command adjusted first (its
    /// environment, say).
    pub fn spawn_with(model: &str, args: &[String], adjust: impl FnOnce(&mut Command)) -> Server {
        Server::launch_with(model, args, false, adjust)
    }

    fn launch_with(
        model: &str,
        args: &[String],
        grpc: bool,
        adjust: impl FnOnce(&mut Command),
    ) -> Server {
        precompile();
        let port = free_port();
        let grpc_port = grpc.then(free_port);
        std::fs::create_dir_all(scratch()).expect("scratch dir");
        let log = scratch().join(format!("server-{port}.log"));
        let mut cmd = vitrine();
        adjust(&mut cmd);
        let child = cmd
            .arg("serve")
            .arg(format!("--rest_api_port={port}"))
            .arg("--rest_api_host=127.0.0.1")
            .arg(format!("--port={}", grpc_port.unwrap_or(0)))
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn vitrine");
        Server {
            child,
            port,
            grpc_port,
            log,
            model: model.to_string(),
        }
    }

    /// `127.0.0.1:<grpc port>`.
    pub fn grpc_addr(&self) -> String {
        format!(
            "127.0.0.1:{}",
            self.grpc_port.expect("the server was started with gRPC")
        )
    }

    /// The process id, to read its memory use.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `/readyz` answers 200: every configured model has an
    /// AVAILABLE version.
    pub fn wait_ready(&mut self) {
        self.wait_for("/readyz", "ready", |status| status == 200);
    }

    /// Waits until the REST port answers `/healthz` (the server is up, its
    /// models maybe still loading or refused), for tests whose server is
    /// never ready because some of its models must fail.
    pub fn wait_listening(&mut self) {
        self.wait_for("/healthz", "listening", |_| true);
    }

    /// Polls `path` until its status satisfies `done`, for up to 10 minutes;
    /// panics with the log if vitrine exits first or the time runs out.
    fn wait_for(&mut self, path: &str, what: &str, done: impl Fn(u16) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!("vitrine exited with {exit} before {what}:\n{}", self.log());
            }
            if let Ok(resp) = client().get(self.url(path)).send()
                && done(resp.status().as_u16())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("vitrine was not {what} within 10 minutes:\n{}", self.log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn wait_available(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(600);
        let status_url = self.url(&format!("/v1/models/{}", self.model));
        while Instant::now() < deadline {
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!("vitrine exited with {exit} before serving:\n{}", self.log());
            }
            if let Ok(resp) = client().get(&status_url).send()
                && let Ok(v) = resp.json::<Value>()
            {
                let state = &v["model_version_status"][0]["state"];
                if state == "AVAILABLE" {
                    return;
                }
                if state == "END" {
                    panic!("model failed to load: {v}\n{}", self.log());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("vitrine did not serve within 10 minutes:\n{}", self.log());
    }

    /// Sends SIGTERM (as Kubernetes does) and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        self.child.wait().expect("wait for vitrine")
    }

    /// True while the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn predict(&self, body: &Value) -> (u16, Value) {
        self.post(
            &format!("/v1/models/{}:predict", self.model),
            body.to_string(),
        )
    }

    pub fn post(&self, path: &str, body: String) -> (u16, Value) {
        let resp = client()
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().expect("body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {text:?}"));
        (status, value)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let resp = client().get(self.url(path)).send().expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One reply to a request sent by [`predict_concurrently`].
#[derive(Debug)]
pub struct Posted {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Value,
}

/// Sends `n` copies of `body` to the server's predict endpoint at once, each
/// from its own thread; join the handles for the replies.
pub fn predict_concurrently(
    server: &Server,
    body: &Value,
    n: usize,
) -> Vec<std::thread::JoinHandle<reqwest::Result<Posted>>> {
    let url = server.url(&format!("/v1/models/{}:predict", server.model));
    let body = body.to_string();
    (0..n)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            std::thread::spawn(move || {
                let resp = client()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()?;
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = resp.json()?;
                Ok(Posted {
                    status,
                    retry_after,
                    body,
                })
            })
        })
        .collect()
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client")
}

/// The blog's client encoding: URL-safe base64 of the file's bytes.
pub fn urlsafe_b64(path: &Path) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(std::fs::read(path).expect("read image"))
}

/// The blog's exact request body.
pub fn blog_request(image: &Path) -> Value {
    serde_json::json!({"signature_name": "serving_default", "instances": [urlsafe_b64(image)]})
}

/// Runs a Python client from `tests/clients/` and parses the JSON it prints.
pub fn run_client(script: &str, args: &[String]) -> Value {
    let output = Command::new(python())
        .arg(workspace_root().join("tests/clients").join(script))
        .args(args)
        .output()
        .expect("run the Python client");
    assert!(
        output.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Logits onnxruntime computes on a model folder.
pub struct Reference {
    pub json: Value,
}

impl Reference {
    /// HF-preprocessed logits for `images`, and onnxruntime logits on each raw
    /// f32 tensor in `pixels` (scratch files from [`vitrine_pixels`], removed
    /// once read).
    pub fn compute(model_dir: &Path, images: &[PathBuf], pixels: &[PathBuf]) -> Reference {
        let out = scratch().join(format!(
            "reference-{}-{}.json",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(scratch()).expect("scratch");
        let output = Command::new(python())
            .arg(workspace_root().join("tests/reference/reference.py"))
            .arg("--model")
            .arg(model_dir)
            .arg("--images")
            .args(images)
            .arg("--pixels")
            .args(pixels)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("run the Python reference");
        assert!(
            output.status.success(),
            "reference.py failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json = serde_json::from_slice(&std::fs::read(&out).expect("reference output"))
            .expect("reference JSON");
        // Scratch files, read once: a cached target dir would keep every
        // run's. The pixel files' paths stay the keys of `json`.
        for f in pixels.iter().chain([&out]) {
            let _ = std::fs::remove_file(f);
        }
        Reference { json }
    }

    pub fn image_logits(&self, image: &Path) -> Vec<f32> {
        floats(&self.json["images"][image.to_str().expect("utf-8 path")]["logits"])
    }

    pub fn pixel_logits(&self, pixels: &Path) -> Vec<f32> {
        floats(&self.json["pixels"][pixels.to_str().expect("utf-8 path")]["logits"])
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list of numbers, got {v}"))
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Writes Vitrine's own pixel tensor for `image` (the component's preprocess
/// code, compiled natively) as raw f32, for onnxruntime to run on.
pub fn vitrine_pixels(image: &Path, model_dir: &Path) -> PathBuf {
    use vitrine_component::config::PreprocessorConfig;
    use vitrine_component::preprocess::{DecodeLimits, preprocess_into};
    let cfg = PreprocessorConfig::from_json(
        &std::fs::read(model_dir.join("preprocessor_config.json")).expect("preprocessor config"),
    )
    .expect("parse preprocessor config");
    let mut pixels = vec![0f32; 3 * (cfg.input_size.height * cfg.input_size.width) as usize];
    preprocess_into(
        &std::fs::read(image).expect("image"),
        &cfg,
        &DecodeLimits::default(),
        &mut pixels,
    )
    .expect("preprocess");
    let out = scratch().join(format!(
        "{}-{}.f32",
        image
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("image"),
        rand_suffix()
    ));
    let bytes: Vec<u8> = pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
    std::fs::write(&out, bytes).expect("write pixels");
    out
}

/// Indices of the `k` largest values, best first.
pub fn top_indices(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|a, b| values[*b].total_cmp(&values[*a]).then(a.cmp(b)));
    idx.truncate(k);
    idx
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|x| f64::from(x - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// Builds the wasm crate `package` for wasm32-wasip2 with `features` and
/// `env`, in the folder `host/build.rs` builds the embedded component in, so
/// the dependencies are reused, and returns the `.wasm` it wrote.
pub fn build_wasm(package: &str, features: &[&str], env: &[(&str, &str)]) -> PathBuf {
    let target = std::env::var_os("VITRINE_WASM_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .expect("target dir")
                .join("wasm-component")
        });
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args(["-p", package, "--target-dir"])
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd.status().expect("run cargo build for wasm");
    assert!(
        status.success(),
        "building {package} for wasm32-wasip2 failed"
    );
    target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", package.replace('-', "_")))
}

/// A variant of the component crate with `features` and `env`, kept under a
/// name of its own: the copy is taken at once, before another build replaces
/// the output.
pub fn build_component(name: &str, features: &[&str], env: &[(&str, &str)]) -> PathBuf {
    let built = build_wasm("vitrine-component", features, env);
    let kept = built.with_file_name(format!("vitrine_component_{name}.wasm"));
    std::fs::copy(&built, &kept).expect("keep the component");
    kept
}

/// The build `spin.toml`'s first step makes: no features, so no `wasi:nn`
/// import, which Spin does not provide.
pub fn spin_component() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build_component("spin", &[], &[]))
        .clone()
}

/// The build spin.toml's first step makes: [`spin_component`] that also reads
/// the limits from Spin's variables, so it imports `fermyon:spin/variables`,
/// which only Spin provides.
pub fn spin_variables_component() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build_component("spin-variables", &["spin-variables"], &[]))
        .clone()
}

/// `concurrency` gRPC Predicts of the blog's image at once, through
/// `tests/clients/grpc_client.py`; `codes` holds each call's status code
/// and message.
pub fn grpc_predicts(server: &Server, concurrency: usize) -> Value {
    run_client(
        "grpc_client.py",
        &[
            "overload".into(),
            "--addr".into(),
            server.grpc_addr(),
            "--image".into(),
            coco_jpeg().display().to_string(),
            "--concurrency".into(),
            concurrency.to_string(),
        ],
    )
}

/// The status code of each call in a [`grpc_predicts`] result.
pub fn grpc_codes(result: &Value) -> Vec<&str> {
    result["codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c[0].as_str().unwrap_or_default())
        .collect()
}
