//! The ONNX graph of `ViTForImageClassification`, in the operator vocabulary a torch
//! export at opset 14 uses (decomposed LayerNorm, erf GELU, MatMul attention).
//!
//! Weights keep HF names and PyTorch layouts, so Linear weights (`[out, in]`) feed
//! MatMul through a Transpose that runtimes fold at load time. (torch instead
//! stores them pre-transposed under anonymous `onnx::MatMul_*` names.)

use std::collections::HashMap;

use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
use tract_onnx::pb::type_proto::{self, Tensor as TensorType};
use tract_onnx::pb::{
    AttributeProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use crate::VitConfig;

pub(crate) const INPUT: &str = "pixel_values";
pub(crate) const OUTPUT: &str = "logits";
pub(crate) const BATCH: &str = "batch_size";

/// Graph pieces that do not depend on the weights' values.
pub(crate) struct Graph {
    pub nodes: Vec<NodeProto>,
    pub inputs: Vec<ValueInfoProto>,
    pub outputs: Vec<ValueInfoProto>,
}

pub(crate) fn build(config: &VitConfig, num_labels: usize) -> Graph {
    let mut b = Builder::default();
    let c = Constants::new(&mut b, config);

    let mut hidden = embeddings(&mut b, &c, config);
    for i in 0..config.num_hidden_layers {
        hidden = encoder_layer(&mut b, &c, config, i, &hidden);
    }
    let hidden = layer_norm(&mut b, &c, "/vit/layernorm", "vit.layernorm", &hidden);

    // Classify from the CLS token, as torch exports `sequence_output[:, 0, :]` + Linear.
    let cls = b.op(
        "",
        "Gather",
        &[&hidden, &c.zero_index],
        vec![int("axis", 1)],
    );
    b.op_named(
        "/classifier",
        "Gemm",
        &[&cls, "classifier.weight", "classifier.bias"],
        vec![float("alpha", 1.0), float("beta", 1.0), int("transB", 1)],
        OUTPUT,
    );

    let image = config.image_size as i64;
    Graph {
        nodes: b.nodes,
        inputs: vec![value_info(
            INPUT,
            &[
                Dim::Batch,
                Dim::Fixed(config.num_channels as i64),
                Dim::Fixed(image),
                Dim::Fixed(image),
            ],
        )],
        outputs: vec![value_info(
            OUTPUT,
            &[Dim::Batch, Dim::Fixed(num_labels as i64)],
        )],
    }
}

/// Patch projection, CLS token and position embeddings: `[B, C, H, W] -> [B, 1 + N, D]`.
fn embeddings(b: &mut Builder, c: &Constants, config: &VitConfig) -> String {
    let scope = "/vit/embeddings";
    let p = config.patch_size as i64;
    let conv = b.op(
        &format!("{scope}/patch_embeddings/projection"),
        "Conv",
        &[
            INPUT,
            "vit.embeddings.patch_embeddings.projection.weight",
            "vit.embeddings.patch_embeddings.projection.bias",
        ],
        vec![
            ints("dilations", &[1, 1]),
            int("group", 1),
            ints("kernel_shape", &[p, p]),
            ints("pads", &[0, 0, 0, 0]),
            ints("strides", &[p, p]),
        ],
    );
    // flatten(2).transpose(1, 2)
    let scope_pe = format!("{scope}/patch_embeddings");
    let flat = b.op(&scope_pe, "Reshape", &[&conv, &c.flatten_patches], vec![]);
    let patches = b.op(
        &scope_pe,
        "Transpose",
        &[&flat],
        vec![ints("perm", &[0, 2, 1])],
    );

    // cls_token.expand(batch, -1, -1): broadcast [1, 1, D] against [B, 1, 1].
    let shape = b.op(scope, "Shape", &[INPUT], vec![]);
    let batch = b.op(
        scope,
        "Slice",
        &[&shape, &c.zero_1d, &c.one_1d, &c.zero_1d],
        vec![],
    );
    // Concat's axis is -1 rather than 0: proto3 encoding drops zero-valued ints.
    let expand_shape = b.op(scope, "Concat", &[&batch, &c.ones_2], vec![int("axis", -1)]);
    let cls = b.op(
        scope,
        "Expand",
        &["vit.embeddings.cls_token", &expand_shape],
        vec![],
    );
    let tokens = b.op(scope, "Concat", &[&cls, &patches], vec![int("axis", 1)]);
    b.op(
        scope,
        "Add",
        &[&tokens, "vit.embeddings.position_embeddings"],
        vec![],
    )
}

/// Pre-LN transformer block (`ViTLayer`).
fn encoder_layer(
    b: &mut Builder,
    c: &Constants,
    config: &VitConfig,
    index: usize,
    input: &str,
) -> String {
    let scope = format!("/vit/encoder/layer.{index}");
    let param = format!("vit.encoder.layer.{index}");

    let normed = layer_norm(
        b,
        c,
        &format!("{scope}/layernorm_before"),
        &format!("{param}.layernorm_before"),
        input,
    );
    let attn_scope = format!("{scope}/attention/attention");
    let attn_param = format!("{param}.attention.attention");
    let bias = config.qkv_bias;
    let heads = |b: &mut Builder, name: &str, perm: &[i64]| {
        let projected = linear(
            b,
            &format!("{attn_scope}/{name}"),
            &format!("{attn_param}.{name}"),
            &normed,
            bias,
        );
        let split = b.op(
            &attn_scope,
            "Reshape",
            &[&projected, &c.split_heads],
            vec![],
        );
        b.op(
            &attn_scope,
            "Transpose",
            &[&split],
            vec![ints("perm", perm)],
        )
    };
    let q = heads(b, "query", &[0, 2, 1, 3]); // [B, heads, S, d]
    let k_t = heads(b, "key", &[0, 2, 3, 1]); // [B, heads, d, S]
    let v = heads(b, "value", &[0, 2, 1, 3]); // [B, heads, S, d]
    let scores = b.op(&attn_scope, "MatMul", &[&q, &k_t], vec![]);
    let scaled = b.op(&attn_scope, "Div", &[&scores, &c.sqrt_head_dim], vec![]);
    let probs = b.op(&attn_scope, "Softmax", &[&scaled], vec![int("axis", -1)]);
    let context = b.op(&attn_scope, "MatMul", &[&probs, &v], vec![]);
    let merged = b.op(
        &attn_scope,
        "Transpose",
        &[&context],
        vec![ints("perm", &[0, 2, 1, 3])],
    );
    let merged = b.op(&attn_scope, "Reshape", &[&merged, &c.merge_heads], vec![]);
    let attended = linear(
        b,
        &format!("{scope}/attention/output/dense"),
        &format!("{param}.attention.output.dense"),
        &merged,
        true,
    );
    let residual = b.op(&scope, "Add", &[&attended, input], vec![]);

    let normed = layer_norm(
        b,
        c,
        &format!("{scope}/layernorm_after"),
        &format!("{param}.layernorm_after"),
        &residual,
    );
    let up = linear(
        b,
        &format!("{scope}/intermediate/dense"),
        &format!("{param}.intermediate.dense"),
        &normed,
        true,
    );
    let activated = gelu(
        b,
        c,
        &format!("{scope}/intermediate/intermediate_act_fn"),
        &up,
    );
    let down = linear(
        b,
        &format!("{scope}/output/dense"),
        &format!("{param}.output.dense"),
        &activated,
        true,
    );
    b.op(&scope, "Add", &[&down, &residual], vec![])
}

/// `nn.Linear` on a `[B, S, in]` activation: `x @ W^T + b`.
fn linear(b: &mut Builder, scope: &str, param: &str, input: &str, bias: bool) -> String {
    let weight = format!("{param}.weight");
    let weight_t = b.op(scope, "Transpose", &[&weight], vec![ints("perm", &[1, 0])]);
    let product = b.op(scope, "MatMul", &[input, &weight_t], vec![]);
    if bias {
        b.op(scope, "Add", &[&format!("{param}.bias"), &product], vec![])
    } else {
        product
    }
}

/// `nn.LayerNorm` over the last axis, decomposed the way torch exports it at opset 14.
fn layer_norm(b: &mut Builder, c: &Constants, scope: &str, param: &str, input: &str) -> String {
    let last_axis = || vec![ints("axes", &[-1])];
    let mean = b.op(scope, "ReduceMean", &[input], last_axis());
    let centered = b.op(scope, "Sub", &[input, &mean], vec![]);
    let squared = b.op(scope, "Pow", &[&centered, &c.two], vec![]);
    let variance = b.op(scope, "ReduceMean", &[&squared], last_axis());
    let shifted = b.op(scope, "Add", &[&variance, &c.eps], vec![]);
    let std = b.op(scope, "Sqrt", &[&shifted], vec![]);
    let normalized = b.op(scope, "Div", &[&centered, &std], vec![]);
    let scaled = b.op(
        scope,
        "Mul",
        &[&normalized, &format!("{param}.weight")],
        vec![],
    );
    b.op(scope, "Add", &[&scaled, &format!("{param}.bias")], vec![])
}

/// Exact GELU: `0.5 * x * (1 + erf(x / sqrt(2)))`.
fn gelu(b: &mut Builder, c: &Constants, scope: &str, input: &str) -> String {
    let divided = b.op(scope, "Div", &[input, &c.sqrt_two], vec![]);
    let erf = b.op(scope, "Erf", &[&divided], vec![]);
    let shifted = b.op(scope, "Add", &[&erf, &c.one], vec![]);
    let product = b.op(scope, "Mul", &[input, &shifted], vec![]);
    b.op(scope, "Mul", &[&product, &c.half], vec![])
}

/// Constant nodes shared by every layer.
struct Constants {
    two: String,
    eps: String,
    sqrt_two: String,
    one: String,
    half: String,
    sqrt_head_dim: String,
    zero_index: String,
    zero_1d: String,
    one_1d: String,
    ones_2: String,
    flatten_patches: String,
    split_heads: String,
    merge_heads: String,
}

impl Constants {
    fn new(b: &mut Builder, config: &VitConfig) -> Self {
        let hidden = config.hidden_size as i64;
        let heads = config.num_attention_heads as i64;
        let head_dim = config.head_dim() as i64;
        let scope = "/constants";
        Self {
            two: b.constant(scope, scalar_f32(2.0)),
            eps: b.constant(scope, scalar_f32(config.layer_norm_eps)),
            sqrt_two: b.constant(scope, scalar_f32(std::f32::consts::SQRT_2)),
            one: b.constant(scope, scalar_f32(1.0)),
            half: b.constant(scope, scalar_f32(0.5)),
            sqrt_head_dim: b.constant(scope, scalar_f32((head_dim as f32).sqrt())),
            zero_index: b.constant(scope, tensor_i64(&[], &[0])),
            zero_1d: b.constant(scope, tensor_i64(&[1], &[0])),
            one_1d: b.constant(scope, tensor_i64(&[1], &[1])),
            ones_2: b.constant(scope, tensor_i64(&[2], &[1, 1])),
            // Reshape's 0 copies the input dimension, which keeps the batch symbolic.
            flatten_patches: b.constant(scope, tensor_i64(&[3], &[0, hidden, -1])),
            split_heads: b.constant(scope, tensor_i64(&[4], &[0, 0, heads, head_dim])),
            merge_heads: b.constant(scope, tensor_i64(&[3], &[0, 0, hidden])),
        }
    }
}

/// Appends nodes with torch-export-style names (`{scope}/{Op}_{n}`, outputs `{name}_output_0`).
#[derive(Default)]
struct Builder {
    nodes: Vec<NodeProto>,
    counts: HashMap<String, usize>,
}

impl Builder {
    fn op(
        &mut self,
        scope: &str,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        let name = self.unique_name(scope, op_type);
        let output = format!("{name}_output_0");
        self.push(name, op_type, inputs, attrs, output)
    }

    /// Like [`Builder::op`] but with a chosen output name (graph outputs).
    fn op_named(
        &mut self,
        scope: &str,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        output: &str,
    ) -> String {
        let name = self.unique_name(scope, op_type);
        self.push(name, op_type, inputs, attrs, output.to_owned())
    }

    fn constant(&mut self, scope: &str, value: TensorProto) -> String {
        let attr = AttributeProto {
            name: "value".into(),
            r#type: AttributeType::Tensor as i32,
            t: Some(value),
            ..Default::default()
        };
        self.op(scope, "Constant", &[], vec![attr])
    }

    fn unique_name(&mut self, scope: &str, op_type: &str) -> String {
        let base = format!("{scope}/{op_type}");
        let count = self.counts.entry(base.clone()).or_insert(0);
        let name = match *count {
            0 => base,
            n => format!("{base}_{n}"),
        };
        *count += 1;
        name
    }

    fn push(
        &mut self,
        name: String,
        op_type: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
        output: String,
    ) -> String {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![output.clone()],
            name,
            op_type: op_type.into(),
            attribute,
            ..Default::default()
        });
        output
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: value,
        ..Default::default()
    }
}

fn scalar_f32(value: f32) -> TensorProto {
    TensorProto {
        data_type: DataType::Float as i32,
        raw_data: value.to_le_bytes().to_vec(),
        ..Default::default()
    }
}

fn tensor_i64(dims: &[i64], values: &[i64]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: DataType::Int64 as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

enum Dim {
    Batch,
    Fixed(i64),
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Batch => dimension::Value::DimParam(BATCH.into()),
                Dim::Fixed(n) => dimension::Value::DimValue(*n),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(TensorType {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
