//! The Hugging Face image processors Vitrine reproduces, and what each one
//! does with `preprocessor_config.json`.
//!
//! Every entry is read from transformers' PIL backend (`*ImageProcessorPil`,
//! transformers 5): its class defaults, which keys it accepts, and the code
//! it runs where it departs from the shared `PilBackend._preprocess`
//! (resize, center crop, rescale, normalize, pad):
//!
//! - `ConvNextImageProcessor`: its own resize (`crop_pct`, the 384 switch);
//! - `LevitImageProcessor`: resizes the short side to `int(256 / 224 * shortest_edge)`;
//! - `PoolFormerImageProcessor`: resizes to `int(size / crop_pct)`;
//! - `EfficientNetImageProcessor`: `rescale_offset`, `include_top`;
//! - `MobileViTImageProcessor`: rescales before cropping, never normalises,
//!   flips RGB to BGR;
//! - `SegformerImageProcessor`: never crops;
//! - Beit, ConvNext, EfficientNet, MobileViT, MobileNetV2 and Segformer have
//!   their own `_preprocess` without the batch padding step.

use crate::config::Resample;

/// One transformers image processor class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processor {
    Vit,
    Deit,
    Beit,
    Bit,
    Clip,
    ConvNext,
    Levit,
    PoolFormer,
    MobileVit,
    EfficientNet,
    MobileNetV1,
    MobileNetV2,
    Pvt,
    Siglip,
    Segformer,
}

/// Every processor, in the README's order.
pub const PROCESSORS: [Processor; 15] = [
    Processor::Vit,
    Processor::Deit,
    Processor::Beit,
    Processor::Bit,
    Processor::Clip,
    Processor::ConvNext,
    Processor::Levit,
    Processor::PoolFormer,
    Processor::MobileVit,
    Processor::EfficientNet,
    Processor::MobileNetV1,
    Processor::MobileNetV2,
    Processor::Pvt,
    Processor::Siglip,
    Processor::Segformer,
];

/// `IMAGENET_STANDARD_MEAN` / `_STD`.
const STANDARD: ([f64; 3], [f64; 3]) = ([0.5; 3], [0.5; 3]);
/// `IMAGENET_DEFAULT_MEAN` / `_STD`.
const IMAGENET: ([f64; 3], [f64; 3]) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
/// `OPENAI_CLIP_MEAN` / `_STD`.
const OPENAI_CLIP: ([f64; 3], [f64; 3]) = (
    [0.48145466, 0.4578275, 0.40821073],
    [0.26862954, 0.26130258, 0.27577711],
);

/// A class default for `size` or `crop_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultSize {
    HeightWidth(u32, u32),
    ShortestEdge(u32),
}

/// How a processor turns `size` into the resized image's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeRule {
    /// `PilBackend.resize`.
    Backend,
    /// `ConvNextImageProcessorPil.resize`.
    ConvNext,
    /// `LevitImageProcessorPil.resize`.
    Levit,
    /// `PoolFormerImageProcessorPil.resize`.
    PoolFormer,
}

/// A processor's class attributes (what a key absent from, or `null` in,
/// `preprocessor_config.json` falls back to) and the steps its code runs.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub resample: Resample,
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
    pub size: DefaultSize,
    pub default_to_square: bool,
    pub crop_size: Option<DefaultSize>,
    pub do_center_crop: bool,
    pub do_normalize: bool,
    /// `Some` where `crop_pct` is a key of the processor.
    pub crop_pct: Option<f64>,
    /// `Some` where `rescale_offset` / `include_top` are keys (EfficientNet).
    pub rescale_offset: Option<bool>,
    pub include_top: Option<bool>,
    /// `Some` where `do_flip_channel_order` is a key (MobileViT).
    pub flip_channel_order: Option<bool>,
    pub resize_rule: ResizeRule,
    /// Whether its `_preprocess` center-crops at all (Segformer's does not).
    pub crops: bool,
    /// Whether its `_preprocess` normalises at all (MobileViT's does not).
    pub normalizes: bool,
    /// Whether its `_preprocess` ends with `PilBackend.pad` when `do_pad`.
    pub pads: bool,
}

