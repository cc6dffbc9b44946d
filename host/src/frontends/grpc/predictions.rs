//! `tensorflow.serving.PredictionService`: Predict, Classify and
//! GetModelMetadata, each sent through the routing core to the component.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::http::HeaderMap;
use bytes::Bytes;
use prost::Message;
use serde_json::Value;
use tonic::{Request, Response, Status};
use vitrine_component::api::{INPUT_NAME, SIGNATURE_NAME, VersionSelector};
use vitrine_component::kserve::{CONFIDENCE, LABEL, ModelAction, OUTPUTS, PROBABILITIES, V2Route};

use crate::models::registry::Registry;
use crate::routing::{self, Api, Code, Failure, Forward};

use super::CLASSIFY_TOP_K;
use super::convert::*;
use crate::proto::tensorflow::TensorProto;
use crate::proto::tensorflow::serving::prediction_service_server::PredictionService;
use crate::proto::tensorflow::serving::{
    self as tfs, ClassificationRequest, ClassificationResponse, GetModelMetadataRequest,
    GetModelMetadataResponse, PredictRequest, PredictResponse,
};

/// Runs `forward` as an inference call on `model` at `selector`.
pub(super) async fn infer(
    registry: &Registry,
    model: &str,
    selector: &VersionSelector,
    forward: Forward,
) -> Result<(u64, Vec<V2Output>), Failure> {
    let (resolved, response) = routing::call(
        registry,
        Some(Api::Grpc),
        model,
        selector,
        |v| V2Route::model_path(model, v, ModelAction::Infer),
        forward,
    )
    .await?;
    let (headers, body) = routing::read_reply(response).await?;
    Ok((resolved.version, v2_outputs(&headers, &body)?))
}

/// `PredictionService` over the registry.
pub(super) struct Predictions {
    pub(super) registry: Arc<Registry>,
    pub(super) max_instances: usize,
}

impl Predictions {
    /// Counts a request whose input could not be encoded for the model.
    fn refused(&self, model: &str, started: Instant) {
        routing::record_refused(
            &self.registry,
            Api::Grpc,
            model,
            Code::InvalidArgument,
            started,
        );
    }
}

/// `--max_instances_per_request`, as gRPC says it.
pub(super) fn check_instances(count: usize, limit: usize) -> Result<(), Status> {
    vitrine_component::api::check_instances(count, limit, "images")
        .map_err(|e| Status::invalid_argument(e.message))
}

/// A PredictRequest's input and output filter as a binary v2 request.
pub(super) fn predict_request(
    req: &PredictRequest,
    max_instances: usize,
) -> Result<Forward, Status> {
    let outputs: Vec<(&str, Option<usize>)> = if req.output_filter.is_empty() {
        vec![(LABEL, None), (CONFIDENCE, None)]
    } else {
        req.output_filter
            .iter()
            .map(|name| {
                OUTPUTS
                    .into_iter()
                    .find(|o| o == name)
                    .map(|o| (o, None))
                    .ok_or_else(|| {
                        Status::invalid_argument(format!(
                            "output tensor alias not found in signature: {name}. Outputs expected to be in the set {{{}}}",
                            OUTPUTS.join(",")
                        ))
                    })
            })
            .collect::<Result<_, _>>()?
    };
    let input = predict_input(&req.inputs)?;
    let images = match input.name {
        INPUT_NAME => input.shape.iter().product(),
        _ => input.shape.first().copied().unwrap_or(0),
    };
    check_instances(images, max_instances)?;
    Ok(input.into_request(&outputs))
}

#[tonic::async_trait]
impl PredictionService for Predictions {
    async fn predict(
        &self,
        request: Request<PredictRequest>,
    ) -> Result<Response<PredictResponse>, Status> {
        let started = Instant::now();
        let req = request.into_inner();
        let (model, selector) = target(req.model_spec.as_ref())?;
        let forward = predict_request(&req, self.max_instances)
            .inspect_err(|_| self.refused(&model, started))?;
        let (version, outputs) = infer(&self.registry, &model, &selector, forward)
            .await
            .map_err(|f| f.grpc())?;
        Ok(Response::new(PredictResponse {
            model_spec: Some(answered_spec(&model, version, SIGNATURE_NAME)),
            outputs: outputs
                .into_iter()
                .map(|o| (o.name.clone(), TensorProto::from(o)))
                .collect(),
        }))
    }

