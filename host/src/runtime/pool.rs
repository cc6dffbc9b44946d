//! Warm, reusable component instances for one model version.
//!
//! Unlike `wasmtime serve`, which instantiates the component (and so reloads
//! the model) for every request, an instance here loads the model once and
//! then answers request after request. A guest trap discards the instance
//! and a fresh one takes its place.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};

use crate::engines::native::NativeModel;
use crate::runtime::engine::EPOCH_TICK;
use crate::runtime::nn::{self, NnState, NnView};
use crate::runtime::timeline::{EngineCall, Timeline};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder, Trap};
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
    nn: NnState,
    /// The engine call of the request running now, stamped by `wasi:nn`.
    engine_call: Option<EngineCall>,
    limits: StoreLimits,
}

impl HostState {
    /// State for an instance outside any pool, without `wasi:nn` graphs or
    /// memory limits (pre-initialization).
    #[cfg(feature = "preinit")]
    pub fn standalone(wasi: WasiCtx) -> HostState {
        HostState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            nn: NnState::default(),
            engine_call: None,
            limits: StoreLimits::default(),
        }
    }
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

/// The linker every instance is created from: WASI, `wasi:http` and
/// `wasi:nn`. A component that does not import `wasi:nn` links all the same.
pub fn linker(engine: &wasmtime::Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    nn::add_to_linker(&mut linker, |s: &mut HostState| NnView {
        table: &mut s.table,
        state: &s.nn,
        engine_call: &mut s.engine_call,
    })?;
    Ok(linker)
}

/// Identifies what an instance serves; passed to the guest as environment.
#[derive(Clone)]
pub struct Servable {
    pub name: String,
    pub version: u64,
    pub dir: PathBuf,
    /// The version's natively loaded graph, lent to the guest through
    /// `wasi:nn` (the host path); `None` runs the model in the guest.
    pub graph: Option<Arc<NativeModel>>,
}

impl Servable {
    /// The `wasi:nn` name of this version's graph.
    pub fn graph_name(&self) -> String {
        format!("{}/{}", self.name, self.version)
    }
}

struct Instance {
    store: Store<HostState>,
    proxy: Proxy,
    /// Requests answered, warm-up included.
    requests: u64,
}

/// What one instance may spend: the sandbox's budgets.
#[derive(Debug, Clone)]
pub struct Budgets {
    /// Guest time per request; past it the guest is interrupted.
    pub request_timeout: Duration,
    /// Guest time for warm-up, which includes loading the model.
    pub warmup_timeout: Duration,
    /// Linear memory per instance.
    pub max_memory_bytes: usize,
    /// Requests that may wait for a busy instance; past that they are
    /// refused at once rather than piling up.
    pub max_queued: usize,
    /// Requests an instance answers before it is discarded (0 = no limit);
    /// warm-up does not count.
    pub max_requests_per_instance: u64,
    /// The component's own request limits, as its environment.
    pub guest_env: Vec<(&'static str, String)>,
}

/// What proves a new instance works before it serves: both load the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmupCall {
    /// Load the model and run one synthetic image (`--enable_model_warmup`).
    Inference,
    /// Load the model only (asks for its metadata).
    LoadOnly,
}

/// Whether a call's phases go into `vitrine_request_phase_seconds`: an
/// inference's do, warm-up's and metadata's do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    Phases,
    Untimed,
}

/// When a timed call arrived and got its instance.
#[derive(Clone, Copy)]
struct Stamps {
    arrived: Instant,
    instance: Instant,
}

/// Why a request got no answer from the guest.
#[derive(Debug)]
pub enum CallError {
    /// The guest ran past its deadline and was stopped.
    Deadline(Duration),
    /// The guest trapped; details are in the log, not the reply.
    Trap,
    /// Every instance is busy and the queue is full.
    Overloaded { queued: usize },
    /// Anything else on the host side.
    Internal(anyhow::Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Deadline(d) => {
                write!(f, "the guest ran past its {} ms deadline", d.as_millis())
            }
            CallError::Trap => f.write_str("the guest trapped"),
            CallError::Overloaded { queued } => {
                write!(
                    f,
                    "all instances are busy and {queued} requests are already queued"
                )
            }
            CallError::Internal(e) => write!(f, "{e:#}"),
        }
    }
}

/// A bounded set of instances of one component for one servable.
pub struct InstancePool {
    pre: ProxyPre<HostState>,
    /// Guest code runs here, not on the front end's runtime: an inference
    /// holds its thread for seconds, and health probes must still answer.
    guest_runtime: tokio::runtime::Handle,
    servable: Servable,
    budgets: Budgets,
    warmup: WarmupCall,
    idle: Mutex<Vec<Instance>>,
    permits: Arc<Semaphore>,
    queued: AtomicUsize,
    /// Instances the pool keeps warm.
    size: usize,
}

/// A pool's occupancy now, for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub instances: usize,
    pub busy: usize,
    pub queued: usize,
}

