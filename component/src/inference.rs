//! Runs a ViT ONNX export: in the guest with tract, or through `wasi:nn` on
//! the host when the host offers the graph.

#[cfg(feature = "tract")]
use std::sync::Arc;

#[cfg(feature = "tract")]
use anyhow::{Context, bail, ensure};
#[cfg(feature = "tract")]
use tract_onnx::prelude::*;
#[cfg(feature = "tract")]
use tract_onnx::tract_hir::infer::Factoid;

#[cfg(not(any(feature = "tract", all(target_arch = "wasm32", feature = "wasi-nn"))))]
compile_error!("vitrine-component runs no model without `tract` or, on wasm32, `wasi-nn`");

/// An optimised, runnable image classifier with a dynamic batch dimension.
#[cfg(feature = "tract")]
pub struct Classifier {
    plan: Arc<TypedRunnableModel>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub num_labels: usize,
}

#[cfg(feature = "tract")]
impl Classifier {
    /// Parses a `model.onnx`, fixes its input to f32 `[batch, channels, height, width]`
    /// (batch symbolic) and optimises it.
    pub fn from_onnx(
        onnx: &[u8],
        channels: usize,
        height: usize,
        width: usize,
        num_labels: usize,
    ) -> anyhow::Result<Classifier> {
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut &onnx[..])
            .context("cannot parse model.onnx as ONNX")?;
        check_declared_input(&model, channels, height, width)?;
        let batch = model.symbols.sym("batch_size");
        let shape: TVec<TDim> = tvec![batch.into(), channels.into(), height.into(), width.into()];
        model.set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape))?;
        if model.outputs.len() > 1 {
            // optimum exports may carry extra outputs; serve `logits` only.
            let logits = model
                .outputs
                .iter()
                .position(|o| model.node(o.node).name == "logits")
                .unwrap_or(0);
            let keep = model.outputs[logits];
            model.select_output_outlets(&[keep])?;
        }
        let typed = model
            .into_typed()
            .context("cannot infer the model's shapes; is it a ViT image classifier?")?;
        let out = typed.output_fact(0)?.clone();
        let rank_ok = out.rank() == 2;
        let labels_ok = out.shape.last().and_then(|d| d.to_i64().ok()) == Some(num_labels as i64);
        ensure!(
            rank_ok && labels_ok,
            "model output has shape {:?}, expected [batch, {num_labels}] to match config.json's id2label",
            out.shape
        );
        let plan = typed.into_optimized()?.into_runnable()?;
        Ok(Classifier {
            plan,
            channels,
            height,
            width,
            num_labels,
        })
    }

    /// Elements in one image's pixel tensor.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Runs `pixels`, laid out `[n, channels, height, width]`, and returns logits `[n, num_labels]`.
    pub fn run(&self, n: usize, pixels: Vec<f32>) -> anyhow::Result<Tensor> {
        // Moves the buffer into the tensor: no copy of the batch.
        let input: Tensor = tract_ndarray::Array4::from_shape_vec(
            (n, self.channels, self.height, self.width),
            pixels,
        )?
        .into();
        self.run_tensor(input)
    }

    /// Runs an f32 tensor `[n, channels, height, width]` and returns logits `[n, num_labels]`.
    pub fn run_tensor(&self, input: Tensor) -> anyhow::Result<Tensor> {
        let n = input.shape().first().copied().unwrap_or(0);
        ensure!(
            input.datum_type() == f32::datum_type()
                && input.shape() == [n, self.channels, self.height, self.width],
            "input is {:?} {:?}, expected f32 [n, {}, {}, {}]",
            input.datum_type(),
            input.shape(),
            self.channels,
            self.height,
            self.width
        );
        let mut outputs = self.plan.run(tvec!(input.into()))?;
        let logits = outputs.remove(0).into_tensor();
        ensure!(
            logits.shape() == [n, self.num_labels],
            "model returned logits of shape {:?}",
            logits.shape()
        );
        Ok(logits)
    }
}

/// Starts the `wasi:nn` error data of a host whose batch queue is full; the
/// component answers it with 503 (see `wit/README.md`). Shared by both sides.
pub const OVERLOADED_PREFIX: &str = "resource exhausted:";

/// Why an inference gave no logits.
#[derive(Debug)]
pub enum InferenceError {
    /// The host's batch queue is full: try again shortly.
    Overloaded(String),
    Failed(String),
}

/// Where the model runs.
pub enum Engine {
    /// tract inside this component: portable, single-threaded in wasm.
    #[cfg(feature = "tract")]
    Tract(Classifier),
    /// The host's native backend, through `wasi:nn`.
    #[cfg(all(target_arch = "wasm32", feature = "wasi-nn"))]
    Host(crate::nn::HostGraph),
}

impl Engine {
    /// The host's graph when the host names one in `VITRINE_NN_GRAPH` and
    /// lends it, else the `model.onnx` that `read_onnx` returns, loaded into
    /// the guest.
    pub fn load(
        read_onnx: impl FnOnce() -> anyhow::Result<Vec<u8>>,
        channels: usize,
        height: usize,
        width: usize,
        num_labels: usize,
    ) -> anyhow::Result<Engine> {
        #[cfg(all(target_arch = "wasm32", feature = "wasi-nn"))]
        if let Some(name) = std::env::var("VITRINE_NN_GRAPH")
            .ok()
            .filter(|n| !n.is_empty())
        {
            let dims = [channels, height, width];
            match crate::nn::HostGraph::load(&name, dims, num_labels) {
                Ok(graph) => return Ok(Engine::Host(graph)),
                Err(e) => eprintln!(
                    "vitrine: the host does not lend wasi:nn graph {name:?} ({e}); running the model in the guest"
                ),
            }
        }
        guest_engine(read_onnx, channels, height, width, num_labels)
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
}

/// The model loaded into this component, with tract.
#[cfg(feature = "tract")]
fn guest_engine(
    read_onnx: impl FnOnce() -> anyhow::Result<Vec<u8>>,
    channels: usize,
    height: usize,
    width: usize,
    num_labels: usize,
) -> anyhow::Result<Engine> {
    Classifier::from_onnx(&read_onnx()?, channels, height, width, num_labels).map(Engine::Tract)
}

/// A host-path build has no engine of its own: says which component to use.
#[cfg(not(feature = "tract"))]
fn guest_engine(
    _read_onnx: impl FnOnce() -> anyhow::Result<Vec<u8>>,
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

/// Refuses exports whose declared input disagrees with `preprocessor_config.json`.
#[cfg(feature = "tract")]
fn check_declared_input(
    model: &InferenceModel,
    channels: usize,
    height: usize,
    width: usize,
) -> anyhow::Result<()> {
    let fact = model.input_fact(0)?;
    let Some(shape) = fact.shape.concretize() else {
        return Ok(());
    };
    if shape.len() != 4 {
        bail!(
            "model input has rank {}, expected [batch, 3, height, width]",
            shape.len()
        );
    }
    let want = [channels, height, width];
    for (axis, (dim, want)) in shape[1..].iter().zip(want).enumerate() {
        if let Ok(d) = dim.to_i64()
            && d != want as i64
        {
            bail!(
                "model input is {:?} but preprocessing produces [batch, {channels}, {height}, {width}] (axis {} differs); check preprocessor_config.json's size",
                shape,
                axis + 1
            );
        }
    }
    Ok(())
}
