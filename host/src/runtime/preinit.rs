//! `vitrine preinit`: a component with one model version already loaded.
//!
//! wasmtime-wizer instantiates the component with the version folder
//! preopened read-only at [`GUEST_MODEL_DIR`], calls its `wizer-initialize`
//! export (the component's `preinit` module), which loads and optimises the
//! model, and writes the instance's memory out as a new component. Every
//! instance of that component starts with the model in memory, so a runtime
//! that creates an instance per request (Spin, `wasmtime serve`, or
//! `vitrine serve --max_requests_per_instance=1`) skips the model load.

use std::time::{Duration, Instant};

use anyhow::Context;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx};
use wasmtime_wizer::Wizer;

use crate::config::cli::PreinitArgs;
use crate::runtime::engine;
use crate::runtime::pool::{self, GUEST_MODEL_DIR, HostState};

pub fn command(args: PreinitArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: PreinitArgs) -> anyhow::Result<()> {
    for file in ["model.onnx", "config.json", "preprocessor_config.json"] {
        let path = args.model.join(file);
        anyhow::ensure!(
            path.is_file(),
            "{} is missing; --model takes a version folder as `optimum-cli export onnx` writes it",
            path.display()
        );
    }
    let wasm = engine::component_bytes(args.component.as_deref())?;
    // No epoch deadlines here: loading ViT-B/16 takes as long as it takes.
    let mut config = Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config)?;
    let linker: Linker<HostState> = pool::linker(&engine)?;

    let mut wasi = WasiCtx::builder();
    wasi.inherit_stderr()
        .env("VITRINE_MODEL_NAME", &args.model_name)
        .env("VITRINE_MODEL_VERSION", args.model_version.to_string())
        .env("VITRINE_MODEL_DIR", GUEST_MODEL_DIR)
        .preopened_dir(&args.model, GUEST_MODEL_DIR, FsPerms::ReadOnly)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot open {}", args.model.display()))?;
    let mut store = Store::new(&engine, HostState::standalone(wasi.build()));
    // The snapshot reads the guest's whole memory in one call; the default
    // 128 MiB cap on guest-to-host copies would stop it for ViT-B/16.
    store.set_hostcall_fuel(usize::MAX);

    let started = Instant::now();
    let spinner = indicatif::ProgressBar::new_spinner().with_message(format!(
        "pre-initializing {} MB of component with {}: Cranelift compiles it (up to a minute), then it loads the model",
        wasm.len() >> 20,
        args.model.display()
    ));
    spinner.enable_steady_tick(Duration::from_millis(200));
    // Keeping the export: wizer 48 drops it from the core module but not
    // from the component's exports, which then fails to validate.
    let result = Wizer::new()
        .keep_init_func(true)
        .run_component(&mut store, &wasm, async |store, component| {
            let mut linker = linker.clone();
            stub_spin_imports(&mut linker, component)?;
            linker.instantiate_async(store, component).await
        })
        .await;
    spinner.finish_and_clear();
    let (snapshot, _) = result.map_err(anyhow::Error::from).context(
        "pre-initialization failed (the component's own message, if any, is above); \
         is --component a Vitrine component, and does --model load with `vitrine serve`?",
    )?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&args.out, &snapshot)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} MB, from a {} MB component) in {:.1} s: {} version {} loaded and optimised",
        args.out.display(),
        snapshot.len() >> 20,
        wasm.len() >> 20,
        started.elapsed().as_secs_f64(),
        args.model_name,
        args.model_version,
    );
    Ok(())
}

/// Defines every function of the component's `fermyon:spin/*` imports as an
/// error. Spin's build imports `fermyon:spin/variables`, which only Spin
/// provides; it is called per request, never while loading, so stubs let
/// that build be pre-initialized too. (wasmtime's
/// `define_unknown_imports_as_traps` would also stub WASI imports that the
/// linker satisfies only by semver matching, such as a newer
/// `wasi:cli/environment@0.2.x`.)
fn stub_spin_imports(
    linker: &mut Linker<HostState>,
    component: &wasmtime::component::Component,
) -> wasmtime::Result<()> {
    use wasmtime::component::types::ComponentItem;
    let engine = component.engine().clone();
    let ty = component.component_type();
    for (name, item) in ty.imports(&engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if !name.starts_with("fermyon:spin/") {
            continue;
        }
        let mut stubs = linker.instance(name)?;
        for (func, item) in instance.exports(&engine) {
            if let ComponentItem::ComponentFunc(_) = item.ty {
                let what = format!("{name}#{func}");
                stubs.func_new(func, move |_, _, _, _| {
                    wasmtime::bail!("{what} is Spin's and cannot be called while pre-initializing")
                })?;
            }
        }
    }
    Ok(())
}
