//! Warm, reusable component instances for one model version.
//!
//! Unlike `wasmtime serve`, which instantiates the component (and so reloads
//! the model) for every request, an instance here loads the model once and
//! then answers request after request. A guest trap discards the instance
//! and a fresh one takes its place.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Where the version folder appears inside the sandbox.
pub const GUEST_MODEL_DIR: &str = "/model";

/// Per-instance host state.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

/// The linker every instance is created from: WASI plus `wasi:http`.
pub fn linker(engine: &wasmtime::Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// Identifies what an instance serves; passed to the guest as environment.
#[derive(Debug, Clone)]
pub struct Servable {
    pub name: String,
    pub version: u64,
    pub dir: PathBuf,
}

struct Instance {
    store: Store<HostState>,
    proxy: Proxy,
}

/// A bounded set of instances of one component for one servable.
pub struct InstancePool {
    pre: ProxyPre<HostState>,
    servable: Servable,
    idle: Mutex<Vec<Instance>>,
    permits: Arc<Semaphore>,
}

pub type Response = hyper::Response<HyperOutgoingBody>;

impl InstancePool {
    /// Creates `size` instances and warms each one up (model load plus one
    /// inference) before returning, so the first request pays nothing.
    pub async fn start(
        linker: &Linker<HostState>,
        component: &Component,
        servable: Servable,
        size: usize,
    ) -> anyhow::Result<Arc<InstancePool>> {
        let pre = ProxyPre::new(linker.instantiate_pre(component)?)
            .map_err(anyhow::Error::from)
            .context("the component does not export wasi:http/incoming-handler")?;
        let pool = Arc::new(InstancePool {
            pre,
            servable,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Arc::new(Semaphore::new(size.max(1))),
        });
        for _ in 0..size.max(1) {
            let instance = pool.instantiate().await?;
            let instance = pool.warm_up(instance).await?;
            pool.put_back(instance);
        }
        Ok(pool)
    }

    pub fn servable(&self) -> &Servable {
        &self.servable
    }

    async fn instantiate(&self) -> anyhow::Result<Instance> {
        let s = &self.servable;
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stderr()
            .env("VITRINE_MODEL_NAME", &s.name)
            .env("VITRINE_MODEL_VERSION", s.version.to_string())
            .env("VITRINE_MODEL_DIR", GUEST_MODEL_DIR)
            .preopened_dir(&s.dir, GUEST_MODEL_DIR, FsPerms::ReadOnly)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot open {}", s.dir.display()))?;
        let state = HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(self.pre.engine(), state);
        let proxy = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(anyhow::Error::from)
            .context("the component does not instantiate")?;
        Ok(Instance { store, proxy })
    }

    async fn warm_up(&self, instance: Instance) -> anyhow::Result<Instance> {
        let req = hyper::Request::post("http://localhost/vitrine/warmup")
            .body(Full::new(Bytes::new()))?;
        let (instance, response) = Self::call(instance, req).await;
        let response = response?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        let instance = instance
            .await??
            .context("the instance trapped during warm-up")?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            bail!("{message}");
        }
        Ok(instance)
    }

    fn put_back(&self, instance: Instance) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(instance);
        }
    }

    fn take_idle(&self) -> Option<Instance> {
        self.idle.lock().ok().and_then(|mut idle| idle.pop())
    }

    /// Runs one request on an instance. Returns the response and a handle
    /// that yields the instance back once the guest has finished (the body
    /// may still be streaming when the response arrives).
    async fn call(
        mut instance: Instance,
        req: hyper::Request<Full<Bytes>>,
    ) -> (
        tokio::task::JoinHandle<anyhow::Result<Option<Instance>>>,
        anyhow::Result<Response>,
    ) {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let prepared = (|| {
            let req = req.map(|b| {
                b.map_err(
                    |never: std::convert::Infallible| -> wasmtime_wasi_http::Error {
                        match never {}
                    },
                )
            });
            let req = instance
                .store
                .data_mut()
                .http()
                .new_incoming_request(Scheme::Http, req)?;
            let out = instance
                .store
                .data_mut()
                .http()
                .new_response_outparam(sender)?;
            anyhow::Ok((req, out))
        })();
        let task = tokio::spawn(async move {
            let (req, out) = prepared?;
            let result = instance
                .proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut instance.store, req, out)
                .await;
            match result {
                Ok(()) => Ok(Some(instance)),
                Err(trap) => {
                    tracing::error!("guest trapped, discarding the instance: {trap:?}");
                    Ok(None)
                }
            }
        });
        let response = match receiver.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(anyhow::anyhow!("guest returned an error response: {e:?}")),
            Err(_) => Err(anyhow::anyhow!(
                "the guest failed before sending a response"
            )),
        };
        (task, response)
    }

    /// Answers `req` with a warm instance, waiting for one if all are busy.
    pub async fn handle(
        self: &Arc<Self>,
        req: hyper::Request<Full<Bytes>>,
    ) -> anyhow::Result<Response> {
        let permit: OwnedSemaphorePermit = self.permits.clone().acquire_owned().await?;
        let instance = match self.take_idle() {
            Some(i) => i,
            None => self.instantiate().await?,
        };
        let (task, response) = Self::call(instance, req).await;
        let pool = self.clone();
        // The instance goes back to the pool (and the permit is released)
        // only when the guest is done, not when the response starts.
        tokio::spawn(async move {
            match task.await {
                Ok(Ok(Some(instance))) => pool.put_back(instance),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::error!("request setup failed: {e:#}"),
                Err(e) => tracing::error!("instance task failed: {e}"),
            }
            drop(permit);
        });
        response
    }
}
