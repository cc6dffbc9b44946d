//! `preprocessor_config.json`: [`PreprocessorConfig`] with the defaults of
//! transformers' `ViTImageProcessor`, accepting the legacy spellings that
//! transformers itself still accepts (bare-int `size`, scalar `image_mean`).

use std::collections::BTreeMap;
use std::fmt;

use anyhow::bail;
use serde::Deserialize;
use serde::de::{self, Deserializer};

/// ViT's `IMAGENET_STANDARD_MEAN` / `IMAGENET_STANDARD_STD`.
const IMAGENET_STANDARD: [f32; 3] = [0.5, 0.5, 0.5];

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
}
