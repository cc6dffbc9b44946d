//! KServe's v2 inference protocol (the Open Inference Protocol) over HTTP:
//! health, metadata and `infer`, in JSON and with the binary tensor data
//! extension (`Inference-Header-Content-Length`).
//!
//! The component answers v2 itself, so the same paths work under Spin and
//! `wasmtime serve` as under the `vitrine` host. The host's v2 front end
//! forwards here once it has resolved the version, and its gRPC front end
//! encodes Predict and Classify as binary v2 requests: images and pixel
//! tensors from clients are decoded only inside the sandbox.
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

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::api::{ApiError, INPUT_NAME, RequestLimits, VersionSelector};
use crate::postprocess;
use crate::preprocess;
use crate::service::{Reply, Service};

/// Request and reply header giving the JSON part's length when binary
/// tensor data follows it.
pub const HEADER_LENGTH: &str = "inference-header-content-length";
/// The input that takes pixel tensors.
pub const PIXELS_INPUT: &str = "pixel_values";
pub const LABEL: &str = "label";
pub const CONFIDENCE: &str = "confidence";
pub const PROBABILITIES: &str = "probabilities";
/// Every output, in the order replies list them.
pub const OUTPUTS: [&str; 3] = [LABEL, CONFIDENCE, PROBABILITIES];

/// What a `/v2/...` path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V2Route {
    ServerMetadata,
    Live,
    Ready,
    Model {
        model: String,
        version: VersionSelector,
        action: ModelAction,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelAction {
    Metadata,
    Ready,
    Infer,
}

impl V2Route {
    /// Parses `/v2`, `/v2/health/{live,ready}` and
    /// `/v2/models/{m}[/versions/{v}][/ready | /infer]`.
    pub fn parse(path: &str) -> Result<V2Route, ApiError> {
        let path = path.split('?').next().unwrap_or_default();
        let trimmed = path.trim_end_matches('/');
        match trimmed {
            "/v2" => return Ok(V2Route::ServerMetadata),
            "/v2/health/live" => return Ok(V2Route::Live),
            "/v2/health/ready" => return Ok(V2Route::Ready),
            _ => {}
        }
        let rest = trimmed
            .strip_prefix("/v2/models/")
            .ok_or_else(|| ApiError::not_found(format!("no such endpoint: {path}")))?;
        let segments: Vec<&str> = rest.split('/').collect();
        let (model, version, action) = match segments.as_slice() {
            [m] => (*m, None, ModelAction::Metadata),
            [m, "ready"] => (*m, None, ModelAction::Ready),
            [m, "infer"] => (*m, None, ModelAction::Infer),
            [m, "versions", v] => (*m, Some(*v), ModelAction::Metadata),
            [m, "versions", v, "ready"] => (*m, Some(*v), ModelAction::Ready),
            [m, "versions", v, "infer"] => (*m, Some(*v), ModelAction::Infer),
            _ => {
                return Err(ApiError::not_found(format!(
                    "malformed request path {path}: expected /v2/models/<name>[/versions/<n>][/ready|/infer]"
                )));
            }
        };
        if model.is_empty() {
            return Err(ApiError::not_found(format!(
                "malformed request path {path}: the model name is empty"
            )));
        }
        let version = match version {
            None => VersionSelector::Latest,
            Some(v) => {
                VersionSelector::Number(v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(
                    || ApiError::invalid(format!("version must be a positive integer, got {v:?}")),
                )?)
            }
        };
        Ok(V2Route::Model {
            model: model.to_string(),
            version,
            action,
        })
    }

    /// The path of `action` on exactly `version` of `model`.
    pub fn model_path(model: &str, version: u64, action: ModelAction) -> String {
        let suffix = match action {
            ModelAction::Metadata => "",
            ModelAction::Ready => "/ready",
            ModelAction::Infer => "/infer",
        };
        format!("/v2/models/{model}/versions/{version}{suffix}")
    }
}

/// The v2 server metadata, the same whoever answers `/v2`.
pub fn server_metadata() -> Value {
    json!({
        "name": "vitrine",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "classification"],
    })
}

