//! `config.json`: [`ModelConfig`], the parts serving needs.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde::de::{self, Deserializer};

/// Refuses absurd label indices before allocating a label per index.
const MAX_LABELS: usize = 1 << 20;

/// What serving needs from a Hugging Face `config.json`.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Class names in logit order; indices missing from `id2label` are `LABEL_{i}`.
    pub id2label: Vec<String>,
    pub image_size: u32,
    pub num_channels: u32,
    /// `config["vitrine"]["random_weights"]`: the model is a test fixture whose
    /// predictions mean nothing.
    pub random_weights: bool,
    /// `model_type` (`"vit"`, `"dinov2"`, ...): picks the image processor
    /// when `preprocessor_config.json` names none, as transformers does.
    pub model_type: Option<String>,
}

#[derive(Deserialize)]
struct RawModelConfig {
    #[serde(default)]
    id2label: Option<BTreeMap<String, String>>,
    #[serde(default)]
    num_labels: Option<usize>,
    #[serde(
        default = "default_model_image_size",
        deserialize_with = "deserialize_side"
    )]
    image_size: u32,
    #[serde(default = "default_num_channels")]
    num_channels: u32,
    #[serde(default)]
    vitrine: VitrineSection,
    #[serde(default)]
    model_type: Option<String>,
}

#[derive(Deserialize, Default)]
struct VitrineSection {
    #[serde(default)]
    random_weights: bool,
}

fn default_model_image_size() -> u32 {
    224
}

fn default_num_channels() -> u32 {
    3
}

/// `image_size` is an int in ViT configs; some configs write `[h, w]`.
fn deserialize_side<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Side(u32),
        Pair([u32; 2]),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Side(side) => Ok(side),
        Raw::Pair([h, w]) if h == w => Ok(h),
        Raw::Pair([h, w]) => Err(de::Error::custom(format!(
            "image_size {h}x{w} is not square, which ViT does not support"
        ))),
    }
}

/// transformers' `PretrainedConfig` default when neither `id2label` nor `num_labels` is set.
const DEFAULT_NUM_LABELS: usize = 2;

impl ModelConfig {
    /// Parses a Hugging Face `config.json`; callers add the file name to errors.
    pub fn from_json(bytes: &[u8]) -> anyhow::Result<Self> {
        let raw: RawModelConfig = serde_json::from_slice(bytes)?;

        let mut indexed = Vec::new();
        for (key, label) in raw.id2label.unwrap_or_default() {
            let index: usize = key
                .trim()
                .parse()
                .with_context(|| format!("id2label key {key:?} is not a class index"))?;
            if index >= MAX_LABELS {
                bail!("id2label index {index} is too large (limit {MAX_LABELS})");
            }
            indexed.push((index, label));
        }
        let from_labels = indexed.iter().map(|(i, _)| i + 1).max().unwrap_or(0);
        let count = match (from_labels, raw.num_labels) {
            (0, None) => DEFAULT_NUM_LABELS,
            (n, None) => n,
            (n, Some(declared)) => n.max(declared.min(MAX_LABELS)),
        };
        let mut id2label: Vec<String> = (0..count).map(|i| format!("LABEL_{i}")).collect();
        for (index, label) in indexed {
            id2label[index] = label;
        }

        if raw.image_size == 0 {
            bail!("config.json image_size must be positive");
        }
        Ok(Self {
            id2label,
            image_size: raw.image_size,
            num_channels: raw.num_channels,
            random_weights: raw.vitrine.random_weights,
            model_type: raw.model_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_config_orders_labels_and_fills_gaps() {
        let json = br#"{"id2label": {"10": "ten", "0": "zero", "2": "two"},
                        "image_size": 384, "vitrine": {"random_weights": true}}"#;
        let cfg = ModelConfig::from_json(json).unwrap();
        assert_eq!(cfg.id2label.len(), 11);
        assert_eq!(cfg.id2label[0], "zero");
        assert_eq!(cfg.id2label[1], "LABEL_1");
        assert_eq!(cfg.id2label[2], "two");
        assert_eq!(cfg.id2label[10], "ten");
        assert_eq!(cfg.image_size, 384);
        assert_eq!(cfg.num_channels, 3);
        assert!(cfg.random_weights);
    }

    #[test]
    fn model_config_defaults() {
        let cfg = ModelConfig::from_json(b"{}").unwrap();
        assert_eq!(cfg.id2label, ["LABEL_0", "LABEL_1"]);
        assert_eq!(cfg.image_size, 224);
        assert!(!cfg.random_weights);
        let cfg = ModelConfig::from_json(br#"{"num_labels": 3}"#).unwrap();
        assert_eq!(cfg.id2label, ["LABEL_0", "LABEL_1", "LABEL_2"]);
    }

    #[test]
    fn model_config_rejects_bad_labels() {
        assert!(ModelConfig::from_json(br#"{"id2label": {"x": "y"}}"#).is_err());
        assert!(ModelConfig::from_json(br#"{"id2label": {"99999999999": "y"}}"#).is_err());
    }

    /// This package's folder: as cargo says when it runs the test, else as it
    /// said at build time. A build cache shared between checkouts may hold a
    /// test binary compiled in another checkout.
    fn manifest_dir() -> std::path::PathBuf {
        std::env::var_os("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
            .into()
    }

    #[test]
    fn model_config_reads_shared_fixtures() {
        let root = manifest_dir().join("../../shared/models");
        let root = root.display();
        for model in ["vit-base-patch16-224", "vit-tiny-random-torch-export"] {
            let Ok(bytes) = std::fs::read(format!("{root}/{model}/config.json")) else {
                eprintln!("skipping {model}: ../shared is absent");
                continue;
            };
            let cfg = ModelConfig::from_json(&bytes).unwrap();
            assert_eq!(cfg.id2label.len(), 1000);
            assert_eq!(cfg.id2label[285], "Egyptian cat");
            assert_eq!(cfg.image_size, 224);
        }
    }
}
