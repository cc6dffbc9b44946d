//! gRPC bodies as tonic hands them to the server: a `PredictRequest` or a
//! `ClassificationRequest` decoded by prost, then the images (or pixels)
//! read out of it as the host's `Predict` and `Classify` do. Any input
//! gives an error or images that are exactly what the request carries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use vitrine_component::api::INPUT_NAME;
use vitrine_component::kserve::{PIXELS_INPUT, push_bytes, split_bytes};
use vitrine_wire::grpc::{self, InputNames, PredictInput};
use vitrine_wire::proto::tensorflow::serving::{ClassificationRequest, PredictRequest};

const NAMES: InputNames<'static> = InputNames {
    images: INPUT_NAME,
    pixels: PIXELS_INPUT,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = PredictRequest::decode(data) {
        match grpc::predict_input(&req.inputs, NAMES) {
            Ok(PredictInput::Images(images)) => {
                let tensor = &req.inputs[INPUT_NAME];
                assert_eq!(images.len(), tensor.string_val.len());
                assert!(!images.is_empty());
                // The host frames them as v2 BYTES; the component must
                // read back the same images.
                let mut framed = Vec::new();
                for image in &images {
                    push_bytes(&mut framed, image);
                }
                let back = split_bytes(&framed).expect("our own framing");
                assert!(back.iter().map(|b| &**b).eq(images.iter().copied()));
            }
            Ok(PredictInput::Pixels { data, .. }) => {
                let tensor = &req.inputs[PIXELS_INPUT];
                let want = if tensor.tensor_content.is_empty() {
                    4 * tensor.float_val.len()
                } else {
                    tensor.tensor_content.len()
                };
                assert_eq!(data.len(), want);
            }
            Err(message) => assert!(!message.is_empty()),
        }
    }
    if let Ok(req) = ClassificationRequest::decode(data) {
        match grpc::example_images(req.input.as_ref(), INPUT_NAME) {
            Ok(images) => assert!(!images.is_empty()),
            Err(message) => assert!(!message.is_empty()),
        }
    }
});