/// The images or pixels of one infer request.
#[derive(Debug)]
pub enum Input<'a> {
    /// Encoded images, borrowed from the body when sent in binary.
    Images(Vec<Cow<'a, [u8]>>),
    /// A pixel tensor and its shape.
    Pixels { shape: Vec<usize>, data: Vec<f32> },
}

/// An output the client asked for, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedOutput {
    pub name: &'static str,
    pub binary: bool,
    /// Triton's classification extension: answer the top `k` classes.
    pub classification: Option<usize>,
}

#[derive(Debug)]
pub struct InferRequest<'a> {
    pub id: Option<Value>,
    pub input: Input<'a>,
    pub outputs: Vec<RequestedOutput>,
}

impl<'a> InferRequest<'a> {
    /// Parses a JSON body, or with `header_length` a JSON header followed by
    /// binary tensor data.
    pub fn parse(
        body: &'a [u8],
        header_length: Option<usize>,
        limits: &RequestLimits,
    ) -> Result<InferRequest<'a>, ApiError> {
        let (header, mut binary) = match header_length {
            None => (body, &body[body.len()..]),
            Some(n) if n <= body.len() => body.split_at(n),
            Some(n) => {
                return Err(ApiError::invalid(format!(
                    "{HEADER_LENGTH} is {n} but the body has only {} bytes",
                    body.len()
                )));
            }
        };
        crate::api::check_json_depth(header, limits.max_json_depth)?;
        let value: Value = serde_json::from_slice(header).map_err(|e| {
            ApiError::invalid(format!("the inference request is not valid JSON: {e}"))
        })?;
        let Value::Object(obj) = value else {
            return Err(ApiError::invalid(
                "the inference request must be a JSON object with \"inputs\"",
            ));
        };
        let inputs = obj
            .get("inputs")
            .and_then(Value::as_array)
            .ok_or_else(|| ApiError::invalid("the inference request needs an \"inputs\" list"))?;
        let [input] = inputs.as_slice() else {
            return Err(ApiError::invalid(format!(
                "{} inputs given; send exactly one: {INPUT_NAME} (BYTES, encoded images) or {PIXELS_INPUT} (FP32 [N,3,H,W])",
                inputs.len()
            )));
        };
        let input = parse_input(input, &mut binary, limits)?;
        if !binary.is_empty() {
            return Err(ApiError::invalid(format!(
                "{} bytes of binary data follow the inputs that no input's binary_data_size accounts for",
                binary.len()
            )));
        }
        let binary_default = obj
            .get("parameters")
            .and_then(|p| p.get("binary_data_output"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let outputs = match obj.get("outputs") {
            None => vec![LABEL, CONFIDENCE]
                .into_iter()
                .map(|name| RequestedOutput {
                    name,
                    binary: binary_default,
                    classification: None,
                })
                .collect(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|o| parse_output(o, binary_default))
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(ApiError::invalid("\"outputs\" must be a list")),
        };
        if outputs.is_empty() {
            return Err(ApiError::invalid(
                "\"outputs\" is empty; name at least one of label, confidence, probabilities",
            ));
        }
        Ok(InferRequest {
            id: obj.get("id").cloned(),
            input,
            outputs,
        })
    }
}

fn parse_output(o: &Value, binary_default: bool) -> Result<RequestedOutput, ApiError> {
    let name = o.get("name").and_then(Value::as_str).unwrap_or_default();
    let name = OUTPUTS.into_iter().find(|n| *n == name).ok_or_else(|| {
        ApiError::invalid(format!(
            "unknown output {name:?}; this model answers {}",
            OUTPUTS.join(", ")
        ))
    })?;
    let params = o.get("parameters");
    let binary = params
        .and_then(|p| p.get("binary_data"))
        .and_then(Value::as_bool)
        .unwrap_or(binary_default);
    let classification = match params.and_then(|p| p.get("classification")) {
        None => None,
        Some(k) => Some(
            k.as_u64()
                .filter(|k| *k >= 1)
                .ok_or_else(|| ApiError::invalid("\"classification\" must be a positive integer"))?
                as usize,
        ),
    };
    Ok(RequestedOutput {
        name,
        binary,
        classification,
    })
}

fn parse_input<'a>(
    input: &Value,
    binary: &mut &'a [u8],
    limits: &RequestLimits,
) -> Result<Input<'a>, ApiError> {
    let name = input
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let datatype = input
        .get("datatype")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let expected = match name {
        INPUT_NAME => "BYTES",
        PIXELS_INPUT => "FP32",
        other => {
            return Err(ApiError::invalid(format!(
                "unknown input {other:?}; send {INPUT_NAME} (BYTES, encoded images) or {PIXELS_INPUT} (FP32 [N,3,H,W])"
            )));
        }
    };
    if datatype != expected {
        return Err(ApiError::invalid(format!(
            "input {name} must be {expected}, got {datatype:?}"
        )));
    }
    let shape: Vec<usize> = input
        .get("shape")
        .and_then(Value::as_array)
        .and_then(|dims| {
            dims.iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect()
        })
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "input {name} needs a \"shape\": a list of non-negative integers"
            ))
        })?;
    let elements = shape
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .ok_or_else(|| ApiError::invalid(format!("input {name}'s shape {shape:?} is too large")))?;
    let batch = if name == INPUT_NAME {
        elements
    } else {
        shape.first().copied().unwrap_or(0)
    };
    if batch == 0 {
        return Err(ApiError::invalid(format!(
            "input {name} is empty; send at least one image"
        )));
    }
    crate::api::check_instances(batch, limits.max_instances, "images")?;
    let binary_size = input
        .get("parameters")
        .and_then(|p| p.get("binary_data_size"))
        .map(|s| {
            s.as_u64().map(|s| s as usize).ok_or_else(|| {
                ApiError::invalid("\"binary_data_size\" must be a non-negative integer")
            })
        })
        .transpose()?;
    let raw = match binary_size {
        Some(size) => {
            if size > binary.len() {
                return Err(ApiError::invalid(format!(
                    "input {name} declares {size} bytes of binary data but only {} follow the JSON header",
                    binary.len()
                )));
            }
            let (mine, rest) = binary.split_at(size);
            *binary = rest;
            Some(mine)
        }
        None => None,
    };
    let data = input.get("data");
    if name == INPUT_NAME {
        let images = match (raw, data) {
            (Some(raw), _) => split_bytes(raw)?,
            (None, Some(data)) => {
                let mut strings = Vec::with_capacity(elements);
                flatten(data, &mut strings, &|v| v.as_str())?;
                strings
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        crate::api::decode_base64(s).map(Cow::Owned).map_err(|e| {
                            ApiError::invalid(format!("{name} element {i}: {}", e.message))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            (None, None) => return Err(no_data(name)),
        };
        if images.len() != elements {
            return Err(ApiError::invalid(format!(
                "input {name} has shape {shape:?} ({elements} elements) but carries {} images",
                images.len()
            )));
        }
        Ok(Input::Images(images))
    } else {
        let values = match (raw, data) {
            (Some(raw), _) => {
                if elements.checked_mul(4) != Some(raw.len()) {
                    return Err(ApiError::invalid(format!(
                        "input {name} has shape {shape:?}, i.e. {elements} FP32 values, but binary_data_size is {} bytes",
                        raw.len()
                    )));
                }
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            }
            (None, Some(data)) => {
                let mut values = Vec::with_capacity(elements.min(1 << 24));
                flatten(data, &mut values, &|v| v.as_f64().map(|x| x as f32))?;
                values
            }
            (None, None) => return Err(no_data(name)),
        };
        if values.len() != elements {
            return Err(ApiError::invalid(format!(
                "input {name} has shape {shape:?} ({elements} values) but carries {}",
                values.len()
            )));
        }
        Ok(Input::Pixels {
            shape,
            data: values,
        })
    }
}

fn no_data(name: &str) -> ApiError {
    ApiError::invalid(format!(
        "input {name} has neither \"data\" nor a \"binary_data_size\" parameter"
    ))
}

/// Collects the leaves of a (possibly nested) JSON list.
fn flatten<'v, T>(
    value: &'v Value,
    out: &mut Vec<T>,
    leaf: &dyn Fn(&'v Value) -> Option<T>,
) -> Result<(), ApiError> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| flatten(v, out, leaf)),
        other => {
            out.push(leaf(other).ok_or_else(|| {
                ApiError::invalid(
                    "tensor data must be a list of numbers (FP32) or of base64 strings (BYTES)",
                )
            })?);
            Ok(())
        }
    }
}

