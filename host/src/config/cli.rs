//! Command-line flags. `serve` takes TF Serving's flag names so the blog's
//! container `args` work unchanged.

use std::path::PathBuf;

use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "vitrine",
    version,
    about = "Serve ViT image classifiers from a WebAssembly component"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve models over TF Serving's REST and gRPC APIs and KServe v2.
    Serve(Box<ServeArgs>),
    /// Write a demo ViT with seeded random weights in optimum's ONNX layout.
    DemoModel(DemoModelArgs),
    /// Compile the component ahead of time into the cache, so `serve` starts fast.
    Compile(CompileArgs),
    /// Pre-initialize the component with one model version (wasmtime-wizer):
    /// the model is loaded and optimised now, so every instance of the
    /// written component starts with it in memory (for Spin and `wasmtime
    /// serve`, which create an instance per request).
    Preinit(PreinitArgs),
    /// Time the bare model natively with tract, no server (for the benchmark).
    #[command(hide = true)]
    BenchNative(BenchNativeArgs),
    /// Time the bare model under the guest's tract compiled to wasm, in this
    /// host's wasmtime engine with no server (for the benchmark).
    #[command(hide = true)]
    BenchWasm(BenchWasmArgs),
}

/// The host path's engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NativeEngineChoice {
    /// onnxruntime when its library loads, else tract.
    Auto,
    /// onnxruntime; fail at start if its library cannot be loaded.
    Onnxruntime,
    /// tract, built in.
    Tract,
}

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InferencePath {
    /// In the host, natively and multi-threaded, lent to the component
    /// through `wasi:nn`; pre/postprocessing stay in the sandbox.
    Host,
    /// Inside the component with tract: single-threaded, fully sandboxed.
    Guest,
}

