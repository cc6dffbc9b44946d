//! Reads a `model.onnx` into tract one initializer at a time.
//!
//! tract's ONNX reader takes a decoded `ModelProto` and converts every
//! initializer while the whole protobuf is held: two copies of the weights at
//! once. Wasm memory never shrinks, so that peak is what a guest instance
//! keeps, and it is what a pre-initialized snapshot's memory image spans
//! (DEPLOY.md). Here the file is walked at the protobuf wire level, skipping
//! the initializers' bytes; the rest of the model is decoded and parsed by
//! tract, which leaves each initializer as an unresolved source; then each
//! initializer is read from the file, converted, and made that source's
//! constant in turn. Loading holds the weights once, plus one tensor.
//!
//! The walk is written here rather than taken from prost, which decodes only
//! whole messages held in memory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};

use anyhow::{Context, bail, ensure};
use prost::Message;
use tract_onnx::pb::{GraphProto, ModelProto, TensorProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::ops::konst::Const;

use super::OnnxFile;

/// `ModelProto.graph` and `GraphProto.initializer` (onnx.proto).
const MODEL_GRAPH: u64 = 7;
const GRAPH_INITIALIZER: u64 = 5;

/// Protobuf wire types.
const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

/// Parses the ONNX model in `file` into tract's inference model, its
/// initializers as constants.
pub fn read_model(file: &mut dyn OnnxFile) -> anyhow::Result<InferenceModel> {
    let layout = Layout::of(file).context("cannot read model.onnx as ONNX")?;
    let mut proto =
        ModelProto::decode(layout.model.as_slice()).context("cannot parse model.onnx as ONNX")?;
    ensure!(layout.has_graph, "model.onnx holds no graph");
    let graph =
        GraphProto::decode(layout.graph.as_slice()).context("cannot parse the ONNX graph")?;
    check_outputs(&graph)?;
    proto.graph = Some(graph);
    drop(layout.model);
    drop(layout.graph);
    let onnx = tract_onnx::onnx();
    let parsed = onnx
        .parse(&proto, None)
        .context("cannot parse model.onnx as ONNX")?;
    drop(proto);
    let mut model = parsed.model;
    // Each initializer is a source of that name now, a typed one when the
    // graph also lists it as an input (older exports do).
    let mut sources: HashMap<String, usize> = model
        .inputs
        .iter()
        .map(|o| (model.node(o.node).name.clone(), o.node))
        .collect();
    for (offset, len) in layout.initializers {
        let proto = read_tensor(file, offset, len)?;
        let Some(node) = sources.remove(&proto.name) else {
            // Used by no node, or a name repeated: the first is kept, where
            // tract's reader keeps the last (ONNX's checker refuses both).
            continue;
        };
        let tensor = tract_onnx::tensor::load_tensor(&*onnx.provider, &proto, None)
            .with_context(|| format!("cannot load initializer {:?}", proto.name))?;
        drop(proto);
        make_const(&mut model, node, tensor.into_arc_tensor())?;
    }
    let unresolved: Vec<&String> = parsed
        .unresolved_inputs
        .iter()
        .filter(|name| sources.contains_key(*name))
        .collect();
    if !unresolved.is_empty() {
        bail!("model.onnx: nodes read inputs that nothing produces: {unresolved:?}");
    }
    Ok(model)
}

/// Refuses a graph output that no node computes: tract's reader would index
/// its table of names with it and panic, since initializers are not in it yet.
fn check_outputs(graph: &GraphProto) -> anyhow::Result<()> {
    for output in &graph.output {
        let computed = graph.node.iter().any(|n| n.output.contains(&output.name))
            || graph.input.iter().any(|i| i.name == output.name);
        ensure!(
            computed,
            "model.onnx's output {:?} is computed by no node; re-export the model with it computed",
            output.name
        );
    }
    Ok(())
}

/// One initializer's `TensorProto`, read from the file and decoded.
fn read_tensor(file: &mut dyn OnnxFile, offset: u64, len: u64) -> anyhow::Result<TensorProto> {
    let len = usize::try_from(len).context("an initializer too large for this platform")?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = vec![0; len];
    file.read_exact(&mut bytes)
        .context("model.onnx ends inside an initializer")?;
    TensorProto::decode(bytes.as_slice()).context("cannot parse an initializer of model.onnx")
}

/// Turns the source `node` into the constant `tensor`, as tract's reader adds
/// an initializer.
fn make_const(model: &mut InferenceModel, node: usize, tensor: Arc<Tensor>) -> anyhow::Result<()> {
    let fact = TypedFact::try_from(tensor.clone())?;
    model.node_mut(node).op = Const::new(tensor)?.into();
    model.set_outlet_fact(OutletId::new(node, 0), fact.into())?;
    model.inputs.retain(|o| o.node != node);
    Ok(())
}

/// Where a model's parts lie in its file.
#[derive(Default)]
struct Layout {
    /// The `ModelProto`'s fields but its graph, as encoded.
    model: Vec<u8>,
    /// The graph's fields but its initializers, as encoded.
    graph: Vec<u8>,
    has_graph: bool,
    /// Each initializer's `TensorProto`: offset and length in the file.
    initializers: Vec<(u64, u64)>,
}

impl Layout {
    fn of(file: &mut dyn OnnxFile) -> anyhow::Result<Layout> {
        file.seek(SeekFrom::Start(0))?;
        let mut wire = Wire {
            inner: BufReader::with_capacity(64 << 10, file),
            pos: 0,
        };
        let mut layout = Layout::default();
        let mut key = Vec::new();
        while let Some(tag) = wire.key(&mut key)? {
            if tag == (MODEL_GRAPH, LEN) {
                layout.has_graph = true;
                let len = wire.varint(&mut Vec::new())?;
                let end = wire.pos + len;
                while wire.pos < end {
                    let tag = wire.key(&mut key)?.context("the graph is cut short")?;
                    if tag == (GRAPH_INITIALIZER, LEN) {
                        let len = wire.varint(&mut Vec::new())?;
                        layout.initializers.push((wire.pos, len));
                        wire.skip(len)?;
                    } else {
                        layout.graph.extend_from_slice(&key);
                        wire.copy_value(tag.1, &mut layout.graph)?;
                    }
                }
                ensure!(wire.pos == end, "a graph field overruns the graph");
            } else {
                layout.model.extend_from_slice(&key);
                wire.copy_value(tag.1, &mut layout.model)?;
            }
        }
        Ok(layout)
    }
}

/// A protobuf wire reader over a buffered file, counting its position.
struct Wire<R> {
    inner: R,
    pos: u64,
}

impl<R: BufRead + Seek> Wire<R> {
    fn byte(&mut self) -> anyhow::Result<Option<u8>> {
        let Some(&b) = self.inner.fill_buf()?.first() else {
            return Ok(None);
        };
        self.inner.consume(1);
        self.pos += 1;
        Ok(Some(b))
    }

    /// A varint, its encoded bytes appended to `raw`.
    fn varint(&mut self, raw: &mut Vec<u8>) -> anyhow::Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?.context("the file ends inside a varint")?;
            raw.push(b);
            value |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(value);
            }
        }
        bail!("a varint longer than 10 bytes")
    }

    /// The next field's `(number, wire type)`, its encoded key in `raw`, or
    /// `None` at the end of the file.
    fn key(&mut self, raw: &mut Vec<u8>) -> anyhow::Result<Option<(u64, u64)>> {
        raw.clear();
        let Some(b) = self.byte()? else {
            return Ok(None);
        };
        raw.push(b);
        let key = if b < 0x80 {
            u64::from(b)
        } else {
            u64::from(b & 0x7f) | self.varint(raw)? << 7
        };
        Ok(Some((key >> 3, key & 7)))
    }

    /// Appends a field's value of `wire_type`, as encoded, to `out`.
    fn copy_value(&mut self, wire_type: u64, out: &mut Vec<u8>) -> anyhow::Result<()> {
        let len = match wire_type {
            VARINT => {
                self.varint(out)?;
                return Ok(());
            }
            FIXED64 => 8,
            FIXED32 => 4,
            LEN => self.varint(out)?,
            other => bail!("unsupported protobuf wire type {other}"),
        };
        let start = out.len();
        out.resize(start + usize::try_from(len)?, 0);
        self.inner
            .read_exact(&mut out[start..])
            .context("the file ends inside a field")?;
        self.pos += len;
        Ok(())
    }

    fn skip(&mut self, len: u64) -> anyhow::Result<()> {
        self.inner.seek_relative(i64::try_from(len)?)?;
        self.pos += len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model whose parts cover the wire cases: the graph split in two
    /// fields (protobuf merges them), an initializer that is also a graph
    /// input, one used by no node, and a second graph field after others.
    fn model() -> ModelProto {
        use tract_onnx::pb::*;
        let tensor = |name: &str, values: &[f32]| TensorProto {
            name: name.into(),
            dims: vec![values.len() as i64],
            data_type: tensor_proto::DataType::Float as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        };
        let input = |name: &str| ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: tensor_proto::DataType::Float as i32,
                    shape: Some(TensorShapeProto {
                        dim: vec![tensor_shape_proto::Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimValue(3)),
                            ..Default::default()
                        }],
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        let node = |op: &str, inputs: &[&str], output: &str| NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        };
        ModelProto {
            ir_version: 7,
            producer_name: "vitrine-test".into(),
            opset_import: vec![OperatorSetIdProto {
                version: 13,
                ..Default::default()
            }],
            graph: Some(GraphProto {
                name: "g".into(),
                node: vec![
                    node("Mul", &["x", "scale"], "y"),
                    node("Add", &["y", "bias"], "z"),
                ],
                initializer: vec![
                    tensor("scale", &[2.0, 3.0, 4.0]),
                    tensor("bias", &[0.5, -0.5, 1.0]),
                    tensor("unused", &[9.0; 3]),
                ],
                input: vec![input("x"), input("bias")],
                output: vec![input("z")],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn run(model: InferenceModel) -> Vec<f32> {
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .expect("plan");
        let out = plan
            .run(tvec!(tensor1(&[1f32, 2.0, 3.0]).into()))
            .expect("run");
        out[0]
            .try_as_plain_ram()
            .and_then(|view| view.as_slice::<f32>().map(<[f32]>::to_vec))
            .expect("f32 output")
    }

    #[test]
    fn reads_the_model_tract_reads() {
        let proto = model();
        let bytes = proto.encode_to_vec();
        let ours = read_model(&mut std::io::Cursor::new(&bytes)).expect("streamed");
        let tracts = run(tract_onnx::onnx()
            .model_for_proto_model(&proto)
            .expect("tract"));
        assert_eq!(ours.inputs.len(), 1, "only x stays an input");
        assert_eq!(tracts, [2.5, 5.5, 13.0]);
        assert_eq!(run(ours), tracts);
    }

    #[test]
    fn a_graph_in_two_fields_is_merged() {
        let mut proto = model();
        let graph = proto.graph.take().expect("graph");
        let mut second = GraphProto::default();
        let mut first = graph.clone();
        second.node = first.node.split_off(1);
        second.initializer = first.initializer.split_off(1);
        // model fields, graph part one, a model field, graph part two
        let mut bytes = proto.encode_to_vec();
        let field = |g: &GraphProto| {
            ModelProto {
                graph: Some(g.clone()),
                ..Default::default()
            }
            .encode_to_vec()
        };
        bytes.extend(field(&first));
        bytes.extend(
            ModelProto {
                doc_string: "between".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        bytes.extend(field(&second));
        let ours = read_model(&mut std::io::Cursor::new(&bytes)).expect("streamed");
        assert_eq!(run(ours), [2.5, 5.5, 13.0]);
    }

    #[test]
    fn a_missing_input_is_named_and_a_cut_file_refused() {
        let mut proto = model();
        if let Some(g) = proto.graph.as_mut() {
            g.initializer.remove(0);
        }
        let err =
            read_model(&mut std::io::Cursor::new(proto.encode_to_vec())).expect_err("refused");
        assert!(format!("{err:#}").contains("scale"), "{err:#}");

        let bytes = model().encode_to_vec();
        for cut in [bytes.len() - 3, bytes.len() / 2, 5] {
            let err = read_model(&mut std::io::Cursor::new(&bytes[..cut]))
                .expect_err("a cut file is refused");
            assert!(!format!("{err:#}").is_empty());
        }
    }

    /// Every zoo export tract loads: the streamed reader's plan gives the
    /// very logits tract's own reader's plan gives.
    #[test]
    fn zoo_exports_give_the_logits_of_tracts_reader() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/zoo");
        let mut checked = 0;
        for name in [
            "clip",
            "convnext",
            "dinov2",
            "efficientnet",
            "mobilenet_v2",
            "poolformer",
            "resnet",
        ] {
            let path = root.join(name).join("model.onnx");
            let logits = |model: InferenceModel| {
                let shape = [1usize, 3, 224, 224];
                let input: Vec<f32> = (0..shape.iter().product::<usize>())
                    .map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0)
                    .collect();
                let plan = model
                    .with_input_fact(0, f32::fact(shape).into())
                    .and_then(|m| m.into_optimized())
                    .and_then(|m| m.into_runnable())
                    .expect("plan");
                let input = tract_ndarray::Array4::from_shape_vec(shape, input).expect("shape");
                let out = plan.run(tvec!(Tensor::from(input).into())).expect("run");
                out[0]
                    .try_as_plain_ram()
                    .and_then(|view| view.as_slice::<f32>().map(<[f32]>::to_vec))
                    .expect("f32 logits")
            };
            let ours = read_model(&mut std::fs::File::open(&path).expect("open")).expect(name);
            let bytes = std::fs::read(&path).expect("read");
            let tracts = tract_onnx::onnx()
                .model_for_read(&mut bytes.as_slice())
                .expect(name);
            assert_eq!(logits(ours), logits(tracts), "{name}");
            checked += 1;
        }
        assert_eq!(checked, 7);
    }
}