pub type Response = hyper::Response<HyperOutgoingBody>;

impl InstancePool {
    /// Creates `size` instances, each with its model loaded, and runs one
    /// inference on the first, before returning: the first requests pay no
    /// load, and a version that cannot infer never serves.
    pub async fn start(
        linker: &Linker<HostState>,
        component: &Component,
        servable: Servable,
        size: usize,
        budgets: Budgets,
        warmup: WarmupCall,
        guest_runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<Arc<InstancePool>> {
        let pre = ProxyPre::new(linker.instantiate_pre(component)?)
            .map_err(anyhow::Error::from)
            .context("the component does not export wasi:http/incoming-handler")?;
        let pool = Arc::new(InstancePool {
            pre,
            guest_runtime,
            servable,
            budgets,
            warmup,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Arc::new(Semaphore::new(size.max(1))),
            queued: AtomicUsize::new(0),
            size: size.max(1),
        });
        // One inference proves the version serves, as TF Serving warms a
        // model once, not per session. The other instances only load: on the
        // host path they share the warmed graph; on the guest path a second
        // synthetic inference would cost a core for seconds (ViT-B/16: 1.4 s
        // per instance) and speeds up nothing but that instance's own first
        // request, which an instance per request never has.
        for i in 0..size.max(1) {
            pool.add_warm_instance(i == 0).await?;
        }
        Ok(pool)
    }

    pub fn servable(&self) -> &Servable {
        &self.servable
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            instances: self.size,
            busy: self.size.saturating_sub(self.permits.available_permits()),
            queued: self.queued.load(Ordering::Relaxed),
        }
    }

    async fn instantiate(&self) -> anyhow::Result<Instance> {
        let s = &self.servable;
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stderr()
            .env("VITRINE_MODEL_NAME", &s.name)
            .env("VITRINE_MODEL_VERSION", s.version.to_string())
            .env("VITRINE_MODEL_DIR", GUEST_MODEL_DIR)
            .envs(self.budgets.guest_env.as_slice())
            .preopened_dir(&s.dir, GUEST_MODEL_DIR, FsPerms::ReadOnly)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot open {}", s.dir.display()))?;
        let mut nn = NnState::default();
        if let Some(graph) = &s.graph {
            wasi.env("VITRINE_NN_GRAPH", s.graph_name());
            wasi.env("VITRINE_NN_ENGINE", graph.engine_name());
            nn.graph = Some((s.graph_name(), graph.clone()));
        }
        let state = HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            nn,
            engine_call: None,
            limits: StoreLimitsBuilder::new()
                .memory_size(self.budgets.max_memory_bytes)
                .build(),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        // Instantiation runs guest start code: give it the warm-up budget.
        store.set_epoch_deadline(ticks(self.budgets.warmup_timeout));
        store.epoch_deadline_trap();
        let proxy = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(anyhow::Error::from)
            .context("the component does not instantiate")?;
        Ok(Instance {
            store,
            proxy,
            requests: 0,
        })
    }