/// `serve --max_instance_memory_mb`'s default.
pub const DEFAULT_MAX_INSTANCE_MEMORY_MB: usize = 3072;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DemoSize {
    /// google/vit-base-patch16-224's architecture (86.6M parameters, ~350 MB).
    Base,
    /// 2 layers, hidden 192: for tests.
    Tiny,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// gRPC port (TF Serving's `--port`); 0 turns gRPC off.
    #[arg(long = "port", default_value_t = 8500)]
    pub grpc_port: u16,
    /// Largest gRPC message accepted or sent, in bytes; larger ones get
    /// RESOURCE_EXHAUSTED.
    #[arg(long = "grpc_max_message_bytes", default_value_t = 64 << 20)]
    pub grpc_max_message_bytes: usize,
    /// TF Serving's MonitoringConfig in text format, e.g.
    /// `prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }`.
    /// Without it, Prometheus metrics are served at that path on the REST port.
    #[arg(long = "monitoring_config_file")]
    pub monitoring_config_file: Option<PathBuf>,
    /// Port of the REST API.
    #[arg(long = "rest_api_port", default_value_t = 8501)]
    pub rest_api_port: u16,
    /// Address to bind, for REST and gRPC.
    #[arg(long = "rest_api_host", default_value = "0.0.0.0")]
    pub host: String,
    /// Name the model is served under.
    #[arg(long = "model_name", default_value = "hf-vit")]
    pub model_name: String,
    /// Folder holding `<version>/` subfolders. Without it, a demo model with
    /// random weights is written to the cache and served.
    #[arg(long = "model_base_path")]
    pub model_base_path: Option<PathBuf>,
    /// Threads inside one model run on the host path (0 = one per core).
    /// The guest path runs single-threaded: wasm has no threads.
    #[arg(long = "tensorflow_intra_op_parallelism", default_value_t = 0)]
    pub intra_op_parallelism: usize,
    /// Warm component instances per model version, so requests handled at
    /// once (0 = one per core on the guest path, 16 on the host path, where
    /// an instance only pre/postprocesses).
    #[arg(long = "tensorflow_inter_op_parallelism", default_value_t = 0)]
    pub inter_op_parallelism: usize,
    /// Where the model runs: `host` (native, multi-threaded, batched if
    /// enabled) or `guest` (tract inside the component).
    #[arg(long = "inference", value_enum, default_value_t = InferencePath::Host)]
    pub inference: InferencePath,
    /// The host path's engine: `onnxruntime` (its library is loaded at
    /// start), `tract` (built in), or `auto`: onnxruntime when its library
    /// loads, else tract.
    #[arg(long = "native_engine", value_enum, default_value_t = NativeEngineChoice::Auto)]
    pub native_engine: NativeEngineChoice,
    /// The `libonnxruntime.so` to load, and the only one tried. Without it:
    /// `ORT_DYLIB_PATH`, next to this binary, the standard library
    /// directories, then the `onnxruntime` package of the `python3` on PATH.
    #[arg(long = "onnxruntime_library")]
    pub onnxruntime_library: Option<PathBuf>,
    /// Whether onnxruntime's idle intra-op threads spin waiting for work
    /// (`session.intra_op.allow_spinning`). On by default: in `./bench.sh`
    /// (ViT-B/16, 2 cores) it served the blog's request faster at every
    /// concurrency than with it off, although its threads share the cores
    /// the instances preprocess on (BENCHMARKS.md).
    #[arg(long = "onnxruntime_intra_op_spinning", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub onnxruntime_intra_op_spinning: bool,
    /// Whether a run that starts while another is under way goes side by
    /// side with it on a second, single-threaded onnxruntime session
    /// (one run per core at most) rather than waiting its turn. On by
    /// default: with requests overlapping, single-threaded runs on each
    /// core get more done than multi-threaded runs in turn (BENCHMARKS.md).
    /// The second session costs one more copy of the weights in memory.
    /// Without `--enable_batching` only: batches take turns on the
    /// multi-threaded session.
    #[arg(long = "onnxruntime_lanes", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub onnxruntime_lanes: bool,
    /// Merge concurrent inferences into batched model runs (host path).
    #[arg(long = "enable_batching", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub enable_batching: bool,
    /// TF Serving's batching parameters in text format; missing fields take
    /// TF Serving's defaults.
    #[arg(long = "batching_parameters_file")]
    pub batching_parameters_file: Option<PathBuf>,
    /// Guest time one request may take before it is stopped (504).
    #[arg(long = "rest_api_timeout_in_ms", default_value_t = 30_000)]
    pub rest_api_timeout_in_ms: u64,
    /// Linear memory one component instance may use, in MiB. ViT-B/16 needs
    /// about 1 GiB in the guest.
    #[arg(long = "max_instance_memory_mb", default_value_t = DEFAULT_MAX_INSTANCE_MEMORY_MB)]
    pub max_instance_memory_mb: usize,
    /// Requests one component instance answers before it is discarded and
    /// a fresh one instantiated for the next (0 = no limit). 1 runs every
    /// request in a new instance, as Spin and `wasmtime serve` do.
    #[arg(long = "max_requests_per_instance", default_value_t = 0)]
    pub max_requests_per_instance: u64,
    /// Requests per model version that may wait for a busy instance; more
    /// are refused at once with 503 and `Retry-After`.
    #[arg(long = "max_queued_requests", default_value_t = 32)]
    pub max_queued_requests: usize,
    /// Largest request body accepted, in bytes.
    #[arg(long = "max_request_bytes", default_value_t = 64 << 20)]
    pub max_request_bytes: usize,
    // Hostile input and slow clients: each limit is a flag with a default.
    // The request limits reach the component as VITRINE_* environment
    // variables (see `limits::guest_env`).
    /// Time a REST client has to send a request's headers, in ms, counted
    /// from the connection's start or the previous reply (so also how long
    /// an idle keep-alive connection stays open); past it the connection is
    /// closed. 0: no limit.
    #[arg(long = "rest_api_header_read_timeout_in_ms", default_value_t = 10_000)]
    pub rest_api_header_read_timeout_in_ms: u64,
    /// Time a REST client has to send a request's whole body once its
    /// headers are in, in ms; past it the request gets 408 and the
    /// connection is closed. Never holds an instance: bodies are read before
    /// a request is queued. 0: no limit.
    #[arg(long = "rest_api_body_read_timeout_in_ms", default_value_t = 30_000)]
    pub rest_api_body_read_timeout_in_ms: u64,
    /// Time a gRPC client has to send the HTTP/2 connection preface after
    /// connecting, and to finish each frame once its first byte is in, in
    /// ms; past it the connection is closed. A connection idle between
    /// frames is kept (keep-alive pings cover it). 0: no limit.
    #[arg(long = "grpc_read_timeout_in_ms", default_value_t = 10_000)]
    pub grpc_read_timeout_in_ms: u64,
    /// Images one request may carry (REST `instances`, KServe v2 batch,
    /// gRPC `string_val`); more get 400 / INVALID_ARGUMENT.
    #[arg(long = "max_instances_per_request", default_value_t = vitrine_component::api::DEFAULT_MAX_INSTANCES,
          value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u64).range(1..), |n| n as usize))]
    pub max_instances_per_request: usize,
    /// Largest image accepted, in pixels (width x height), read from its
    /// header before it is decoded; larger ones get 400.
    #[arg(long = "max_image_pixels", default_value_t = vitrine_component::preprocess::DEFAULT_MAX_IMAGE_PIXELS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_image_pixels: u64,
    /// Largest image width or height accepted, in pixels; larger get 400.
    #[arg(long = "max_image_dimension", default_value_t = vitrine_component::preprocess::DEFAULT_MAX_IMAGE_DIMENSION,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_image_dimension: u32,
    /// Deepest nesting of JSON arrays and objects in a request body (at most
    /// 127, serde_json's own limit); deeper gets 400 before it is parsed.
    #[arg(long = "max_json_depth", default_value_t = vitrine_component::api::DEFAULT_MAX_JSON_DEPTH,
          value_parser = clap::builder::TypedValueParser::map(
              clap::value_parser!(u64).range(1..=vitrine_component::api::MAX_JSON_DEPTH_CEILING as u64),
              |n| n as usize))]
    pub max_json_depth: usize,
    /// Which demo model to write when no `--model_base_path` is given.
    #[arg(long = "demo_model", value_enum, default_value_t = DemoSize::Base)]
    pub demo_model: DemoSize,
    /// The component to run instead of the one built into this binary.
    #[arg(long = "component")]
    pub component: Option<PathBuf>,
    /// Where compiled components and the demo model are cached.
    #[arg(long = "cache_dir", env = "VITRINE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// On SIGTERM, how long in-flight requests may take to finish before exit.
    #[arg(long = "drain_timeout_seconds", default_value_t = 30)]
    pub drain_timeout_seconds: u64,
    /// Check the flags and the model repository, print the resolved
    /// configuration and exit without serving.
    #[arg(long = "check-config", alias = "check_config")]
    pub check_config: bool,
    /// A `ModelServerConfig` in protobuf text format listing the models to
    /// serve (`model_config_list { config { ... } }`); replaces
    /// `--model_name` and `--model_base_path`.
    #[arg(long = "model_config_file")]
    pub model_config_file: Option<PathBuf>,
    /// Seconds between reads of `--model_config_file`; a changed file is
    /// applied like a reload request. 0 reads it only at start.
    #[arg(long = "model_config_file_poll_wait_seconds", default_value_t = 0)]
    pub model_config_file_poll_wait_seconds: u64,
    /// Seconds between looks at the base paths for new or removed versions.
    /// 0 looks only when a model is configured (until what is there has
    /// settled).
    #[arg(long = "file_system_poll_wait_seconds", default_value_t = 1)]
    pub file_system_poll_wait_seconds: u64,
    /// Run warm-up requests before a version is AVAILABLE: those in
    /// `<version>/assets.extra/` on every instance, and one synthetic image
    /// on the first.
    #[arg(long = "enable_model_warmup", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub enable_model_warmup: bool,
    /// Let a config assign a new version label to a version that is not
    /// loaded yet (requests through it get 503 until it is).
    #[arg(long = "allow_version_labels_for_unavailable_models", default_value_t = false,
          action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allow_version_labels_for_unavailable_models: bool,
    /// Answer `POST /v1/admin/reload-config` (TF Serving's
    /// `HandleReloadConfigRequest` over REST). Off by default: anyone who
    /// reaches the REST port could otherwise change what is served.
    #[arg(long = "enable_admin_api", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub enable_admin_api: bool,
}

