//! Hugging Face model and preprocessor configuration.
//!
//! [`PreprocessorConfig`] reads `preprocessor_config.json` with the defaults of
//! transformers' `ViTImageProcessor`, accepting the legacy spellings that
//! transformers itself still accepts (bare-int `size`, scalar `image_mean`).
//! [`ModelConfig`] reads the parts of `config.json` that serving needs.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde::de::{self, Deserializer};

/// ViT's `IMAGENET_STANDARD_MEAN` / `IMAGENET_STANDARD_STD`.
const IMAGENET_STANDARD: [f32; 3] = [0.5, 0.5, 0.5];

/// Refuses absurd label indices before allocating a label per index.
const MAX_LABELS: usize = 1 << 20;

/// Refuses target sizes whose tensors could not be allocated sensibly.
const MAX_TARGET_SIDE: u32 = 16_384;

/// The parts of `preprocessor_config.json` that `ViTImageProcessor` uses.
#[derive(Debug, Clone, Deserialize)]
pub struct PreprocessorConfig {
    #[serde(default = "default_true")]
    pub do_resize: bool,
    #[serde(default)]
    pub size: ImageSize,
    #[serde(default)]
    pub resample: Resample,
    #[serde(default = "default_true")]
    pub do_rescale: bool,
    #[serde(default = "default_rescale_factor")]
    pub rescale_factor: f32,
    #[serde(default = "default_true")]
    pub do_normalize: bool,
    #[serde(
        default = "default_image_stats",
        deserialize_with = "deserialize_channel_stats"
    )]
    pub image_mean: [f32; 3],
    #[serde(
        default = "default_image_stats",
        deserialize_with = "deserialize_channel_stats"
    )]
    pub image_std: [f32; 3],
    #[serde(default)]
    pub do_convert_rgb: Option<bool>,
}

fn default_true() -> bool {
    true
}

fn default_rescale_factor() -> f32 {
    (1.0f64 / 255.0) as f32
}

fn default_image_stats() -> [f32; 3] {
    IMAGENET_STANDARD
}

impl Default for PreprocessorConfig {
    /// google/vit-base-patch16-224's preprocessor (also `ViTImageProcessor`'s defaults).
    fn default() -> Self {
        Self {
            do_resize: true,
            size: ImageSize::default(),
            resample: Resample::default(),
            do_rescale: true,
            rescale_factor: default_rescale_factor(),
            do_normalize: true,
            image_mean: IMAGENET_STANDARD,
            image_std: IMAGENET_STANDARD,
            do_convert_rgb: None,
        }
    }
}

/// Keys whose presence would change `ViTImageProcessor`'s output in ways this
/// pipeline does not implement; ignoring them would silently feed the model
/// differently prepared pixels.
#[derive(Deserialize)]
struct UnsupportedSteps {
    #[serde(default)]
    do_center_crop: Option<bool>,
    #[serde(default)]
    do_pad: Option<bool>,
}

impl PreprocessorConfig {
    /// Parses `preprocessor_config.json` and checks that the result is usable.
    /// Errors name the offending key; callers add which file it was.
    pub fn from_json(bytes: &[u8]) -> anyhow::Result<Self> {
        let cfg: Self = serde_json::from_slice(bytes)?;
        let steps: UnsupportedSteps = serde_json::from_slice(bytes)?;
        if steps.do_center_crop == Some(true) {
            bail!(
                "preprocessor_config.json asks for do_center_crop, which Vitrine does not support"
            );
        }
        if steps.do_pad == Some(true) {
            bail!("preprocessor_config.json asks for do_pad, which Vitrine does not support");
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let ImageSize { height, width } = self.size;
        if height == 0 || width == 0 || height > MAX_TARGET_SIDE || width > MAX_TARGET_SIDE {
            bail!(
                "preprocessor size {width}x{height} is out of range (1..={MAX_TARGET_SIDE} per side)"
            );
        }
        if !self.rescale_factor.is_finite() {
            bail!(
                "rescale_factor {} is not a finite number",
                self.rescale_factor
            );
        }
        if self.image_mean.iter().any(|m| !m.is_finite()) {
            bail!("image_mean {:?} has a non-finite entry", self.image_mean);
        }
        if self.image_std.iter().any(|s| !s.is_finite() || *s == 0.0) {
            bail!("image_std {:?} must be finite and non-zero", self.image_std);
        }
        Ok(())
    }
}

/// Target size of the resized image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSize {
    pub height: u32,
    pub width: u32,
}

impl Default for ImageSize {
    fn default() -> Self {
        Self {
            height: 224,
            width: 224,
        }
    }
}

impl<'de> Deserialize<'de> for ImageSize {
    /// Accepts `{"height": h, "width": w}`, a bare int (legacy, square) or
    /// `[h, w]`, as transformers' `get_size_dict` does for ViT.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Square(u32),
            Pair([u32; 2]),
            Dict(BTreeMap<String, u32>),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Square(side) => Ok(Self {
                height: side,
                width: side,
            }),
            Raw::Pair([height, width]) => Ok(Self { height, width }),
            Raw::Dict(map) => match (map.get("height"), map.get("width")) {
                (Some(&height), Some(&width)) => Ok(Self { height, width }),
                _ => {
                    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                    Err(de::Error::custom(format!(
                        "size must give \"height\" and \"width\" (a fixed output size), got keys {keys:?}"
                    )))
                }
            },
        }
    }
}

/// PIL resampling filters, by their integer codes in `preprocessor_config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resample {
    Nearest,
    Lanczos,
    #[default]
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

