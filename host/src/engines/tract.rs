//! tract as a native engine: the component's own [`Classifier`], optimised
//! for this CPU and run across cores with tract's rayon executor.

use anyhow::bail;
use tract_onnx::prelude::Tensor;
use vitrine_component::inference::Classifier;

use crate::engines::Engine;

/// Sets the threads one model run uses (`--tensorflow_intra_op_parallelism`,
/// 0 = one per core). Process-wide: tract reads its default executor.
pub fn set_intra_op_threads(threads: usize) -> usize {
    let threads = match threads {
        0 => crate::config::cores(),
        n => n,
    };
    if threads > 1 {
        tract_linalg::multithread::set_default_executor(
            tract_linalg::multithread::Executor::multithread_with_name(threads, "tract"),
        );
    }
    threads
}

pub struct TractEngine(pub Classifier);

impl Engine for TractEngine {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn image_shape(&self) -> [usize; 3] {
        let c = &self.0;
        [c.channels, c.height, c.width]
    }

    fn num_labels(&self) -> usize {
        self.0.num_labels
    }

    fn run(&self, rows: usize, parts: &[&[u8]]) -> anyhow::Result<Vec<f32>> {
        let input = pixel_tensor(&self.0, rows, parts)?;
        let logits = self.0.run_tensor(input)?;
        Ok(logits.try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
    }
}

/// An f32 tensor `[rows, c, h, w]` filled from `parts` (little-endian pixel
/// bytes, whole images each) in order, zeros after them: the one copy from
/// wasi:nn's bytes into aligned storage.
fn pixel_tensor(model: &Classifier, rows: usize, parts: &[&[u8]]) -> anyhow::Result<Tensor> {
    let mut input = Tensor::zero::<f32>(&[rows, model.channels, model.height, model.width])?;
    let bytes = input.as_bytes_mut();
    let mut at = 0;
    for part in parts {
        let end = at + part.len();
        let Some(dest) = bytes.get_mut(at..end) else {
            bail!("{end} bytes of images overrun a tensor of {rows} images");
        };
        dest.copy_from_slice(part);
        at = end;
    }
    Ok(input)
}
