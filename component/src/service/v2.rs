//! Answers KServe v2 requests (see [`crate::kserve`] for the protocol) for
//! one servable instance.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::api::{ApiError, INPUT_NAME};
use crate::kserve::{
    CONFIDENCE, InferRequest, Input, LABEL, ModelAction, PIXELS_INPUT, PROBABILITIES, Tensor,
    V2Route, server_metadata,
};
use crate::postprocess;
use crate::preprocess;

use super::instance::Service;
use super::reply::Reply;

/// Answers a `/v2/...` request for `service`'s model.
pub(super) fn handle(
    service: &Service,
    method: &str,
    path: &str,
    header_length: Option<usize>,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let get_only = |method: &str| {
        if method == "GET" || method == "HEAD" {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(
                "use GET for health, metadata and ready",
            ))
        }
    };
    let config = service.config();
    match V2Route::parse(path)? {
        V2Route::ServerMetadata => {
            get_only(method)?;
            Ok(json_reply(&server_metadata()))
        }
        V2Route::Live => {
            get_only(method)?;
            Ok(json_reply(&json!({"live": true})))
        }
        V2Route::Ready => {
            get_only(method)?;
            service.model()?;
            Ok(json_reply(&json!({"ready": true})))
        }
        V2Route::Model {
            model,
            version,
            action,
        } => {
            if !service.serves(&model, &version) {
                return Err(ApiError::servable_not_found(&model, &version));
            }
            match action {
                ModelAction::Metadata => {
                    get_only(method)?;
                    Ok(json_reply(&metadata(service)?))
                }
                ModelAction::Ready => {
                    get_only(method)?;
                    service.model()?;
                    Ok(json_reply(
                        &json!({"name": config.model_name, "ready": true}),
                    ))
                }
                ModelAction::Infer => {
                    if method != "POST" {
                        return Err(ApiError::method_not_allowed("use POST for infer"));
                    }
                    let req = InferRequest::parse(body, header_length, &config.request_limits)?;
                    infer(service, req)
                }
            }
        }
    }
}

fn json_reply(value: &Value) -> Reply {
    Reply::json(
        200,
        serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()),
    )
}

fn metadata(service: &Service) -> Result<Value, ApiError> {
    let config = service.config();
    let model = service.model()?;
    let [channels, height, width] = model.image_shape;
    let tensor = |name: &str, datatype: &str, shape: Value| json!({"name": name, "datatype": datatype, "shape": shape});
    Ok(json!({
        "name": config.model_name,
        "versions": [config.version.to_string()],
        "platform": "onnx",
        "inputs": [
            tensor(INPUT_NAME, "BYTES", json!([-1])),
            tensor(PIXELS_INPUT, "FP32", json!([-1, channels, height, width])),
        ],
        "outputs": [
            tensor(LABEL, "BYTES", json!([-1])),
            tensor(CONFIDENCE, "FP32", json!([-1])),
            tensor(PROBABILITIES, "FP32", json!([-1, model.num_labels])),
        ],
    }))
}

/// Runs the request through the model and renders the outputs it asked for.
fn infer(service: &Service, req: InferRequest<'_>) -> Result<Reply, ApiError> {
    let config = service.config();
    let model = service.model()?;
    let len = model.image_len();
    let (n, pixels) = match req.input {
        Input::Images(images) => {
            let mut pixels = vec![0f32; len * images.len()];
            for (i, (bytes, row)) in images.iter().zip(pixels.chunks_exact_mut(len)).enumerate() {
                preprocess::preprocess_into(bytes, &model.preprocessor, &config.decode_limits, row)
                    .map_err(|e| ApiError::invalid(format!("{INPUT_NAME} element {i}: {e}")))?;
            }
            (images.len(), pixels)
        }
        Input::Pixels { shape, data } => {
            let want = model.image_shape;
            if shape.len() != 4 || shape[1..] != want {
                return Err(ApiError::invalid(format!(
                    "{PIXELS_INPUT} must be shaped [N, {}, {}, {}] for this model, got {shape:?}",
                    want[0], want[1], want[2]
                )));
            }
            (shape[0], data)
        }
    };
    let logits = model.infer(n, pixels)?;
    let probs: Vec<Vec<f32>> = logits
        .chunks_exact(model.num_labels)
        .map(postprocess::softmax)
        .collect();
    let labels = &model.config.id2label;
    let best: Vec<(usize, f32)> = probs
        .iter()
        .map(|p| {
            postprocess::top_k(p, 1)
                .first()
                .copied()
                .unwrap_or((0, 0.0))
        })
        .collect();

    let mut rendered = Vec::with_capacity(req.outputs.len());
    let mut binary = Vec::new();
    for out in &req.outputs {
        let tensor = match (out.name, out.classification) {
            (_, Some(k)) => {
                let source: Vec<&[f32]> = match out.name {
                    PROBABILITIES => probs.iter().map(Vec::as_slice).collect(),
                    _ => {
                        return Err(ApiError::invalid(format!(
                            "classification applies to {PROBABILITIES}, not {}",
                            out.name
                        )));
                    }
                };
                let k = k.min(model.num_labels);
                let classes: Vec<String> = source
                    .iter()
                    .flat_map(|p| {
                        postprocess::top_k(p, k).into_iter().map(|(i, score)| {
                            format!("{score}:{i}:{}", postprocess::label(labels, i))
                        })
                    })
                    .collect();
                Tensor::Bytes {
                    shape: vec![n, k],
                    items: classes,
                }
            }
            (LABEL, None) => Tensor::Bytes {
                shape: vec![n],
                items: best
                    .iter()
                    .map(|(i, _)| postprocess::label(labels, *i))
                    .collect(),
            },
            (CONFIDENCE, None) => Tensor::Fp32 {
                shape: vec![n],
                values: Cow::Owned(best.iter().map(|(_, p)| *p).collect()),
            },
            _ => Tensor::Fp32 {
                shape: vec![n, model.num_labels],
                values: Cow::Owned(probs.concat()),
            },
        };
        rendered.push(tensor.render(out.name, out.binary, &mut binary));
    }
    let mut reply = Map::new();
    reply.insert("model_name".into(), config.model_name.clone().into());
    reply.insert("model_version".into(), config.version.to_string().into());
    if let Some(id) = req.id {
        reply.insert("id".into(), id);
    }
    reply.insert("outputs".into(), Value::Array(rendered));
    let mut body = serde_json::to_vec(&Value::Object(reply))
        .map_err(|e| ApiError::internal(format!("cannot render the reply: {e}")))?;
    let mut out = Reply::json(200, Vec::new());
    out.batch_size = Some(n);
    if !binary.is_empty() || req.outputs.iter().any(|o| o.binary) {
        out.header_length = Some(body.len());
        out.content_type = "application/octet-stream";
        body.extend_from_slice(&binary);
    }
    out.body = body;
    Ok(out)
}
