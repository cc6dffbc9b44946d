//! `vitrine bench-wasm`: the bare model under the guest's tract, compiled to
//! wasm, in the server's wasmtime engine but with no server around it.
//!
//! It runs the `vitrine-bench-wasm` WASI command (`bench/tract-wasm/`),
//! which loads the version folder with the component's own loader and times
//! batch-1 inferences. The engine is the one `serve` makes (epoch
//! interruption on, the epoch ticker running, a far deadline on the store,
//! the same memory limit), so the served guest path differs from this only
//! by what serving adds. With `--image` it also times the component's
//! decoding and preprocessing of that image in the same engine. Prints the
//! command's JSON line with the compile, instantiate and host-side figures
//! added.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::config::cli::{BenchWasmArgs, DEFAULT_MAX_INSTANCE_MEMORY_MB};
use crate::runtime::engine::{self, EPOCH_TICK};
use crate::runtime::pool::GUEST_MODEL_DIR;
use crate::tools::bench::peak_rss_mb;

/// The store's deadline: far beyond any run, as a request's is beyond its
/// inference, so epoch checks cost what they cost when serving.
const DEADLINE: Duration = Duration::from_secs(6 * 3600);

/// Where the guest sees `--image`'s folder.
const GUEST_IMAGE_DIR: &str = "/image";

/// The command's JSON line and nothing much more.
const STDOUT_CAPACITY: usize = 1 << 20;

struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

pub fn run(args: BenchWasmArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(bench(args))
}

async fn bench(args: BenchWasmArgs) -> anyhow::Result<()> {
    for file in ["model.onnx", "config.json", "preprocessor_config.json"] {
        let path = args.model.join(file);
        anyhow::ensure!(
            path.is_file(),
            "{} is missing; --model takes a version folder (`vitrine demo-model --out DIR` writes one)",
            path.display()
        );
    }
    let program = match args.program {
        Some(p) => p,
        None => default_program(),
    };
    let wasm = std::fs::read(&program).with_context(|| {
        format!(
            "cannot read the bench program {}; build it as ./bench.sh does (`cargo build --release \
             --target wasm32-wasip2 -p vitrine-bench-wasm --target-dir DIR`) and pass \
             --program DIR/wasm32-wasip2/release/vitrine-bench-wasm.wasm",
            program.display()
        )
    })?;

    let engine = engine::new_engine()?;
    engine::start_epoch_ticker(&engine);
    let cache = engine::cache_dir(args.cache_dir.as_deref());
    let cached = engine::cache_path(&engine, &wasm, &cache).is_file();
    let started = Instant::now();
    let component = {
        let (engine, cache) = (engine.clone(), cache.clone());
        tokio::task::spawn_blocking(move || engine::load_component(&engine, &wasm, &cache))
            .await??
    };
    let compile_s = started.elapsed().as_secs_f64();

    let mut linker: Linker<State> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // The program links the component's library whole, so it imports
    // wasi:http for the request handler it carries but never calls.
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    let stdout = MemoryOutputPipe::new(STDOUT_CAPACITY);
    let mut wasi = WasiCtx::builder();
    let mut argv = vec![
        "vitrine-bench-wasm".to_string(),
        GUEST_MODEL_DIR.to_string(),
        args.iterations.to_string(),
    ];
    if let Some(image) = &args.image {
        let (Some(dir), Some(name)) = (image.parent(), image.file_name()) else {
            bail!("--image {} names no file", image.display());
        };
        anyhow::ensure!(image.is_file(), "--image {} is not a file", image.display());
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        wasi.preopened_dir(dir, GUEST_IMAGE_DIR, FsPerms::ReadOnly)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot open {}", dir.display()))?;
        argv.push(format!("{GUEST_IMAGE_DIR}/{}", name.to_string_lossy()));
    }
    wasi.inherit_stderr()
        .stdout(stdout.clone())
        .args(&argv)
        .preopened_dir(&args.model, GUEST_MODEL_DIR, FsPerms::ReadOnly)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot open {}", args.model.display()))?;
    let state = State {
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
        table: ResourceTable::new(),
        limits: StoreLimitsBuilder::new()
            .memory_size(DEFAULT_MAX_INSTANCE_MEMORY_MB << 20)
            .build(),
    };
    let mut store = Store::new(&engine, state);
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline((DEADLINE.as_millis() / EPOCH_TICK.as_millis()) as u64);
    store.epoch_deadline_trap();

    let started = Instant::now();
    let command = Command::instantiate_async(&mut store, &component, &linker)
        .await
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!(
                "{} does not instantiate as a WASI command; is it the vitrine-bench-wasm build?",
                program.display()
            )
        })?;
    let instantiate_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let exit = command
        .wasi_cli_run()
        .call_run(&mut store)
        .await
        .map_err(anyhow::Error::from)
        .context("the bench program trapped")?;
    let run_s = started.elapsed().as_secs_f64();
    if exit.is_err() {
        bail!("the bench program failed; its message is above");
    }

    let out = stdout.contents();
    let line = String::from_utf8_lossy(&out);
    let line = line.lines().last().unwrap_or_default();
    let mut report: serde_json::Value = serde_json::from_str(line)
        .with_context(|| format!("the bench program printed {line:?}, not a JSON line"))?;
    if let Some(fields) = report.as_object_mut() {
        fields.insert("compile_s".into(), compile_s.into());
        fields.insert("compile_cached".into(), cached.into());
        fields.insert("instantiate_s".into(), instantiate_s.into());
        fields.insert("run_s".into(), run_s.into());
        fields.insert("peak_rss_mb".into(), peak_rss_mb().into());
    }
    println!("{report}");
    Ok(())
}

/// Where `cargo build --release --target wasm32-wasip2 -p vitrine-bench-wasm`
/// writes the program with the target dir `./bench.sh` gives it: the
/// component's own, so tract is compiled for wasm once for both.
fn default_program() -> PathBuf {
    let dir = std::env::var_os("VITRINE_WASM_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .filter(|d| !d.is_empty())
                .map(|d| Path::new(&d).join("wasm-component"))
        })
        .unwrap_or_else(|| PathBuf::from("target/wasm-component"));
    dir.join("wasm32-wasip2/release/vitrine-bench-wasm.wasm")
}