impl Processor {
    /// The class name transformers saves as `image_processor_type`.
    pub fn class_name(self) -> &'static str {
        match self {
            Self::Vit => "ViTImageProcessor",
            Self::Deit => "DeiTImageProcessor",
            Self::Beit => "BeitImageProcessor",
            Self::Bit => "BitImageProcessor",
            Self::Clip => "CLIPImageProcessor",
            Self::ConvNext => "ConvNextImageProcessor",
            Self::Levit => "LevitImageProcessor",
            Self::PoolFormer => "PoolFormerImageProcessor",
            Self::MobileVit => "MobileViTImageProcessor",
            Self::EfficientNet => "EfficientNetImageProcessor",
            Self::MobileNetV1 => "MobileNetV1ImageProcessor",
            Self::MobileNetV2 => "MobileNetV2ImageProcessor",
            Self::Pvt => "PvtImageProcessor",
            Self::Siglip => "SiglipImageProcessor",
            Self::Segformer => "SegformerImageProcessor",
        }
    }

    /// Resolves `image_processor_type` as `AutoImageProcessor` does: the
    /// legacy `Fast` suffix (and the PIL backend's `Pil`) name the same class,
    /// and a legacy `feature_extractor_type` `XFeatureExtractor` means
    /// `XImageProcessor`.
    pub fn from_class_name(name: &str) -> Option<Self> {
        let name = name.replace("FeatureExtractor", "ImageProcessor");
        let base = name
            .strip_suffix("Fast")
            .or_else(|| name.strip_suffix("Pil"))
            .unwrap_or(&name);
        PROCESSORS.into_iter().find(|p| p.class_name() == base)
    }

    /// The processor transformers picks from `config.json`'s `model_type`
    /// when `preprocessor_config.json` names none (its `IMAGE_PROCESSOR_MAPPING`).
    pub fn for_model_type(model_type: &str) -> Option<Self> {
        Some(match model_type {
            "vit" | "vit_msn" | "swin" | "swinv2" | "dinat" | "ijepa" | "swiftformer" => Self::Vit,
            "deit" => Self::Deit,
            "beit" | "data2vec-vision" => Self::Beit,
            "bit" | "dinov2" | "focalnet" | "hiera" => Self::Bit,
            "clip" | "metaclip_2" => Self::Clip,
            "convnext" | "convnextv2" | "cvt" | "regnet" | "resnet" => Self::ConvNext,
            "levit" => Self::Levit,
            "poolformer" => Self::PoolFormer,
            "mobilevit" | "mobilevitv2" => Self::MobileVit,
            "efficientnet" => Self::EfficientNet,
            "mobilenet_v1" => Self::MobileNetV1,
            "mobilenet_v2" => Self::MobileNetV2,
            "pvt" | "pvt_v2" => Self::Pvt,
            "siglip" => Self::Siglip,
            "segformer" => Self::Segformer,
            _ => return None,
        })
    }

    /// The class attributes of `<class_name>Pil` in transformers 5.
    pub fn defaults(self) -> Defaults {
        use DefaultSize::{HeightWidth as Hw, ShortestEdge as Se};
        let base = Defaults {
            resample: Resample::Bilinear,
            image_mean: STANDARD.0,
            image_std: STANDARD.1,
            size: Hw(224, 224),
            default_to_square: true,
            crop_size: None,
            do_center_crop: false,
            do_normalize: true,
            crop_pct: None,
            rescale_offset: None,
            include_top: None,
            flip_channel_order: None,
            resize_rule: ResizeRule::Backend,
            crops: true,
            normalizes: true,
            pads: true,
        };
        let (mean, std) = IMAGENET;
        let (clip_mean, clip_std) = OPENAI_CLIP;
        match self {
            Self::Vit => base,
            Self::Deit => Defaults {
                resample: Resample::Bicubic,
                size: Hw(256, 256),
                crop_size: Some(Hw(224, 224)),
                do_center_crop: true,
                ..base
            },
            Self::Beit => Defaults {
                resample: Resample::Bicubic,
                crop_size: Some(Hw(224, 224)),
                pads: false,
                ..base
            },
            Self::Bit | Self::Clip => Defaults {
                resample: Resample::Bicubic,
                image_mean: clip_mean,
                image_std: clip_std,
                size: Se(224),
                default_to_square: false,
                crop_size: Some(Hw(224, 224)),
                do_center_crop: true,
                ..base
            },
            Self::ConvNext => Defaults {
                resample: Resample::Bicubic,
                size: Se(384),
                default_to_square: false,
                crop_pct: Some(224.0 / 256.0),
                resize_rule: ResizeRule::ConvNext,
                pads: false,
                ..base
            },
            Self::Levit => Defaults {
                resample: Resample::Bicubic,
                image_mean: mean,
                image_std: std,
                size: Se(224),
                default_to_square: false,
                crop_size: Some(Hw(224, 224)),
                do_center_crop: true,
                resize_rule: ResizeRule::Levit,
                ..base
            },
            Self::PoolFormer => Defaults {
                resample: Resample::Bicubic,
                image_mean: mean,
                image_std: std,
                size: Se(224),
                default_to_square: false,
                crop_size: Some(Hw(224, 224)),
                do_center_crop: true,
                crop_pct: Some(0.9),
                resize_rule: ResizeRule::PoolFormer,
                ..base
            },
            Self::MobileVit => Defaults {
                resample: Resample::Bicubic,
                size: Se(224),
                default_to_square: false,
                crop_size: Some(Hw(256, 256)),
                do_center_crop: true,
                do_normalize: false,
                flip_channel_order: Some(true),
                normalizes: false,
                pads: false,
                ..base
            },
            Self::EfficientNet => Defaults {
                resample: Resample::Bicubic,
                size: Hw(346, 346),
                crop_size: Some(Hw(289, 289)),
                rescale_offset: Some(false),
                include_top: Some(true),
                pads: false,
                ..base
            },
            Self::MobileNetV1 => Defaults {
                size: Se(256),
                default_to_square: false,
                crop_size: Some(Hw(224, 224)),
                do_center_crop: true,
                ..base
            },
            Self::MobileNetV2 => Defaults {
                size: Se(256),
                default_to_square: false,
                crop_size: Some(Hw(224, 224)),
                do_center_crop: true,
                pads: false,
                ..base
            },
            Self::Pvt => Defaults {
                resample: Resample::Bicubic,
                image_mean: mean,
                image_std: std,
                ..base
            },
            Self::Siglip => Defaults {
                resample: Resample::Bicubic,
                default_to_square: false,
                ..base
            },
            Self::Segformer => Defaults {
                image_mean: mean,
                image_std: std,
                size: Hw(512, 512),
                crops: false,
                pads: false,
                ..base
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_resolve_as_auto_image_processor_does() {
        for p in PROCESSORS {
            assert_eq!(Processor::from_class_name(p.class_name()), Some(p));
        }
        assert_eq!(
            Processor::from_class_name("ViTFeatureExtractor"),
            Some(Processor::Vit)
        );
        assert_eq!(
            Processor::from_class_name("ConvNextImageProcessorFast"),
            Some(Processor::ConvNext)
        );
        assert_eq!(
            Processor::from_class_name("MobileViTFeatureExtractor"),
            Some(Processor::MobileVit)
        );
        assert_eq!(Processor::from_class_name("DonutImageProcessor"), None);
        assert_eq!(Processor::for_model_type("dinov2"), Some(Processor::Bit));
        assert_eq!(
            Processor::for_model_type("resnet"),
            Some(Processor::ConvNext)
        );
        assert_eq!(Processor::for_model_type("swin"), Some(Processor::Vit));
        assert_eq!(Processor::for_model_type("llava"), None);
    }
}
