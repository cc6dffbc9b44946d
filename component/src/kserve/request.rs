//! Parsing an infer request: its one input (encoded images or a pixel tensor,
//! in JSON or binary) and the outputs it asks for.

use std::borrow::Cow;

use serde_json::Value;

use crate::api::{ApiError, INPUT_NAME, RequestLimits};

use super::tensor::{HEADER_LENGTH, split_bytes};

/// The input that takes pixel tensors.
pub const PIXELS_INPUT: &str = "pixel_values";
pub const LABEL: &str = "label";
pub const CONFIDENCE: &str = "confidence";
pub const PROBABILITIES: &str = "probabilities";
/// Every output, in the order replies list them.
pub const OUTPUTS: [&str; 3] = [LABEL, CONFIDENCE, PROBABILITIES];

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kserve::tensor::push_bytes;
    use serde_json::json;

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