    /// Instantiates, runs the warm-up request, and leaves the instance idle.
    async fn add_warm_instance(self: &Arc<Self>, infer: bool) -> anyhow::Result<()> {
        let permit = self.permits.clone().acquire_owned().await?;
        let instance = self.instantiate().await?;
        let uri = if infer && self.warmup == WarmupCall::Inference {
            "http://localhost/vitrine/warmup"
        } else {
            "http://localhost/vitrine/warmup?run=0"
        };
        let req = hyper::Request::post(uri).body(Full::new(Bytes::new()))?;
        // A warm-up that traps is not replaced: the caller reports the failure
        // (a replacement would trap again, forever).
        let response = self
            .call(
                instance,
                req,
                self.budgets.warmup_timeout,
                permit,
                false,
                None,
            )
            .await
            .map_err(|e| anyhow::anyhow!("warm-up failed: {e}"))?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            bail!("{message}");
        }
        let warmed_at_build = infer
            && serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|v| v["at"] == "preinit");
        if warmed_at_build {
            tracing::info!(
                "model {} version {}: its pre-initialized component ran the warm-up inference when it was built; starting without it",
                self.servable.name,
                self.servable.version
            );
        }
        Ok(())
    }

    /// Returns `instance` to the idle set, or drops it once it has answered
    /// its quota; the next request then instantiates a fresh one.
    fn put_back(&self, instance: Instance) {
        let quota = self.budgets.max_requests_per_instance;
        if quota > 0 && instance.requests >= quota {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(instance);
        }
    }

    fn take_idle(&self) -> Option<Instance> {
        self.idle.lock().ok().and_then(|mut idle| idle.pop())
    }

    /// Runs one request on `instance` within `deadline` of guest time. The
    /// guest runs in its own task: the response can arrive (and its body
    /// stream) before the guest returns. When the guest returns, the instance
    /// goes back to the pool and `permit` is released; if it trapped, it is
    /// dropped and, if `replace_on_trap`, a warm replacement is started.
    async fn call(
        self: &Arc<Self>,
        mut instance: Instance,
        req: hyper::Request<Full<Bytes>>,
        deadline: Duration,
        permit: OwnedSemaphorePermit,
        replace_on_trap: bool,
        stamps: Option<Stamps>,
    ) -> Result<Response, CallError> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let (req, out) = (|| {
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
        })()
        .map_err(CallError::Internal)?;
        instance.store.set_epoch_deadline(ticks(deadline));
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
        let (timeline_tx, timeline_rx) = tokio::sync::oneshot::channel();
        let pool = self.clone();
        self.guest_runtime.spawn(async move {
            let guest_started = Instant::now();
            let result = instance
                .proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut instance.store, req, out)
                .await;
            match result {
                // The instance is back before the permit is: a request woken
                // by the permit must find it idle, not instantiate a cold one.
                Ok(()) => {
                    // Taken whether timed or not: the next request starts
                    // without this one's engine call.
                    let engine = instance.store.data_mut().engine_call.take();
                    if let Some(stamps) = stamps {
                        let _ = timeline_tx.send(Timeline {
                            arrived: stamps.arrived,
                            instance: stamps.instance,
                            guest_started,
                            engine,
                            guest_ended: Instant::now(),
                        });
                    }
                    pool.put_back(instance);
                    drop(permit);
                }
                Err(trap) => {
                    drop(permit);
                    let failure = if trap.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                        tracing::warn!(
                            "guest stopped at its {} ms deadline; discarding the instance",
                            deadline.as_millis()
                        );
                        CallError::Deadline(deadline)
                    } else {
                        tracing::error!("guest trapped, discarding the instance: {trap:?}");
                        CallError::Trap
                    };
                    drop(instance);
                    let _ = failed_tx.send(failure);
                    if replace_on_trap {
                        pool.replace_instance();
                    }
                }
            }
        });
        match receiver.await {
            Ok(Ok(resp)) => {
                // Only answered requests are timed; the guest's timeline is
                // whole once it returns, after its reply's body.
                if stamps.is_some() && resp.status().is_success() {
                    let pool = self.clone();
                    tokio::spawn(async move {
                        if let Ok(timeline) = timeline_rx.await {
                            pool.record_phases(timeline);
                        }
                    });
                }
                Ok(resp)
            }
            Ok(Err(e)) => Err(CallError::Internal(anyhow::anyhow!(
                "guest answered with an error: {e:?}"
            ))),
            Err(_) => Err(failed_rx.await.unwrap_or_else(|_| {
                CallError::Internal(anyhow::anyhow!("the guest returned without a response"))
            })),
        }
    }

    fn record_phases(&self, timeline: Timeline) {
        crate::metrics::record_phases(
            &self.servable.name,
            self.servable.version,
            &timeline.phases(),
        );
    }

    /// Warms a new instance in the background to take a discarded one's place.
    fn replace_instance(self: &Arc<Self>) {
        let pool = self.clone();
        tokio::spawn(async move {
            // The version is proven already; a replacement only loads, so it
            // takes no core from the requests being served.
            if let Err(e) = pool.add_warm_instance(false).await {
                tracing::error!("cannot replace a discarded instance: {e:#}");
            }
        });
    }

    /// Answers `req` with a warm instance, waiting for one if all are busy.
    pub async fn handle(
        self: &Arc<Self>,
        req: hyper::Request<Full<Bytes>>,
        timing: Timing,
    ) -> Result<Response, CallError> {
        let arrived = Instant::now();
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let _slot = QueueSlot::take(&self.queued, self.budgets.max_queued).ok_or(
                    CallError::Overloaded {
                        queued: self.budgets.max_queued,
                    },
                )?;
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| CallError::Internal(e.into()))?
            }
        };
        let mut instance = match self.take_idle() {
            Some(i) => i,
            // While a replacement is still warming up, or when instances
            // answer a limited number of requests: instantiated cold, on
            // this request's time, as Spin does.
            None => self.instantiate().await.map_err(CallError::Internal)?,
        };
        instance.requests += 1;
        let stamps = (timing == Timing::Phases).then(|| Stamps {
            arrived,
            instance: Instant::now(),
        });
        self.call(
            instance,
            req,
            self.budgets.request_timeout,
            permit,
            true,
            stamps,
        )
        .await
    }
}

/// A place in a pool's queue, given back on drop, also when the waiting
/// client disconnects and its request future is dropped.
struct QueueSlot<'a>(&'a AtomicUsize);

impl<'a> QueueSlot<'a> {
    fn take(queued: &'a AtomicUsize, max: usize) -> Option<QueueSlot<'a>> {
        queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| QueueSlot(queued))
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn ticks(d: Duration) -> u64 {
    (d.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}
