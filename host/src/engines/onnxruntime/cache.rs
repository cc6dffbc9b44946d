//! onnxruntime's optimised copy of a model, kept in the cache folder so
//! later loads of the same file skip the hardware-independent optimisations.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use super::Runtime;

/// Optimised copies kept in the cache; the least recently used go first.
const CACHED_MODELS: usize = 8;

/// `model_onnx` with onnxruntime's hardware-independent graph optimisations
/// (level "extended": constant folding, fused attention, layer norm, GELU)
/// applied, written once into `cache` and reused by later loads: loading it
/// skips most of a session's build time (for ViT-B/16, 1.3 s instead of
/// 3.2 s). The layout optimisations of level "all" depend on the CPU, so
/// they are left to each load. Keyed by the file's path, size and
/// modification time (a version folder is immutable) and the library's
/// build.
pub(super) fn optimised_copy(
    runtime: &Runtime,
    model_onnx: &Path,
    cache: &Path,
    threads: usize,
) -> anyhow::Result<PathBuf> {
    use sha2::Digest;
    let canonical = model_onnx.canonicalize()?;
    let meta = std::fs::metadata(&canonical)?;
    let modified = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let key = format!(
        "{}\n{}\n{modified}\n{}",
        canonical.display(),
        meta.len(),
        ort::info()
    );
    let digest = sha2::Sha256::digest(key.as_bytes());
    let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let path = cache.join(format!("{name}.onnx"));
    if let Ok(file) = std::fs::File::options().write(true).open(&path) {
        // Marks it recently used, for the pruning below.
        let _ = file.set_modified(std::time::SystemTime::now());
        return Ok(path);
    }
    std::fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
    // Written under a name unique to this load and renamed: loads of the
    // same file at once (two models sharing a version folder, or two
    // servers on one cache) never see half a file.
    static LOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let load = LOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let partial = cache.join(format!(".{name}.{}.{load}.partial", std::process::id()));
    let written = Session::builder(&runtime.environment)
        .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::Level2)?))
        .and_then(|b| Ok(b.with_intra_threads(threads)?))
        .and_then(|b| Ok(b.with_optimized_model_path(&partial)?))
        .and_then(|mut b| b.commit_from_file(&canonical));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e.into());
    }
    std::fs::rename(&partial, &path)?;
    prune(cache);
    Ok(path)
}

/// Keeps the [`CACHED_MODELS`] most recently used optimised models.
fn prune(cache: &Path) {
    let mut models: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(cache)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "onnx"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    models.sort_by_key(|m| std::cmp::Reverse(m.0));
    for (_, old) in models.into_iter().skip(CACHED_MODELS) {
        let _ = std::fs::remove_file(old);
    }
}
