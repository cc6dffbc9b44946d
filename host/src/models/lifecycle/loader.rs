//! Turns one version folder into a warm pool: compiles its component (off
//! the request path, cached), loads the model natively on the host path,
//! creates and warms up every instance.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::component::{Component, Linker};

use crate::engines::native::{self, NativeOptions};
use crate::models::repository::{self};
use crate::models::warmup;
use crate::runtime::engine;
use crate::runtime::pool::{Budgets, HostState, InstancePool, Servable, Timing, WarmupCall};

/// Everything needed to turn a version folder into a warm pool.
pub struct Loader {
    pub engine: wasmtime::Engine,
    pub linker: Linker<HostState>,
    /// `--component`, or the built-in one: for versions without their own.
    pub default_component: Component,
    pub cache_dir: PathBuf,
    pub instances: usize,
    pub budgets: Budgets,
    pub guest_runtime: tokio::runtime::Handle,
    /// `--enable_model_warmup`.
    pub warmup: bool,
    /// The host path: each version's model loaded natively and lent to its
    /// instances through `wasi:nn`; `None` runs it in the guest.
    pub native: Option<NativeOptions>,
}

impl Loader {
    /// Compiles, instantiates and warms up one version. Nothing here runs on
    /// a request's path.
    pub(super) async fn load(
        &self,
        model: &str,
        version: u64,
        dir: &Path,
    ) -> anyhow::Result<Arc<InstancePool>> {
        let prepared = {
            let (dir, warm) = (dir.to_path_buf(), self.warmup);
            tokio::task::spawn_blocking(move || prepare(&dir, warm)).await??
        };
        let component = match prepared.component {
            Some(wasm) => {
                tracing::info!(
                    "model {model} version {version} brings its own {} ({} KB); compiling it in the background",
                    repository::COMPONENT_FILE,
                    wasm.len() >> 10
                );
                let (engine, cache) = (self.engine.clone(), self.cache_dir.clone());
                tokio::task::spawn_blocking(move || engine::load_component(&engine, &wasm, &cache))
                    .await?
                    .with_context(|| format!("its {} is unusable", repository::COMPONENT_FILE))?
            }
            None => self.default_component.clone(),
        };
        let graph = match &self.native {
            Some(options) if imports_wasi_nn(&self.engine, &component) => {
                Some(native::load_shared(dir, model, version, options.clone()).await?)
            }
            Some(_) => {
                // A Spin build or a pre-initialized one: a native copy of
                // the model would only take memory.
                tracing::info!(
                    "model {model} version {version}: its component does not import wasi:nn, so the model runs in the guest"
                );
                None
            }
            None => None,
        };
        let servable = Servable {
            name: model.to_string(),
            version,
            dir: dir.to_path_buf(),
            graph,
        };
        let call = if self.warmup {
            WarmupCall::Inference
        } else {
            WarmupCall::LoadOnly
        };
        let pool = InstancePool::start(
            &self.linker,
            &component,
            servable,
            self.instances,
            self.budgets.clone(),
            call,
            self.guest_runtime.clone(),
        )
        .await?;
        if !prepared.warmup.is_empty() {
            run_warmup(&pool, model, version, &prepared.warmup, self.instances).await?;
            tracing::info!(
                "model {model} version {version}: ran {} warm-up requests from assets.extra on each of {} instances",
                prepared.warmup.len(),
                self.instances.max(1)
            );
        }
        Ok(pool)
    }
}

/// Whether `component` can borrow the host's graph (the host path).
fn imports_wasi_nn(engine: &wasmtime::Engine, component: &Component) -> bool {
    component
        .component_type()
        .imports(engine)
        .any(|(name, _)| name.starts_with("wasi:nn/"))
}

/// What a version folder brings besides the model: read before loading.
struct Prepared {
    component: Option<Vec<u8>>,
    warmup: Vec<warmup::WarmupRequest>,
}

fn prepare(dir: &Path, warm: bool) -> anyhow::Result<Prepared> {
    let listing = repository::listing(dir)
        .with_context(|| format!("cannot read the version folder {}", dir.display()))?;
    let missing = listing.missing();
    if !missing.is_empty() {
        anyhow::bail!(
            "the version folder lacks {}; a version needs {}",
            missing.join(", "),
            repository::REQUIRED_FILES.join(", ")
        );
    }
    let component_path = dir.join(repository::COMPONENT_FILE);
    let component = if component_path.is_file() {
        Some(
            std::fs::read(&component_path)
                .with_context(|| format!("cannot read {}", component_path.display()))?,
        )
    } else {
        None
    };
    let warmup = if warm {
        warmup::requests(dir).context("unusable warm-up requests in assets.extra")?
    } else {
        Vec::new()
    };
    Ok(Prepared { component, warmup })
}

/// Runs every warm-up request once on every instance: `instances` copies at
/// once take every instance's permit, so each lands on a different one.
async fn run_warmup(
    pool: &Arc<InstancePool>,
    model: &str,
    version: u64,
    requests: &[warmup::WarmupRequest],
    instances: usize,
) -> anyhow::Result<()> {
    let path = format!("http://localhost/v1/models/{model}/versions/{version}:predict");
    for request in requests {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..instances.max(1) {
            let (pool, path, body) = (pool.clone(), path.clone(), request.body.clone());
            calls.spawn(async move {
                let req = hyper::Request::post(path)
                    .header("content-type", "application/json")
                    .body(Full::new(body))?;
                let response = pool
                    .handle(req, Timing::Untimed)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let status = response.status();
                let body: Bytes = response.into_body().collect().await?.to_bytes();
                anyhow::Ok((status, body))
            });
        }
        while let Some(result) = calls.join_next().await {
            let (status, body) =
                result?.with_context(|| format!("warm-up request {} failed", request.source))?;
            if !status.is_success() {
                let message = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                anyhow::bail!(
                    "warm-up request {} failed with {}: {message}",
                    request.source,
                    status.as_u16()
                );
            }
        }
    }
    Ok(())
}

/// Demo models mark themselves in `config.json` (`"vitrine": {"random_weights": true}`).
pub(super) fn has_random_weights(dir: &Path) -> bool {
    std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|c| c["vitrine"]["random_weights"] == true)
}
