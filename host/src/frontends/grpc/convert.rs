//! Conversion between TF Serving's gRPC messages and what the routing core
//! speaks: model specs to version selectors, `PredictRequest` tensors to a
//! binary KServe v2 infer request, the component's binary reply to
//! `TensorProto`s, `tf.Example`s to images, and the component's metadata
//! to a `SignatureDefMap`.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;
use serde_json::{Value, json};
use tonic::Status;
use vitrine_component::api::{INPUT_NAME, SIGNATURE_NAME, VersionSelector};
use vitrine_component::kserve::{self, HEADER_LENGTH, PIXELS_INPUT};

use crate::routing::{Code, Failure, Forward};

use crate::proto::tensorflow::serving::{self as tfs, ModelSpec, model_spec};
use crate::proto::tensorflow::{self as tf, DataType, TensorProto};
use vitrine_wire::grpc::{self, InputNames, PredictInput};

/// The model and version a `ModelSpec` names, with its signature checked.
pub(super) fn target(spec: Option<&ModelSpec>) -> Result<(String, VersionSelector), Status> {
    let spec = spec.ok_or_else(|| {
        Status::invalid_argument("model_spec is missing; set model_spec.name to the model's name")
    })?;
    if spec.name.is_empty() {
        return Err(Status::invalid_argument(
            "model_spec.name is empty; set it to the model's name",
        ));
    }
    if !spec.signature_name.is_empty() && spec.signature_name != SIGNATURE_NAME {
        return Err(Status::invalid_argument(format!(
            "Serving signature name: \"{}\" not found in signature def; this model serves \"{SIGNATURE_NAME}\"",
            spec.signature_name
        )));
    }
    let selector = match &spec.version_choice {
        None => VersionSelector::Latest,
        Some(model_spec::VersionChoice::Version(v)) if *v > 0 => VersionSelector::Number(*v as u64),
        Some(model_spec::VersionChoice::Version(v)) => {
            return Err(Status::invalid_argument(format!(
                "model_spec.version must be a positive integer, got {v}"
            )));
        }
        Some(model_spec::VersionChoice::VersionLabel(l)) if l.is_empty() => VersionSelector::Latest,
        Some(model_spec::VersionChoice::VersionLabel(l)) => VersionSelector::Label(l.clone()),
    };
    Ok((spec.name.clone(), selector))
}

pub(super) fn answered_spec(model: &str, version: u64, signature: &str) -> ModelSpec {
    ModelSpec {
        name: model.to_string(),
        version_choice: Some(model_spec::VersionChoice::Version(version as i64)),
        signature_name: signature.to_string(),
    }
}

/// One v2 input: its name, datatype, shape and binary data.
pub(super) struct V2Input {
    pub(super) name: &'static str,
    pub(super) datatype: &'static str,
    pub(super) shape: Vec<usize>,
    pub(super) data: Vec<u8>,
}

impl V2Input {
    /// Frames encoded images as BYTES binary data.
    pub(super) fn images<'a>(images: impl ExactSizeIterator<Item = &'a [u8]>) -> V2Input {
        let n = images.len();
        let mut data = Vec::new();
        for image in images {
            kserve::push_bytes(&mut data, image);
        }
        V2Input {
            name: INPUT_NAME,
            datatype: "BYTES",
            shape: vec![n],
            data,
        }
    }

    /// A binary KServe v2 infer request asking for `outputs` (plus options)
    /// in binary.
    pub(super) fn into_request(self, outputs: &[(&str, Option<usize>)]) -> Forward {
        let outputs: Vec<Value> = outputs
            .iter()
            .map(|(name, classification)| {
                let mut params = json!({"binary_data": true});
                if let Some(k) = classification {
                    params["classification"] = json!(k);
                }
                json!({"name": name, "parameters": params})
            })
            .collect();
        let header = json!({
            "inputs": [{
                "name": self.name,
                "datatype": self.datatype,
                "shape": self.shape,
                "parameters": {"binary_data_size": self.data.len()},
            }],
            "outputs": outputs,
        });
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_LENGTH, HeaderValue::from(header.len()));
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/octet-stream"),
        );
        let mut body = header;
        body.extend_from_slice(&self.data);
        Forward {
            method: hyper::Method::POST,
            headers,
            body: Bytes::from(body),
        }
    }
}

