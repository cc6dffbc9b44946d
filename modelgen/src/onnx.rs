//! Streams the ONNX `ModelProto` to a writer without holding all weights in memory.
//!
//! Protobuf messages are concatenations of fields, and prost writes fields in tag
//! order. The model is therefore emitted as: ModelProto fields 1-6, the `graph`
//! field (7) whose length is computed up front, then `opset_import` (8) and
//! `metadata_props` (14). Inside the graph come `node`/`name` (1, 2), one
//! `initializer` (5) per parameter generated just in time, then `doc_string`,
//! `input`, `output` (10-12). The bytes equal `encode_to_vec` of the whole model.

use std::io::{self, Write};

use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{
    GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
};

use crate::hf_config::RANDOM_WEIGHTS_NOTE;
use crate::init::{self, Param};
use crate::{Progress, VitConfig, graph};

/// What torch 2.x writes for opset 14 exports (checked against a real export).
pub(crate) const IR_VERSION: i64 = 7;
pub(crate) const OPSET: i64 = 14;

const MODEL_GRAPH: u32 = 7;
const GRAPH_INITIALIZER: u32 = 5;
const TENSOR_RAW_DATA: u32 = 9;

/// Everything about model.onnx except the weight values.
pub(crate) struct OnnxModel {
    seed: u64,
    head: ModelProto,
    graph_head: GraphProto,
    params: Vec<(Param, TensorProto)>,
    graph_tail: GraphProto,
    tail: ModelProto,
}

impl OnnxModel {
    pub fn new(config: &VitConfig, num_labels: usize, seed: u64) -> Self {
        let graph = graph::build(config, num_labels);
        let params = init::parameters(config, num_labels)
            .into_iter()
            .map(|param| {
                let header = TensorProto {
                    dims: param.dims.iter().map(|&d| d as i64).collect(),
                    data_type: DataType::Float as i32,
                    name: param.name.clone(),
                    ..Default::default()
                };
                (param, header)
            })
            .collect();
        let doc = format!("{RANDOM_WEIGHTS_NOTE} ViTForImageClassification, seed {seed}.");
        let meta = |key: &str, value: String| StringStringEntryProto {
            key: key.into(),
            value,
        };
        Self {
            seed,
            head: ModelProto {
                ir_version: IR_VERSION,
                producer_name: "vitrine-modelgen".into(),
                producer_version: env!("CARGO_PKG_VERSION").into(),
                doc_string: doc.clone(),
                ..Default::default()
            },
            graph_head: GraphProto {
                node: graph.nodes,
                name: "main_graph".into(),
                ..Default::default()
            },
            params,
            graph_tail: GraphProto {
                doc_string: doc,
                input: graph.inputs,
                output: graph.outputs,
                ..Default::default()
            },
            tail: ModelProto {
                opset_import: vec![OperatorSetIdProto {
                    domain: String::new(),
                    version: OPSET,
                }],
                metadata_props: vec![
                    meta("vitrine.random_weights", "true".into()),
                    meta("vitrine.seed", seed.to_string()),
                    meta("vitrine.note", RANDOM_WEIGHTS_NOTE.into()),
                ],
                ..Default::default()
            },
        }
    }

    /// Size of the encoded `TensorProto` for parameter `index`.
    fn tensor_len(&self, index: usize) -> usize {
        let (param, header) = &self.params[index];
        header.encoded_len() + field_len(TENSOR_RAW_DATA, param.byte_len())
    }

    fn graph_len(&self) -> usize {
        let initializers: usize = (0..self.params.len())
            .map(|i| field_len(GRAPH_INITIALIZER, self.tensor_len(i)))
            .sum();
        self.graph_head.encoded_len() + initializers + self.graph_tail.encoded_len()
    }

    /// Exact size of model.onnx in bytes.
    pub fn encoded_len(&self) -> u64 {
        let len = self.head.encoded_len()
            + field_len(MODEL_GRAPH, self.graph_len())
            + self.tail.encoded_len();
        len as u64
    }

    /// Generates the weights and writes the model; returns the bytes written.
    pub fn write(
        &self,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(Progress),
    ) -> io::Result<u64> {
        let mut out = Counting { out, bytes: 0 };
        let mut prefix = self.head.encode_to_vec();
        field_prefix(MODEL_GRAPH, self.graph_len(), &mut prefix);
        prefix.extend_from_slice(&self.graph_head.encode_to_vec());
        out.put(&prefix)?;

        let total = self.params.len();
        let mut data = Vec::new();
        for (index, (param, header)) in self.params.iter().enumerate() {
            let name = &param.name;
            progress(Progress::Tensor { name, index, total });
            param.fill_le_bytes(self.seed, index, &mut data);
            prefix.clear();
            field_prefix(GRAPH_INITIALIZER, self.tensor_len(index), &mut prefix);
            prefix.extend_from_slice(&header.encode_to_vec());
            field_prefix(TENSOR_RAW_DATA, data.len(), &mut prefix);
            out.put(&prefix)?;
            out.put(&data)?;
            progress(Progress::Writing { bytes: out.bytes });
        }

        let mut suffix = self.graph_tail.encode_to_vec();
        suffix.extend_from_slice(&self.tail.encode_to_vec());
        out.put(&suffix)?;
        Ok(out.bytes)
    }
}

struct Counting<'a> {
    out: &'a mut dyn Write,
    bytes: u64,
}

impl Counting<'_> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }
}

/// Key and length prefix of a length-delimited field.
fn field_prefix(tag: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// Encoded size of a length-delimited field with a `len`-byte payload.
fn field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streamed file must be byte-identical to prost's encoding of the whole model.
    #[test]
    fn streaming_matches_prost_encoding() {
        let config = VitConfig {
            num_hidden_layers: 1,
            ..VitConfig::tiny()
        };
        let model = OnnxModel::new(&config, 10, 3);
        let mut streamed = Vec::new();
        let written = model.write(&mut streamed, &mut |_| {}).unwrap();
        assert_eq!(written, streamed.len() as u64);
        assert_eq!(model.encoded_len(), written);

        let mut data = Vec::new();
        let initializer = model
            .params
            .iter()
            .enumerate()
            .map(|(index, (param, header))| {
                param.fill_le_bytes(model.seed, index, &mut data);
                TensorProto {
                    raw_data: data.clone(),
                    ..header.clone()
                }
            })
            .collect();
        let whole = ModelProto {
            graph: Some(GraphProto {
                initializer,
                ..merge(model.graph_head.clone(), model.graph_tail.clone())
            }),
            opset_import: model.tail.opset_import.clone(),
            metadata_props: model.tail.metadata_props.clone(),
            ..model.head.clone()
        };
        assert!(streamed == whole.encode_to_vec(), "streamed bytes differ");
        assert_eq!(ModelProto::decode(streamed.as_slice()).unwrap(), whole);
    }

    fn merge(head: GraphProto, tail: GraphProto) -> GraphProto {
        GraphProto {
            node: head.node,
            name: head.name,
            ..tail
        }
    }
}