/// Splits BYTES binary data: each element is a 4-byte little-endian length
/// followed by that many bytes.
pub fn split_bytes(mut raw: &[u8]) -> Result<Vec<Cow<'_, [u8]>>, ApiError> {
    let mut items = Vec::new();
    while !raw.is_empty() {
        let Some((len, rest)) = raw.split_first_chunk::<4>() else {
            return Err(ApiError::invalid(
                "BYTES binary data ends inside an element's 4-byte length",
            ));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err(ApiError::invalid(format!(
                "a BYTES element declares {len} bytes but only {} remain",
                rest.len()
            )));
        }
        let (item, rest) = rest.split_at(len);
        items.push(Cow::Borrowed(item));
        raw = rest;
    }
    Ok(items)
}

/// Appends `item` to BYTES binary data.
pub fn push_bytes(out: &mut Vec<u8>, item: &[u8]) {
    out.extend_from_slice(&(item.len() as u32).to_le_bytes());
    out.extend_from_slice(item);
}

/// Answers a `/v2/...` request for `service`'s model.
pub fn handle(
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
pub fn infer(service: &Service, req: InferRequest<'_>) -> Result<Reply, ApiError> {
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

enum Tensor<'a> {
    Bytes {
        shape: Vec<usize>,
        items: Vec<String>,
    },
    Fp32 {
        shape: Vec<usize>,
        values: Cow<'a, [f32]>,
    },
}

impl Tensor<'_> {
    /// The output's JSON entry; binary data goes to `binary`.
    fn render(&self, name: &str, as_binary: bool, binary: &mut Vec<u8>) -> Value {
        let (datatype, shape) = match self {
            Tensor::Bytes { shape, .. } => ("BYTES", shape),
            Tensor::Fp32 { shape, .. } => ("FP32", shape),
        };
        let mut entry = json!({"name": name, "datatype": datatype, "shape": shape});
        if as_binary {
            let start = binary.len();
            match self {
                Tensor::Bytes { items, .. } => {
                    for item in items {
                        push_bytes(binary, item.as_bytes());
                    }
                }
                Tensor::Fp32 { values, .. } => {
                    binary.reserve(values.len() * 4);
                    for v in values.iter() {
                        binary.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
            entry["parameters"] = json!({"binary_data_size": binary.len() - start});
        } else {
            entry["data"] = match self {
                Tensor::Bytes { items, .. } => json!(items),
                Tensor::Fp32 { values, .. } => json!(values),
            };
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(V2Route::parse("/v2").unwrap(), V2Route::ServerMetadata);
        assert_eq!(V2Route::parse("/v2/health/ready").unwrap(), V2Route::Ready);
        assert_eq!(
            V2Route::parse("/v2/models/hf-vit/versions/3/infer").unwrap(),
            V2Route::Model {
                model: "hf-vit".into(),
                version: VersionSelector::Number(3),
                action: ModelAction::Infer
            }
        );
        assert_eq!(
            V2Route::parse("/v2/models/m/ready").unwrap(),
            V2Route::Model {
                model: "m".into(),
                version: VersionSelector::Latest,
                action: ModelAction::Ready
            }
        );
        assert_eq!(
            V2Route::parse("/v2/models/m/versions/x")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(V2Route::parse("/v2/models/m/x/y").unwrap_err().status, 404);
        assert_eq!(V2Route::parse("/v2/repository").unwrap_err().status, 404);
        assert_eq!(
            V2Route::model_path("m", 2, ModelAction::Infer),
            "/v2/models/m/versions/2/infer"
        );
    }

    fn parse(body: &[u8], header: Option<usize>) -> Result<InferRequest<'_>, ApiError> {
        InferRequest::parse(body, header, &RequestLimits::default())
    }

    #[test]
    fn binary_and_json_inputs() {
        let mut binary = Vec::new();
        push_bytes(&mut binary, b"one");
        push_bytes(&mut binary, b"");
        push_bytes(&mut binary, b"three");
        let header = format!(
            r#"{{"inputs":[{{"name":"string_input","datatype":"BYTES","shape":[3],"parameters":{{"binary_data_size":{}}}}}],
                "outputs":[{{"name":"probabilities","parameters":{{"binary_data":true,"classification":2}}}}]}}"#,
            binary.len()
        );
        let body = [header.as_bytes(), &binary].concat();
        let req = parse(&body, Some(header.len())).expect("valid");
        let Input::Images(images) = &req.input else {
            panic!("images expected")
        };
        assert_eq!(images.len(), 3);
        assert_eq!(&*images[2], b"three");
        assert!(
            matches!(images[0], Cow::Borrowed(_)),
            "binary data is not copied"
        );
        assert_eq!(
            req.outputs,
            vec![RequestedOutput {
                name: PROBABILITIES,
                binary: true,
                classification: Some(2)
            }]
        );

        let req = parse(
            br#"{"id":"7","inputs":[{"name":"pixel_values","datatype":"FP32","shape":[1,1,2,2],"data":[[1,2],[3,4]]}]}"#,
            None,
        )
        .expect("valid");
        let Input::Pixels { shape, data } = req.input else {
            panic!("pixels expected")
        };
        assert_eq!((shape, data), (vec![1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]));
        assert_eq!(req.outputs.len(), 2, "label and confidence by default");
        assert_eq!(req.id, Some(json!("7")));

        let req = parse(
            br#"{"inputs":[{"name":"string_input","datatype":"BYTES","shape":[1],"data":["aGk_"]}]}"#,
            None,
        )
        .expect("valid");
        let Input::Images(images) = req.input else {
            panic!("images expected")
        };
        assert_eq!(&*images[0], b"hi?");
    }

    #[test]
    fn bad_requests() {
        let cases: [(&[u8], Option<usize>, &str); 10] = [
            (b"{", None, "not valid JSON"),
            (br#"{"inputs":[]}"#, None, "exactly one"),
            (
                br#"{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"data":["aGk"]}]}"#,
                None,
                "unknown input",
            ),
            (
                br#"{"inputs":[{"name":"string_input","datatype":"FP32","shape":[1],"data":[1]}]}"#,
                None,
                "must be BYTES",
            ),
            (
                br#"{"inputs":[{"name":"string_input","datatype":"BYTES","shape":[2],"data":["aGk"]}]}"#,
                None,
                "carries 1 images",
            ),
            (
                br#"{"inputs":[{"name":"string_input","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":10}}]}"#,
                Some(200),
                "only",
            ),
            (
                br#"{"inputs":[{"name":"pixel_values","datatype":"FP32","shape":[1,3],"data":[1,2]}]}"#,
                None,
                "carries 2",
            ),
            (
                br#"{"inputs":[{"name":"string_input","datatype":"BYTES","shape":[1],"data":["aGk"]}],"outputs":[{"name":"logits"}]}"#,
                None,
                "unknown output",
            ),
            (
                br#"{"inputs":[{"name":"string_input","datatype":"BYTES","shape":[100],"data":[]}]}"#,
                None,
                "the limit is 64",
            ),
            (
                br#"{"inputs":[{"name":"pixel_values","datatype":"FP32","shape":[1,1,1,1],"data":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}]}"#,
                None,
                "more than 32 levels deep",
            ),
        ];
        for (body, header, want) in cases {
            let e = parse(body, header).expect_err(want);
            assert_eq!(e.status, 400, "{want}");
            assert!(e.message.contains(want), "{want}: {}", e.message);
        }
        let mut truncated = Vec::new();
        push_bytes(&mut truncated, b"abc");
        truncated.pop();
        assert!(split_bytes(&truncated).is_err());
        assert!(split_bytes(&[1, 0]).is_err());
    }
}
