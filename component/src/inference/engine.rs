//! Where the model runs: tract in the guest, or the host's graph through `wasi:nn`.

use super::OnnxFile;
#[cfg(feature = "tract")]
use super::classifier::Classifier;
use super::error::InferenceError;

/// Where the model runs.
pub enum Engine {
    /// tract inside this component: portable, single-threaded in wasm.
    #[cfg(feature = "tract")]
    Tract(Classifier),
    /// The host's native backend, through `wasi:nn`.
    #[cfg(all(target_arch = "wasm32", feature = "wasi-nn"))]
    Host(super::nn::HostGraph),
}

impl Engine {
    /// The host's graph when the host names one in `VITRINE_NN_GRAPH` and
    /// lends it, else the `model.onnx` that `open_onnx` opens, loaded into
    /// the guest.
    pub fn load(
        open_onnx: impl FnOnce() -> anyhow::Result<Box<dyn OnnxFile>>,
        channels: usize,
        height: usize,
        width: usize,
        num_labels: usize,
    ) -> anyhow::Result<Engine> {
        #[cfg(all(target_arch = "wasm32", feature = "wasi-nn"))]
        if let Some(name) =
            crate::variables::environment("VITRINE_NN_GRAPH").filter(|n| !n.is_empty())
        {
            let dims = [channels, height, width];
            match super::nn::HostGraph::load(&name, dims, num_labels) {
                Ok(graph) => return Ok(Engine::Host(graph)),
                Err(e) => crate::warn!(
                    "vitrine: the host does not lend wasi:nn graph {name:?} ({e}); running the model in the guest"
                ),
            }
        }
        guest_engine(open_onnx, channels, height, width, num_labels)
    }

    /// Logits `[n, num_labels]`, row-major, for `pixels` laid out `[n, c, h, w]`.
    pub fn run(&self, n: usize, pixels: Vec<f32>) -> Result<Vec<f32>, InferenceError> {
        match self {
            #[cfg(feature = "tract")]
            Engine::Tract(c) => {
                let logits = c
                    .run(n, pixels)
                    .map_err(|e| InferenceError::Failed(format!("{e:#}")))?;
                logits
                    .try_as_plain_ram()
                    .and_then(|view| view.as_slice::<f32>().map(<[f32]>::to_vec))
                    .map_err(|e| InferenceError::Failed(format!("unexpected logits: {e}")))
            }
            #[cfg(all(target_arch = "wasm32", feature = "wasi-nn"))]
            Engine::Host(g) => g.run(n, &pixels),
        }
    }

    /// Where the model runs, as reported in metadata.
    pub fn kind(&self) -> &'static str {
        match self {
            #[cfg(feature = "tract")]
            Engine::Tract(_) => "guest",
            #[cfg(all(target_arch = "wasm32", feature = "wasi-nn"))]
            Engine::Host(_) => "host",
        }
    }

    /// What runs the graph, as reported in metadata: `tract` here, or the
    /// engine the host names in `VITRINE_NN_ENGINE` (`onnxruntime`, `tract`).
    pub fn engine_name(&self) -> String {
        match self {
            #[cfg(feature = "tract")]
            Engine::Tract(_) => "tract".to_string(),
            #[cfg(all(target_arch = "wasm32", feature = "wasi-nn"))]
            Engine::Host(_) => crate::variables::environment("VITRINE_NN_ENGINE")
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "unknown".to_string()),
        }
    }
}

/// The model loaded into this component, with tract.
#[cfg(feature = "tract")]
fn guest_engine(
    open_onnx: impl FnOnce() -> anyhow::Result<Box<dyn OnnxFile>>,
    channels: usize,
    height: usize,
    width: usize,
    num_labels: usize,
) -> anyhow::Result<Engine> {
    let mut onnx = open_onnx()?;
    Classifier::from_onnx(&mut *onnx, channels, height, width, num_labels).map(Engine::Tract)
}

/// A host-path build has no engine of its own: says which component to use.
#[cfg(not(feature = "tract"))]
fn guest_engine(
    _open_onnx: impl FnOnce() -> anyhow::Result<Box<dyn OnnxFile>>,
    _channels: usize,
    _height: usize,
    _width: usize,
    _num_labels: usize,
) -> anyhow::Result<Engine> {
    anyhow::bail!(
        "this component is a host-path build without tract (as in the container image): it \
         runs the model only through the host's wasi:nn, which vitrine lends with \
         --inference=host; for --inference=guest pass the full component with --component \
         (cargo build --release --target wasm32-wasip2 -p vitrine-component --features wasi-nn)"
    )
}
