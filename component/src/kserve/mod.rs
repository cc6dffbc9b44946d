//! KServe's v2 inference protocol (the Open Inference Protocol) over HTTP:
//! health, metadata and `infer`, in JSON and with the binary tensor data
//! extension (`Inference-Header-Content-Length`).
//!
//! The component answers v2 itself (in `service`), so the same paths work
//! under Spin and `wasmtime serve` as under the `vitrine` host. The host's v2
//! front end forwards here once it has resolved the version, and its gRPC
//! front end encodes Predict and Classify as binary v2 requests: images and
//! pixel tensors from clients are decoded only inside the sandbox.
//!
//! Inputs (exactly one per request):
//! - `string_input`, `BYTES` `[N]`: encoded images. Raw bytes with the binary
//!   extension; base64 strings in JSON (JSON strings cannot carry raw bytes).
//! - `pixel_values`, `FP32` `[N, 3, H, W]`: tensors the client preprocessed.
//!
//! Outputs: `label` (`BYTES` `[N]`) and `confidence` (`FP32` `[N]`) by default;
//! `probabilities` (`FP32` `[N, num_labels]`) on request. With Triton's
//! classification parameter (`{"classification": k}`) an output answers the
//! top `k` classes as `BYTES` `"score:index:label"` strings, shaped `[N, k]`.
//!
//! - `route`: [`V2Route`], the paths, and the server metadata;
//! - `request`: [`InferRequest`], its input and requested outputs;
//! - `tensor`: the binary extension's codec and output tensors' rendering.

mod request;
mod route;
mod tensor;

pub use self::request::{
    CONFIDENCE, InferRequest, Input, LABEL, OUTPUTS, PIXELS_INPUT, PROBABILITIES, RequestedOutput,
};
pub use self::route::{ModelAction, V2Route, server_metadata};
pub(crate) use self::tensor::Tensor;
pub use self::tensor::{HEADER_LENGTH, push_bytes, split_bytes};