impl Resample {
    /// PIL's integer code (`PIL.Image.Resampling`).
    pub fn pil_code(self) -> u8 {
        match self {
            Self::Nearest => 0,
            Self::Lanczos => 1,
            Self::Bilinear => 2,
            Self::Bicubic => 3,
            Self::Box => 4,
            Self::Hamming => 5,
        }
    }

    /// Maps PIL's integer code; `None` for codes PIL has but Vitrine lacks
    /// (6 and 7, Pillow 13's MKS filters) or that PIL does not know.
    pub fn from_pil_code(code: u64) -> Option<Self> {
        Some(match code {
            0 => Self::Nearest,
            1 => Self::Lanczos,
            2 => Self::Bilinear,
            3 => Self::Bicubic,
            4 => Self::Box,
            5 => Self::Hamming,
            _ => return None,
        })
    }
}

impl fmt::Display for Resample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Nearest => "nearest",
            Self::Lanczos => "lanczos",
            Self::Bilinear => "bilinear",
            Self::Bicubic => "bicubic",
            Self::Box => "box",
            Self::Hamming => "hamming",
        };
        f.write_str(name)
    }
}

impl<'de> Deserialize<'de> for Resample {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = u64::deserialize(deserializer)?;
        Self::from_pil_code(code).ok_or_else(|| {
            de::Error::custom(format!(
                "resample {code} is not supported; use a PIL filter code 0-5 \
                 (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)"
            ))
        })
    }
}

/// `image_mean` / `image_std`: one value per RGB channel, or one for all.
fn deserialize_channel_stats<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<[f32; 3], D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        All(f32),
        PerChannel(Vec<f32>),
    }
    match Raw::deserialize(deserializer)? {
        Raw::All(v) => Ok([v; 3]),
        Raw::PerChannel(v) => <[f32; 3]>::try_from(v.as_slice()).map_err(|_| {
            de::Error::custom(format!(
                "expected 3 values (one per RGB channel) or a single number, got {}",
                v.len()
            ))
        }),
    }
}

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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocessor_defaults_match_vit_base() {
        let cfg = PreprocessorConfig::from_json(b"{}").unwrap();
        assert!(cfg.do_resize && cfg.do_rescale && cfg.do_normalize);
        assert_eq!(
            cfg.size,
            ImageSize {
                height: 224,
                width: 224
            }
        );
        assert_eq!(cfg.resample, Resample::Bilinear);
        assert_eq!(cfg.rescale_factor, (1.0f64 / 255.0) as f32);
        assert_eq!(cfg.image_mean, [0.5; 3]);
        assert_eq!(cfg.image_std, [0.5; 3]);
        assert_eq!(cfg.do_convert_rgb, None);
        let default = PreprocessorConfig::default();
        assert_eq!(default.size, cfg.size);
        assert_eq!(default.rescale_factor, cfg.rescale_factor);
    }

    #[test]
    fn preprocessor_reads_hf_json() {
        let json = br#"{
            "do_normalize": true, "do_rescale": true, "do_resize": true,
            "image_mean": [0.485, 0.456, 0.406], "image_processor_type": "ViTImageProcessor",
            "image_std": [0.229, 0.224, 0.225], "resample": 3,
            "rescale_factor": 0.00392156862745098, "size": {"height": 384, "width": 320},
            "do_convert_rgb": true
        }"#;
        let cfg = PreprocessorConfig::from_json(json).unwrap();
        assert_eq!(
            cfg.size,
            ImageSize {
                height: 384,
                width: 320
            }
        );
        assert_eq!(cfg.resample, Resample::Bicubic);
        assert_eq!(cfg.image_mean, [0.485, 0.456, 0.406]);
        assert_eq!(cfg.image_std, [0.229, 0.224, 0.225]);
        assert_eq!(cfg.do_convert_rgb, Some(true));
    }

    #[test]
    fn preprocessor_accepts_legacy_forms() {
        let cfg = PreprocessorConfig::from_json(
            br#"{"size": 384, "image_mean": 0.5, "image_std": 0.25}"#,
        )
        .unwrap();
        assert_eq!(
            cfg.size,
            ImageSize {
                height: 384,
                width: 384
            }
        );
        assert_eq!(cfg.image_mean, [0.5; 3]);
        assert_eq!(cfg.image_std, [0.25; 3]);
        let cfg = PreprocessorConfig::from_json(br#"{"size": [200, 100]}"#).unwrap();
        assert_eq!(
            cfg.size,
            ImageSize {
                height: 200,
                width: 100
            }
        );
    }

    #[test]
    fn preprocessor_rejects_what_it_cannot_honour() {
        for json in [
            &br#"{"size": {"shortest_edge": 224}}"#[..],
            br#"{"resample": 6}"#,
            br#"{"resample": "bilinear"}"#,
            br#"{"image_mean": [0.5, 0.5]}"#,
            br#"{"image_std": [0.5, 0.0, 0.5]}"#,
            br#"{"size": 0}"#,
            br#"{"do_center_crop": true, "crop_size": 224}"#,
            b"not json",
        ] {
            let err = PreprocessorConfig::from_json(json);
            assert!(
                err.is_err(),
                "{} should be refused",
                String::from_utf8_lossy(json)
            );
        }
        let err = PreprocessorConfig::from_json(br#"{"resample": 7}"#).unwrap_err();
        assert!(format!("{err:#}").contains("resample 7"), "{err:#}");
    }

    #[test]
    fn resample_codes_round_trip() {
        for code in 0..6 {
            assert_eq!(
                u64::from(Resample::from_pil_code(code).unwrap().pil_code()),
                code
            );
        }
    }

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
