//! The parameter table of `ViTForImageClassification` and its seeded initialisation.
//!
//! Initialisation follows `ViTPreTrainedModel._init_weights`: Linear/Conv2d weights,
//! `cls_token` and `position_embeddings` are drawn from a normal distribution with
//! std `initializer_range`, truncated to [-2, 2] (torch's `trunc_normal_` defaults,
//! which are absolute bounds); biases are 0, LayerNorm weights 1.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::VitConfig;

/// torch's `trunc_normal_` default bounds `a=-2, b=2`.
const TRUNCATION: f32 = 2.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Init {
    TruncNormal { std: f32 },
    Zeros,
    Ones,
}

/// One HF parameter, named and shaped as in the PyTorch state dict.
#[derive(Debug, Clone)]
pub(crate) struct Param {
    pub name: String,
    pub dims: Vec<usize>,
    pub init: Init,
}

impl Param {
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn byte_len(&self) -> usize {
        self.numel() * size_of::<f32>()
    }

    /// Fills `out` with this parameter as little-endian f32.
    ///
    /// Every tensor draws from its own ChaCha stream (selected by `index`), so its
    /// values depend only on `(seed, index)`, not on what was generated before.
    pub fn fill_le_bytes(&self, seed: u64, index: usize, out: &mut Vec<u8>) {
        out.clear();
        out.resize(self.byte_len(), 0);
        match self.init {
            Init::Zeros => {}
            Init::Ones => {
                for chunk in out.chunks_exact_mut(4) {
                    chunk.copy_from_slice(&1f32.to_le_bytes());
                }
            }
            Init::TruncNormal { std } => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(index as u64);
                for chunk in out.chunks_exact_mut(4) {
                    let value = loop {
                        let z: f32 = rng.sample(StandardNormal);
                        let x = z * std;
                        if x.abs() <= TRUNCATION {
                            break x;
                        }
                    };
                    chunk.copy_from_slice(&value.to_le_bytes());
                }
            }
        }
    }
}

/// All parameters in HF state-dict order, with the classic (transformers 4.x,
/// `google/vit-base-patch16-224` checkpoint) names.
pub(crate) fn parameters(config: &VitConfig, num_labels: usize) -> Vec<Param> {
    let h = config.hidden_size;
    let p = config.patch_size;
    let mut t = Table {
        params: Vec::new(),
        normal: Init::TruncNormal {
            std: config.initializer_range,
        },
    };
    t.push("vit.embeddings.cls_token", vec![1, 1, h], t.normal);
    let positions = config.num_patches() + 1;
    t.push(
        "vit.embeddings.position_embeddings",
        vec![1, positions, h],
        t.normal,
    );
    let projection = "vit.embeddings.patch_embeddings.projection";
    t.push(
        &format!("{projection}.weight"),
        vec![h, config.num_channels, p, p],
        t.normal,
    );
    t.push(&format!("{projection}.bias"), vec![h], Init::Zeros);
    for i in 0..config.num_hidden_layers {
        let layer = format!("vit.encoder.layer.{i}");
        for proj in ["query", "key", "value"] {
            t.linear(
                &format!("{layer}.attention.attention.{proj}"),
                h,
                h,
                config.qkv_bias,
            );
        }
        t.linear(&format!("{layer}.attention.output.dense"), h, h, true);
        t.linear(
            &format!("{layer}.intermediate.dense"),
            h,
            config.intermediate_size,
            true,
        );
        t.linear(
            &format!("{layer}.output.dense"),
            config.intermediate_size,
            h,
            true,
        );
        t.layer_norm(&format!("{layer}.layernorm_before"), h);
        t.layer_norm(&format!("{layer}.layernorm_after"), h);
    }
    t.layer_norm("vit.layernorm", h);
    t.linear("classifier", h, num_labels, true);
    t.params
}

struct Table {
    params: Vec<Param>,
    normal: Init,
}

impl Table {
    fn push(&mut self, name: &str, dims: Vec<usize>, init: Init) {
        let name = name.to_owned();
        self.params.push(Param { name, dims, init });
    }

    /// `nn.Linear(inputs, outputs)`: weight is `[outputs, inputs]`.
    fn linear(&mut self, prefix: &str, inputs: usize, outputs: usize, bias: bool) {
        self.push(
            &format!("{prefix}.weight"),
            vec![outputs, inputs],
            self.normal,
        );
        if bias {
            self.push(&format!("{prefix}.bias"), vec![outputs], Init::Zeros);
        }
    }

    fn layer_norm(&mut self, prefix: &str, width: usize) {
        self.push(&format!("{prefix}.weight"), vec![width], Init::Ones);
        self.push(&format!("{prefix}.bias"), vec![width], Init::Zeros);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_matches_published_parameter_count() {
        // ViTForImageClassification(google/vit-base-patch16-224).num_parameters()
        assert_eq!(VitConfig::base().parameter_count(1000), 86_567_656);
    }

    #[test]
    fn tensors_depend_only_on_seed_and_index() {
        let params = parameters(&VitConfig::tiny(), 10);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        params[0].fill_le_bytes(7, 0, &mut a);
        params[0].fill_le_bytes(7, 0, &mut b);
        assert_eq!(a, b);
        params[0].fill_le_bytes(7, 1, &mut b);
        assert_ne!(a, b);
        params[0].fill_le_bytes(8, 0, &mut b);
        assert_ne!(a, b);
    }
}
