//! ViT hyper-parameters, mirroring the fields of HF's `ViTConfig` that shape the network.

use anyhow::{Result, ensure};

/// Architecture of a `ViTForImageClassification` model (labels excluded).
#[derive(Debug, Clone, PartialEq)]
pub struct VitConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    pub layer_norm_eps: f32,
    pub qkv_bias: bool,
    pub initializer_range: f32,
}

impl VitConfig {
    /// `google/vit-base-patch16-224`.
    pub fn base() -> Self {
        Self {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            layer_norm_eps: 1e-12,
            qkv_bias: true,
            initializer_range: 0.02,
        }
    }

    /// A small model with the same input contract as [`VitConfig::base`], for tests.
    pub fn tiny() -> Self {
        Self {
            hidden_size: 192,
            num_hidden_layers: 2,
            num_attention_heads: 3,
            intermediate_size: 768,
            ..Self::base()
        }
    }

    /// Number of scalar parameters of `ViTForImageClassification` (no pooler) with
    /// `num_labels` outputs.
    pub fn parameter_count(&self, num_labels: usize) -> usize {
        crate::init::parameters(self, num_labels)
            .iter()
            .map(|p| p.numel())
            .sum()
    }

    pub(crate) fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub(crate) fn num_patches(&self) -> usize {
        let side = self.image_size / self.patch_size;
        side * side
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let dims = [
            self.hidden_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.intermediate_size,
            self.image_size,
            self.patch_size,
            self.num_channels,
        ];
        ensure!(
            dims.iter().all(|&d| d > 0),
            "ViT dimensions must be non-zero: {self:?}"
        );
        ensure!(
            self.hidden_size.is_multiple_of(self.num_attention_heads),
            "hidden_size {} is not divisible by num_attention_heads {}",
            self.hidden_size,
            self.num_attention_heads
        );
        ensure!(
            self.image_size.is_multiple_of(self.patch_size),
            "image_size {} is not divisible by patch_size {}",
            self.image_size,
            self.patch_size
        );
        ensure!(
            self.layer_norm_eps > 0.0 && self.initializer_range > 0.0,
            "layer_norm_eps and initializer_range must be positive"
        );
        Ok(())
    }
}
