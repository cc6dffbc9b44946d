//! The binary tensor data extension: BYTES elements framed by their length,
//! FP32 little-endian, after a JSON header; and output tensors rendered as
//! JSON data or binary.

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::api::ApiError;

/// Request and reply header giving the JSON part's length when binary
/// tensor data follows it.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

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

pub(crate) enum Tensor<'a> {
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
    pub(crate) fn render(&self, name: &str, as_binary: bool, binary: &mut Vec<u8>) -> Value {
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