#[derive(Debug, Args)]
pub struct DemoModelArgs {
    /// Version folder to write, e.g. `models/hf-vit/1`.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = DemoSize::Base)]
    pub size: DemoSize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct PreinitArgs {
    /// The version folder to load: `model.onnx`, `config.json`,
    /// `preprocessor_config.json`.
    #[arg(long)]
    pub model: PathBuf,
    /// Where to write the pre-initialized component.
    #[arg(long)]
    pub out: PathBuf,
    /// The component to pre-initialize; defaults to the one built into this
    /// binary (which imports `wasi:nn`: for Spin, pass the plain build that
    /// `spin build` writes).
    #[arg(long)]
    pub component: Option<PathBuf>,
    /// The model name the component answers to.
    #[arg(long = "model_name", default_value = "hf-vit")]
    pub model_name: String,
    /// The version number the component reports.
    #[arg(long = "model_version", default_value_t = 1)]
    pub model_version: u64,
}

#[derive(Debug, Args)]
pub struct BenchNativeArgs {
    /// A version folder: `model.onnx`, `config.json`, `preprocessor_config.json`.
    #[arg(long)]
    pub model: PathBuf,
    /// Threads per model run (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Timed runs, after two untimed ones.
    #[arg(long, default_value_t = 20)]
    pub iterations: usize,
    /// Images per run.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

#[derive(Debug, Args)]
pub struct BenchWasmArgs {
    /// A version folder: `model.onnx`, `config.json`, `preprocessor_config.json`.
    #[arg(long)]
    pub model: PathBuf,
    /// Timed runs, after two untimed ones.
    #[arg(long, default_value_t = 20)]
    pub iterations: usize,
    /// An image whose decoding and preprocessing in wasm to time as well
    /// (ten times `--iterations` runs), as the component does it per request.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// The `vitrine-bench-wasm` command component; defaults to where
    /// `cargo build --release --target wasm32-wasip2 -p vitrine-bench-wasm
    /// --target-dir $VITRINE_WASM_TARGET_DIR` (else `$CARGO_TARGET_DIR/wasm-component`) writes it.
    #[arg(long)]
    pub program: Option<PathBuf>,
    #[arg(long, env = "VITRINE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The component to compile instead of the built-in one.
    #[arg(long)]
    pub component: Option<PathBuf>,
    #[arg(long, env = "VITRINE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Drops `serve` flags this server does not know, with a warning, so TF
/// Serving deployments keep working. TF Serving flags are always
/// `--name=value`, so dropping one argument is exact.
pub fn drop_unknown_serve_flags(args: Vec<String>) -> (Vec<String>, Vec<String>) {
    let is_serve = args.get(1).map(String::as_str) == Some("serve");
    if !is_serve {
        return (args, Vec::new());
    }
    let cli = Cli::command();
    let known: Vec<String> = cli
        .find_subcommand("serve")
        .map(|serve| {
            serve
                .get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string))
                .chain(["help".to_string(), "version".to_string()])
                .collect()
        })
        .unwrap_or_default();
    let mut kept = Vec::with_capacity(args.len());
    let mut dropped = Vec::new();
    for (i, arg) in args.into_iter().enumerate() {
        let name = arg
            .strip_prefix("--")
            .map(|a| a.split('=').next().unwrap_or_default().to_string());
        match name {
            Some(name) if i > 1 && !name.is_empty() && !known.contains(&name) => dropped.push(arg),
            _ => kept.push(arg),
        }
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn blog_args_parse_and_unknown_flags_are_dropped() {
        let args = strings(&[
            "vitrine",
            "serve",
            "--port=8500",
            "--rest_api_port=8501",
            "--model_name=hf-vit",
            "--model_base_path=/models/hf-vit",
            "--tensorflow_inter_op_parallelism=2",
            "--enable_model_warmup=false",
            "--file_system_poll_wait_seconds=30",
            "--tensorflow_session_parallelism=1",
            "--xla_cpu_compilation_enabled",
        ]);
        let (kept, dropped) = drop_unknown_serve_flags(args);
        assert_eq!(
            dropped,
            strings(&[
                "--tensorflow_session_parallelism=1",
                "--xla_cpu_compilation_enabled"
            ])
        );
        let cli = Cli::try_parse_from(kept).expect("parses");
        let Command::Serve(s) = cli.command else {
            panic!("serve expected")
        };
        assert_eq!(
            (s.grpc_port, s.rest_api_port, s.inter_op_parallelism),
            (8500, 8501, 2)
        );
        assert_eq!(s.model_name, "hf-vit");
        assert_eq!(s.model_base_path, Some(PathBuf::from("/models/hf-vit")));
        assert!(!s.enable_model_warmup);
        assert_eq!(s.file_system_poll_wait_seconds, 30);
    }

    #[test]
    fn boolean_flags_take_tf_serving_spellings() {
        for (flag, want) in [
            ("--enable_model_warmup", true),
            ("--enable_model_warmup=true", true),
            ("--enable_model_warmup=false", false),
        ] {
            let cli = Cli::try_parse_from(["vitrine", "serve", flag]).expect(flag);
            let Command::Serve(s) = cli.command else {
                panic!("serve expected")
            };
            assert_eq!(s.enable_model_warmup, want, "{flag}");
        }
        let cli = Cli::try_parse_from(["vitrine", "serve"]).expect("defaults");
        let Command::Serve(s) = cli.command else {
            panic!("serve expected")
        };
        assert!(s.enable_model_warmup && !s.enable_admin_api);
        assert!(!s.allow_version_labels_for_unavailable_models);
        assert_eq!(
            (
                s.file_system_poll_wait_seconds,
                s.model_config_file_poll_wait_seconds
            ),
            (1, 0)
        );
    }
}
