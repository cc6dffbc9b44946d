//! A ViT ONNX export loaded, checked against the preprocessor and optimised
//! by tract, run on batches of pixel tensors.

use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use super::OnnxFile;

/// An optimised, runnable image classifier with a dynamic batch dimension.
pub struct Classifier {
    plan: Arc<TypedRunnableModel>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub num_labels: usize,
}

impl Classifier {
    /// Parses a `model.onnx`, fixes its input to f32 `[batch, channels, height, width]`
    /// (batch symbolic) and optimises it.
    ///
    /// The weights are copied on the way (tract's graph, then the optimised
    /// plan's packed ones), and each copy is dropped as soon as the next is
    /// made. The file is read one initializer at a time (`onnx_file`), so no
    /// copy of the ONNX bytes is ever held whole. Wasm memory never shrinks,
    /// so loading's peak is what a guest instance keeps, and it bounds what a
    /// pre-initialized snapshot's memory image spans (DEPLOY.md).
    pub fn from_onnx(
        onnx: &mut dyn OnnxFile,
        channels: usize,
        height: usize,
        width: usize,
        num_labels: usize,
    ) -> anyhow::Result<Classifier> {
        let mut model = super::onnx_file::read_model(onnx)?;
        super::stage("read the graph");
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
        super::stage("typed the model");
        let out = typed.output_fact(0)?.clone();
        let rank_ok = out.rank() == 2;
        let labels_ok = out.shape.last().and_then(|d| d.to_i64().ok()) == Some(num_labels as i64);
        ensure!(
            rank_ok && labels_ok,
            "model output has shape {:?}, expected [batch, {num_labels}] to match config.json's id2label",
            out.shape
        );
        let plan = typed.into_optimized()?.into_runnable()?;
        super::stage("optimised the model");
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

/// Refuses exports whose declared input disagrees with `preprocessor_config.json`.
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