/// The input tensor of a PredictRequest as a v2 input.
pub(super) fn predict_input(inputs: &HashMap<String, TensorProto>) -> Result<V2Input, Status> {
    let names = InputNames {
        images: INPUT_NAME,
        pixels: PIXELS_INPUT,
    };
    match grpc::predict_input(inputs, names).map_err(Status::invalid_argument)? {
        PredictInput::Images(images) => Ok(V2Input::images(images.into_iter())),
        PredictInput::Pixels { shape, data } => Ok(V2Input {
            name: PIXELS_INPUT,
            datatype: "FP32",
            shape,
            data,
        }),
    }
}

/// A decoded v2 output.
pub(super) struct V2Output {
    pub(super) name: String,
    pub(super) shape: Vec<i64>,
    pub(super) value: OutputValue,
}

pub(super) enum OutputValue {
    Bytes(Vec<Vec<u8>>),
    Fp32(Vec<f32>),
}

/// Splits a binary v2 infer reply into its outputs.
pub(super) fn v2_outputs(headers: &HeaderMap, body: &[u8]) -> Result<Vec<V2Output>, Failure> {
    let broken = |why: String| {
        Failure::new(
            Code::Internal,
            format!("the model's reply is malformed: {why}"),
        )
    };
    let header_len = headers
        .get(HEADER_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(body.len())
        .min(body.len());
    let (header, mut binary) = body.split_at(header_len);
    let header: Value = serde_json::from_slice(header).map_err(|e| broken(e.to_string()))?;
    let outputs = header["outputs"]
        .as_array()
        .ok_or_else(|| broken("no outputs".into()))?;
    outputs
        .iter()
        .map(|o| {
            let name = o["name"].as_str().unwrap_or_default().to_string();
            let shape: Vec<i64> = o["shape"]
                .as_array()
                .map(|d| d.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            let size = o["parameters"]["binary_data_size"]
                .as_u64()
                .ok_or_else(|| broken(format!("{name} is not binary")))?
                as usize;
            if size > binary.len() {
                return Err(broken(format!("{name} is truncated")));
            }
            let (data, rest) = binary.split_at(size);
            binary = rest;
            let value = match o["datatype"].as_str() {
                Some("BYTES") => OutputValue::Bytes(
                    kserve::split_bytes(data)
                        .map_err(|e| broken(e.message))?
                        .into_iter()
                        .map(|b| b.into_owned())
                        .collect(),
                ),
                Some("FP32") => OutputValue::Fp32(
                    data.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                ),
                other => return Err(broken(format!("{name} has datatype {other:?}"))),
            };
            Ok(V2Output { name, shape, value })
        })
        .collect()
}

impl From<V2Output> for TensorProto {
    fn from(o: V2Output) -> TensorProto {
        let tensor_shape = Some(grpc::shape(o.shape.iter().copied()));
        match o.value {
            OutputValue::Bytes(items) => TensorProto {
                dtype: DataType::DtString as i32,
                tensor_shape,
                string_val: items,
                ..Default::default()
            },
            OutputValue::Fp32(values) => TensorProto {
                dtype: DataType::DtFloat as i32,
                tensor_shape,
                float_val: values,
                ..Default::default()
            },
        }
    }
}

/// The image in each example: the bytes feature named after the signature's
/// input, or an example's only bytes feature; the context is searched too.
pub(super) fn example_images(input: Option<&tfs::Input>) -> Result<Vec<&[u8]>, Status> {
    grpc::example_images(input, INPUT_NAME).map_err(Status::invalid_argument)
}

/// Triton's classification string `"score:index:label"` as a class.
pub(super) fn parse_class(item: &[u8]) -> tfs::Class {
    let text = String::from_utf8_lossy(item);
    let mut parts = text.splitn(3, ':');
    let score = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let _index = parts.next();
    tfs::Class {
        label: parts.next().unwrap_or_default().to_string(),
        score,
    }
}

/// The component's REST `signature_def` JSON as TF Serving's proto.
pub(super) fn signature_def_map(json: &Value) -> tfs::SignatureDefMap {
    let tensors = |v: &Value| -> HashMap<String, tf::TensorInfo> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .map(|(alias, info)| {
                        let dims = info["tensor_shape"]["dim"].as_array();
                        let sizes = dims.into_iter().flatten().map(|d| {
                            d["size"]
                                .as_str()
                                .and_then(|s| s.parse().ok())
                                .or_else(|| d["size"].as_i64())
                                .unwrap_or(-1)
                        });
                        let dtype = info["dtype"]
                            .as_str()
                            .and_then(DataType::from_str_name)
                            .unwrap_or(DataType::DtInvalid);
                        let tensor = tf::TensorInfo {
                            dtype: dtype as i32,
                            tensor_shape: Some(grpc::shape(sizes)),
                            encoding: info["name"]
                                .as_str()
                                .map(|n| tf::tensor_info::Encoding::Name(n.to_string())),
                        };
                        (alias.clone(), tensor)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    tfs::SignatureDefMap {
        signature_def: json
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(name, sig)| {
                        let def = tf::SignatureDef {
                            inputs: tensors(&sig["inputs"]),
                            outputs: tensors(&sig["outputs"]),
                            method_name: sig["method_name"].as_str().unwrap_or_default().into(),
                        };
                        (name.clone(), def)
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use vitrine_component::kserve::LABEL;

    fn spec(version: Option<model_spec::VersionChoice>, signature: &str) -> ModelSpec {
        ModelSpec {
            name: "m".into(),
            version_choice: version,
            signature_name: signature.into(),
        }
    }

    #[test]
    fn model_specs_resolve_like_rest_paths() {
        use model_spec::VersionChoice::*;
        assert_eq!(
            target(Some(&spec(None, ""))).unwrap(),
            ("m".into(), VersionSelector::Latest)
        );
        assert_eq!(
            target(Some(&spec(Some(Version(3)), "serving_default"))).unwrap(),
            ("m".into(), VersionSelector::Number(3))
        );
        assert_eq!(
            target(Some(&spec(Some(VersionLabel("stable".into())), ""))).unwrap(),
            ("m".into(), VersionSelector::Label("stable".into()))
        );
        for bad in [spec(Some(Version(0)), ""), spec(None, "classify_images")] {
            assert_eq!(
                target(Some(&bad)).unwrap_err().code(),
                tonic::Code::InvalidArgument
            );
        }
        assert_eq!(
            target(None).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    pub(in crate::frontends::grpc) fn string_tensor(items: &[&[u8]], dims: &[i64]) -> TensorProto {
        TensorProto {
            dtype: DataType::DtString as i32,
            tensor_shape: Some(grpc::shape(dims.iter().copied())),
            string_val: items.iter().map(|i| i.to_vec()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn predict_inputs_become_binary_v2_requests() {
        let inputs = HashMap::from([(
            INPUT_NAME.to_string(),
            string_tensor(&[b"jpeg-1", b"jpeg-2"], &[2]),
        )]);
        let forward = predict_input(&inputs)
            .expect("valid")
            .into_request(&[(LABEL, None)]);
        let header_len: usize = forward.headers[HEADER_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let req = kserve::InferRequest::parse(&forward.body, Some(header_len), &Default::default())
            .expect("the component accepts it");
        let kserve::Input::Images(images) = req.input else {
            panic!("images expected")
        };
        assert_eq!(
            images.iter().map(|i| &**i).collect::<Vec<_>>(),
            [b"jpeg-1", b"jpeg-2"]
        );

        let bad = [
            HashMap::new(),
            HashMap::from([("images".to_string(), string_tensor(&[b"x"], &[1]))]),
            HashMap::from([(INPUT_NAME.to_string(), string_tensor(&[b"x"], &[2]))]),
            HashMap::from([(INPUT_NAME.to_string(), string_tensor(&[], &[0]))]),
            HashMap::from([(
                INPUT_NAME.to_string(),
                TensorProto {
                    dtype: DataType::DtFloat as i32,
                    float_val: vec![1.0],
                    ..Default::default()
                },
            )]),
        ];
        for inputs in bad {
            assert_eq!(
                predict_input(&inputs).err().map(|s| s.code()),
                Some(tonic::Code::InvalidArgument)
            );
        }
    }

    #[test]
    fn classes_parse() {
        let c = parse_class(b"0.25:285:Egyptian cat");
        assert_eq!((c.label.as_str(), c.score), ("Egyptian cat", 0.25));
        let c = parse_class(b"0.5:1:a:b");
        assert_eq!(c.label, "a:b");
    }
}
