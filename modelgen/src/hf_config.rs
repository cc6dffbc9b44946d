//! `config.json` and `preprocessor_config.json` as transformers/optimum write them for
//! `google/vit-base-patch16-224`, plus a `vitrine` marker for the random weights.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::VitConfig;

pub(crate) const RANDOM_WEIGHTS_NOTE: &str =
    "Demo model with seeded RANDOM weights: predictions are meaningless.";

/// Fields in alphabetical order, as transformers writes them (`sort_keys=True`).
#[derive(Serialize)]
struct ModelConfig<'a> {
    architectures: [&'static str; 1],
    attention_probs_dropout_prob: f64,
    dtype: &'static str,
    encoder_stride: usize,
    hidden_act: &'static str,
    hidden_dropout_prob: f64,
    hidden_size: usize,
    id2label: Id2Label<'a>,
    image_size: usize,
    initializer_range: f64,
    intermediate_size: usize,
    label2id: BTreeMap<&'a str, usize>,
    layer_norm_eps: f64,
    model_type: &'static str,
    num_attention_heads: usize,
    num_channels: usize,
    num_hidden_layers: usize,
    patch_size: usize,
    pooler_act: &'static str,
    pooler_output_size: usize,
    qkv_bias: bool,
    vitrine: Marker,
}

#[derive(Serialize)]
struct Marker {
    random_weights: bool,
    seed: u64,
    note: &'static str,
}

/// `{"0": label, "1": label, ...}` in index order, like Python's int-keyed dict.
struct Id2Label<'a>(&'a [String]);

impl Serialize for Id2Label<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (id, label) in self.0.iter().enumerate() {
            map.serialize_entry(&id.to_string(), label)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct PreprocessorConfig {
    do_normalize: bool,
    do_rescale: bool,
    do_resize: bool,
    image_mean: [f64; 3],
    image_processor_type: &'static str,
    image_std: [f64; 3],
    resample: u32,
    rescale_factor: f64,
    size: Size,
}

#[derive(Serialize)]
struct Size {
    height: usize,
    width: usize,
}

pub(crate) fn model_config_json(config: &VitConfig, labels: &[String], seed: u64) -> Vec<u8> {
    // Python builds label2id from id2label, so a repeated label keeps its last id.
    let label2id = labels
        .iter()
        .enumerate()
        .map(|(id, label)| (label.as_str(), id))
        .collect();
    let value = ModelConfig {
        architectures: ["ViTForImageClassification"],
        attention_probs_dropout_prob: 0.0,
        dtype: "float32",
        encoder_stride: config.patch_size,
        hidden_act: "gelu",
        hidden_dropout_prob: 0.0,
        hidden_size: config.hidden_size,
        id2label: Id2Label(labels),
        image_size: config.image_size,
        initializer_range: decimal(config.initializer_range),
        intermediate_size: config.intermediate_size,
        label2id,
        layer_norm_eps: decimal(config.layer_norm_eps),
        model_type: "vit",
        num_attention_heads: config.num_attention_heads,
        num_channels: config.num_channels,
        num_hidden_layers: config.num_hidden_layers,
        patch_size: config.patch_size,
        pooler_act: "tanh",
        pooler_output_size: config.hidden_size,
        qkv_bias: config.qkv_bias,
        vitrine: Marker {
            random_weights: true,
            seed,
            note: RANDOM_WEIGHTS_NOTE,
        },
    };
    to_pretty_json(&value)
}

pub(crate) fn preprocessor_config_json(config: &VitConfig) -> Vec<u8> {
    let value = PreprocessorConfig {
        do_normalize: true,
        do_rescale: true,
        do_resize: true,
        image_mean: [0.5; 3],
        image_processor_type: "ViTImageProcessor",
        image_std: [0.5; 3],
        resample: 2, // PIL.Image.BILINEAR
        rescale_factor: 1.0 / 255.0,
        size: Size {
            height: config.image_size,
            width: config.image_size,
        },
    };
    to_pretty_json(&value)
}

/// The f64 a human would write for an f32 setting (`1e-12`, not `9.99999996e-13`).
fn decimal(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

fn to_pretty_json(value: &impl Serialize) -> Vec<u8> {
    // Plain structs, string-keyed maps and finite numbers cannot fail to serialise.
    let mut json = serde_json::to_vec_pretty(value).expect("config serialises to JSON");
    json.push(b'\n');
    json
}
