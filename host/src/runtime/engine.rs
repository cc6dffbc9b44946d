//! wasmtime setup and the compiled-component cache.
//!
//! Cranelift needs tens of seconds for the tract component, so compiled code
//! is kept as `.cwasm` keyed by the component's hash and the engine's
//! compatibility hash; a restart deserializes it in milliseconds.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use crate::config::cli::CompileArgs;
use crate::runtime::cwasm::{self, Cached};
use crate::runtime::digests;

/// The component built into this binary by `build.rs`.
pub static BUILTIN_COMPONENT: &[u8] = include_bytes!(env!("VITRINE_COMPONENT_WASM"));

/// How often the engine's epoch advances: the resolution of guest deadlines.
pub const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// The largest initialized memory range that always gets a copy-on-write
/// image (wasmtime's `memory_guaranteed_dense_image_size`; 16 MiB by
/// default). `wasmtime serve` takes the same as `-O
/// memory-guaranteed-dense-image-size=2147483648`.
pub const DENSE_IMAGE_BYTES: u64 = 2 << 30;

pub fn new_engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Deadlines without fuel's per-instruction cost.
    config.epoch_interruption(true);
    // A pre-initialized component's heap has gaps where wizer dropped the
    // zeroed blocks freed while the model loaded, and by default wasmtime
    // makes no copy-on-write image of an initialized range less than half
    // non-zero: every instance then copied ViT-B/16's weights into its own
    // memory (344 MB of anonymous RSS each, measured). Up to this size the
    // image is always made, so instances map the `.cwasm`'s pages and share
    // them; the cost is the gaps' zeros in the `.cwasm` on disk.
    config.memory_guaranteed_dense_image_size(DENSE_IMAGE_BYTES);
    Ok(Engine::new(&config)?)
}

/// Advances `engine`'s epoch every [`EPOCH_TICK`] for the life of the process.
pub fn start_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!("cannot start the deadline ticker: {e}"));
}

/// `$VITRINE_CACHE_DIR`, else the user's cache folder, else `./.vitrine-cache`.
pub fn cache_dir(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| dirs::cache_dir().map(|d| d.join("vitrine")))
        .unwrap_or_else(|| PathBuf::from(".vitrine-cache"))
}

/// Reads the component to serve: a file, or the built-in one.
pub fn component_bytes(path: Option<&Path>) -> anyhow::Result<std::borrow::Cow<'static, [u8]>> {
    match path {
        Some(p) => Ok(std::fs::read(p)
            .with_context(|| format!("cannot read component {}", p.display()))?
            .into()),
        None => Ok(BUILTIN_COMPONENT.into()),
    }
}

/// Where [`load_component`] caches `wasm` compiled for `engine`.
pub fn cache_path(engine: &Engine, wasm: &[u8], dir: &Path) -> PathBuf {
    cache_path_of(engine, &digests::of_bytes(wasm), dir)
}

fn cache_path_of(engine: &Engine, sha: &digests::Sha, dir: &Path) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    // Shapes the compiled memory images but is not in wasmtime's hash.
    DENSE_IMAGE_BYTES.hash(&mut hasher);
    dir.join("components").join(format!(
        "{}-{:016x}.cwasm",
        digests::hex(&sha[..16]),
        hasher.finish()
    ))
}

/// Loads the component at `path` (the built-in one if `None`) and says
/// where its compiled copy is cached. A file is read only if that copy is
/// missing: its hash is remembered in the cache ([`digests`]).
pub fn load_component_from(
    engine: &Engine,
    path: Option<&Path>,
    cache: &Path,
) -> anyhow::Result<(Component, PathBuf)> {
    let Some(path) = path else {
        let cwasm = cache_path(engine, BUILTIN_COMPONENT, cache);
        return Ok((
            cached_or_compiled(engine, BUILTIN_COMPONENT, &cwasm)?,
            cwasm,
        ));
    };
    let (sha, read) = digests::of_file(path, cache)
        .with_context(|| format!("cannot read component {}", path.display()))?;
    let cwasm = cache_path_of(engine, &sha, cache);
    if let Some(component) = cached(engine, &cwasm) {
        return Ok((component, cwasm));
    }
    let wasm = match read {
        Some(wasm) => wasm,
        None => std::fs::read(path)
            .with_context(|| format!("cannot read component {}", path.display()))?,
    };
    Ok((compile(engine, &wasm, &cwasm)?, cwasm))
}

/// Loads `wasm`, compiling it only if the cache has no usable copy.
pub fn load_component(engine: &Engine, wasm: &[u8], cache: &Path) -> anyhow::Result<Component> {
    cached_or_compiled(engine, wasm, &cache_path(engine, wasm, cache))
}

/// `wasm` from its compiled copy at `cwasm`, compiling it there if needed.
fn cached_or_compiled(engine: &Engine, wasm: &[u8], cwasm: &Path) -> anyhow::Result<Component> {
    match cached(engine, cwasm) {
        Some(component) => Ok(component),
        None => compile(engine, wasm, cwasm),
    }
}

/// The compiled component at `path`, if it is there and trustworthy.
fn cached(engine: &Engine, path: &Path) -> Option<Component> {
    match cwasm::read_verified(path) {
        Cached::Verified => {
            // SAFETY: the file was written by `precompile_component` for an
            // engine with the same compatibility hash (part of its name), and
            // its bytes match the checksum written beside them.
            match unsafe { Component::deserialize_file(engine, path) } {
                Ok(component) => {
                    tracing::debug!("loaded compiled component from {}", path.display());
                    return Some(component);
                }
                Err(e) => tracing::warn!(
                    "ignoring unusable compiled component {}: {e:#}",
                    path.display()
                ),
            }
        }
        Cached::Unusable(why) => tracing::warn!(
            "not using the compiled component {}: {why}; compiling it again",
            path.display()
        ),
        Cached::Missing => {}
    }
    None
}

/// Compiles `wasm` and caches it at `path`.
fn compile(engine: &Engine, wasm: &[u8], path: &Path) -> anyhow::Result<Component> {
    let started = Instant::now();
    tracing::info!(
        "compiling the component with Cranelift ({} MB); this takes up to a minute once, then it is cached in {}",
        wasm.len() >> 20,
        path.display()
    );
    let spinner = indicatif::ProgressBar::new_spinner().with_message("compiling component");
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let compiled = engine.precompile_component(wasm);
    spinner.finish_and_clear();
    let compiled = compiled
        .map_err(anyhow::Error::from)
        .context("the component does not compile")?;
    tracing::info!("compiled in {:.1} s", started.elapsed().as_secs_f64());
    if let Err(e) = cwasm::write_verified(path, &compiled) {
        tracing::warn!(
            "cannot cache the compiled component at {}: {e:#}; serving anyway, but every start compiles it again: free space there or point --cache_dir at a writable folder",
            path.display()
        );
    }
    // SAFETY: the bytes come from `precompile_component` on this engine.
    Ok(unsafe { Component::deserialize(engine, &compiled) }?)
}

pub fn compile_command(args: CompileArgs) -> anyhow::Result<()> {
    let engine = new_engine()?;
    let cache = cache_dir(args.cache_dir.as_deref());
    // Through the file's remembered hash, as `serve` loads it, so a cache
    // warmed here (an image build) also spares `serve` reading the file.
    let (_, cwasm) = load_component_from(&engine, args.component.as_deref(), &cache)?;
    println!("{}", cwasm.display());
    Ok(())
}
