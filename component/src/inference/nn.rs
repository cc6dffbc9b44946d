//! The model run by the host through `wasi:nn`: the fast path.
//!
//! Only pixel tensors cross the boundary; the image bytes were decoded and
//! preprocessed here, inside the sandbox, and the logits come back here for
//! softmax and labels.

use super::error::{InferenceError, OVERLOADED_PREFIX};

wit_bindgen::generate!({
    path: "../wit",
    world: "vitrine:component/nn-client",
    generate_all,
});

use self::wasi::nn::errors::{Error, ErrorCode};
use self::wasi::nn::graph::{self, Graph};
use self::wasi::nn::inference::GraphExecutionContext;
use self::wasi::nn::tensor::{Tensor, TensorType};

/// A graph the host loaded, optimised and lends to this instance.
pub struct HostGraph {
    context: GraphExecutionContext,
    // Keeps the host's graph alive as long as the context uses it.
    _graph: Graph,
    image_shape: [usize; 3],
    num_labels: usize,
}

fn describe(e: Error) -> String {
    format!("{:?}: {}", e.code(), e.data())
}

impl HostGraph {
    pub fn load(name: &str, image_shape: [usize; 3], num_labels: usize) -> Result<Self, String> {
        let graph = graph::load_by_name(name).map_err(describe)?;
        let context = graph.init_execution_context().map_err(describe)?;
        Ok(HostGraph {
            context,
            _graph: graph,
            image_shape,
            num_labels,
        })
    }

    pub fn run(&self, n: usize, pixels: &[f32]) -> Result<Vec<f32>, InferenceError> {
        let [c, h, w] = self.image_shape;
        let dims = [n, c, h, w].map(|d| d as u32);
        // wasm32 is little-endian, as wasi:nn's tensor data is: the bytes are
        // the floats, no conversion pass.
        let bytes = unsafe {
            std::slice::from_raw_parts(pixels.as_ptr().cast::<u8>(), std::mem::size_of_val(pixels))
        };
        let input = Tensor::new(&dims, TensorType::Fp32, bytes);
        let outputs = self
            .context
            .compute(vec![("pixel_values".to_string(), input)])
            .map_err(|e| {
                let message = e.data();
                match (e.code(), message.starts_with(OVERLOADED_PREFIX)) {
                    (ErrorCode::RuntimeError, true) => InferenceError::Overloaded(message),
                    (code, _) => {
                        InferenceError::Failed(format!("host inference: {code:?}: {message}"))
                    }
                }
            })?;
        let logits = outputs
            .iter()
            .find(|(name, _)| name == "logits")
            .or(outputs.first())
            .map(|(_, t)| t)
            .ok_or_else(|| InferenceError::Failed("the host returned no output".into()))?;
        let want = [n as u32, self.num_labels as u32];
        if logits.ty() != TensorType::Fp32 || logits.dimensions() != want {
            return Err(InferenceError::Failed(format!(
                "the host returned {:?} {:?}, expected FP32 {want:?}",
                logits.ty(),
                logits.dimensions()
            )));
        }
        Ok(logits
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}