    async fn classify(
        &self,
        request: Request<ClassificationRequest>,
    ) -> Result<Response<ClassificationResponse>, Status> {
        let req = request.into_inner();
        let started = Instant::now();
        let (model, selector) = target(req.model_spec.as_ref())?;
        let images = example_images(req.input.as_ref())
            .and_then(|images| {
                check_instances(images.len(), self.max_instances)?;
                Ok(images)
            })
            .inspect_err(|_| self.refused(&model, started))?;
        let forward = V2Input::images(images.into_iter())
            .into_request(&[(PROBABILITIES, Some(CLASSIFY_TOP_K))]);
        let (version, outputs) = infer(&self.registry, &model, &selector, forward)
            .await
            .map_err(|f| f.grpc())?;
        let Some(V2Output {
            shape,
            value: OutputValue::Bytes(classes),
            ..
        }) = outputs.into_iter().next()
        else {
            return Err(Status::internal("the model answered no classes"));
        };
        let per_example = shape.get(1).copied().unwrap_or(1).max(1) as usize;
        let classifications = classes
            .chunks(per_example)
            .map(|chunk| tfs::Classifications {
                classes: chunk.iter().map(|c| parse_class(c)).collect(),
            })
            .collect();
        Ok(Response::new(ClassificationResponse {
            model_spec: Some(answered_spec(&model, version, SIGNATURE_NAME)),
            result: Some(tfs::ClassificationResult { classifications }),
        }))
    }

    async fn get_model_metadata(
        &self,
        request: Request<GetModelMetadataRequest>,
    ) -> Result<Response<GetModelMetadataResponse>, Status> {
        let req = request.into_inner();
        let (model, selector) = target(req.model_spec.as_ref())?;
        if req.metadata_field.is_empty() {
            return Err(Status::invalid_argument(
                "GetModelMetadataRequest must specify at least one metadata_field: \"signature_def\"",
            ));
        }
        if let Some(other) = req.metadata_field.iter().find(|f| *f != "signature_def") {
            return Err(Status::invalid_argument(format!(
                "Metadata field {other} is not supported; ask for \"signature_def\""
            )));
        }
        let forward = Forward {
            method: hyper::Method::GET,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        let (resolved, response) = routing::call(
            &self.registry,
            None,
            &model,
            &selector,
            |v| format!("/v1/models/{model}/versions/{v}/metadata"),
            forward,
        )
        .await
        .map_err(|f| f.grpc())?;
        let (_, body) = routing::read_reply(response).await.map_err(|f| f.grpc())?;
        let metadata: Value = serde_json::from_slice(&body)
            .map_err(|e| Status::internal(format!("the model's metadata is not JSON: {e}")))?;
        let signatures = signature_def_map(&metadata["metadata"]["signature_def"]["signature_def"]);
        let any = prost_types::Any {
            type_url: "type.googleapis.com/tensorflow.serving.SignatureDefMap".into(),
            value: signatures.encode_to_vec(),
        };
        Ok(Response::new(GetModelMetadataResponse {
            model_spec: Some(answered_spec(&model, resolved.version, "")),
            metadata: HashMap::from([("signature_def".to_string(), any)]),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontends::grpc::convert::tests::string_tensor;

    #[test]
    fn predict_requests_over_the_instance_limit_are_refused_here() {
        let request = |images: &[&[u8]]| PredictRequest {
            inputs: HashMap::from([(
                INPUT_NAME.to_string(),
                string_tensor(images, &[images.len() as i64]),
            )]),
            ..Default::default()
        };
        assert!(predict_request(&request(&[b"a", b"b"]), 2).is_ok());
        let e = predict_request(&request(&[b"a", b"b", b"c"]), 2)
            .err()
            .expect("refused");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("3 images") && e.message().contains("--max_instances_per_request"),
            "{}",
            e.message()
        );
    }
}
