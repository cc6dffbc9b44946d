//! Image decoding and ViT preprocessing, matching transformers' PIL backend:
//! this room turns the bytes of one request's image into the f32 tensor row
//! the model reads, bit for bit what transformers would have produced.
//!
//! The reference is what a Hugging Face image-classification pipeline does
//! without torchvision: `transformers.image_utils.load_image` (PIL decode,
//! `ImageOps.exif_transpose`, `convert("RGB")`), then `ViTImageProcessorPil`:
//!
//! 1. PIL `Image.resize((w, h), resample, reducing_gap=None)` on the uint8 RGB
//!    image, i.e. `ImagingResample` with no box reduction first;
//! 2. `rescale`: `uint8 -> float64 * rescale_factor -> float32`;
//! 3. `normalize`: `(x - mean) / std` in float32, channels first.
//!
//! [`preprocess_into`] is that pipeline: decode -> orient -> convert ->
//! resize -> rescale/normalize. Its stages:
//! - `decode`: [`decode_rgb`], format detection and the limits checked before
//!   any pixel buffer exists, JPEG through `jpeg`, the rest through the
//!   `image` crate;
//! - `jpeg`: a JPEG decoder that reproduces libjpeg-turbo, which PIL uses,
//!   because the `image` crate's JPEG backend rounds differently by up to 4
//!   levels;
//! - `orientation`: EXIF and XMP orientation, as `exif_transpose` applies it;
//! - `convert`: grey, grey+alpha, RGBA, palette and 16-bit pixels to RGB8 as
//!   PIL's `convert("RGB")` does;
//! - `resample`: [`resize`], PIL's six resampling filters;
//! - `limits`: [`DecodeLimits`], from the host's flags through the environment;
//! - `error`: [`PreprocessError`], what the client is told.
//!
//! Rescale and normalize are tabulated per channel and u8 value here.

mod convert;
mod decode;
mod error;
mod jpeg;
mod limits;
mod orientation;
mod resample;
#[cfg(test)]
mod test_images;

pub use self::decode::decode_rgb;
pub use self::error::PreprocessError;
pub use self::limits::{
    DEFAULT_MAX_IMAGE_DIMENSION, DEFAULT_MAX_IMAGE_PIXELS, DecodeLimits, MAX_IMAGE_DIMENSION_ENV,
    MAX_IMAGE_DIMENSION_FLAG, MAX_IMAGE_PIXELS_ENV, MAX_IMAGE_PIXELS_FLAG,
};
pub use self::resample::resize;

use crate::config::{ImageSize, PreprocessorConfig};

/// Full pipeline for one image; writes channels-first `[3, H, W]` f32 into
/// `out` (a row of a preallocated batch tensor; `out.len()` must equal
/// `3 * H * W` where `H`, `W` = config size, else `Err`).
pub fn preprocess_into(
    bytes: &[u8],
    cfg: &PreprocessorConfig,
    limits: &DecodeLimits,
    out: &mut [f32],
) -> Result<(), PreprocessError> {
    let ImageSize { height, width } = cfg.size;
    let plane = width as usize * height as usize;
    if out.len() != 3 * plane {
        return Err(PreprocessError::Decode(format!(
            "internal error: the input buffer holds {} values but the preprocessor produces 3x{height}x{width} = {}",
            out.len(),
            3 * plane
        )));
    }

    let decoded = decode_rgb(bytes, limits)?;
    let resized;
    let pixels = if decoded.dimensions() == (width, height) {
        // PIL returns an unchanged copy for identity resizes.
        &decoded
    } else if cfg.do_resize {
        resized = resize(&decoded, width, height, cfg.resample);
        &resized
    } else {
        return Err(PreprocessError::Decode(format!(
            "image is {}x{} pixels, but this model's preprocessor does not resize (do_resize is false) and needs exactly {width}x{height}",
            decoded.width(),
            decoded.height()
        )));
    };

    let tables = channel_tables(cfg);
    let (red, rest) = out.split_at_mut(plane);
    let (green, blue) = rest.split_at_mut(plane);
    for (((rgb, r), g), b) in pixels
        .as_raw()
        .chunks_exact(3)
        .zip(red)
        .zip(green)
        .zip(blue)
    {
        *r = tables[0][usize::from(rgb[0])];
        *g = tables[1][usize::from(rgb[1])];
        *b = tables[2][usize::from(rgb[2])];
    }
    Ok(())
}

/// The final f32 for every (channel, u8 value): rescale and normalize are
/// per-value maps, so tabulating them reproduces transformers' arithmetic
/// exactly at 768 evaluations per image.
fn channel_tables(cfg: &PreprocessorConfig) -> [[f32; 256]; 3] {
    let factor = rescale_factor_f64(cfg.rescale_factor);
    let mut tables = [[0.0f32; 256]; 3];
    for (c, table) in tables.iter_mut().enumerate() {
        for (value, entry) in (0u8..=255).zip(table.iter_mut()) {
            // `rescale`: float64 multiply, then cast to float32.
            let mut x = if cfg.do_rescale {
                (f64::from(value) * factor) as f32
            } else {
                f32::from(value)
            };
            // `normalize`: float32 subtract and divide.
            if cfg.do_normalize {
                x = (x - cfg.image_mean[c]) / cfg.image_std[c];
            }
            *entry = x;
        }
    }
    tables
}

/// transformers multiplies by the JSON's float64 factor, but the config keeps
/// an f32. Recover the f64 when the factor is the reciprocal of an integer or
/// half-integer (1/255, 1/127.5, 1/256, ...), as it is in practice; half the
/// u8 values would otherwise land one float32 ulp off.
fn rescale_factor_f64(factor: f32) -> f64 {
    let divisor = (2.0 / f64::from(factor)).round() / 2.0;
    if divisor.is_finite() && divisor != 0.0 && (1.0 / divisor) as f32 == factor {
        1.0 / divisor
    } else {
        f64::from(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::test_images::{encode_png, pattern};
    use image::ExtendedColorType;

    #[test]
    fn preprocess_matches_transformers() {
        // hf_preprocess.py on pattern(7, 5) saved as PNG, with this config.
        let cfg = PreprocessorConfig::from_json(
            br#"{"size": {"height": 2, "width": 3}, "resample": 2,
                 "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}"#,
        )
        .unwrap();
        let png = encode_png(7, 5, ExtendedColorType::Rgb8, pattern(7, 5).as_raw());
        let mut out = vec![f32::NAN; 18];
        preprocess_into(&png, &cfg, &DecodeLimits::default(), &mut out).unwrap();
        #[rustfmt::skip]
        let transformers: [f32; 18] = [
            -0.26843056, 0.1939379, 0.12543888, -0.11430778, 0.056939743, -0.30268008,
            0.3452382, 0.2752102, 0.2401962, 0.50280124, 0.13515405, 0.3102242,
            0.68793046, 0.6356429, 0.47878015, 0.23477131, 0.16505454, 0.2870589,
        ];
        assert_eq!(out, transformers);
    }

    #[test]
    fn rescale_uses_the_json_float64_factor() {
        assert_eq!(rescale_factor_f64((1.0f64 / 255.0) as f32), 1.0 / 255.0);
        assert_eq!(rescale_factor_f64((1.0f64 / 127.5) as f32), 1.0 / 127.5);
        assert_eq!(rescale_factor_f64(0.01), 0.01);
        assert_eq!(rescale_factor_f64(0.003), f64::from(0.003f32));
        assert_eq!(rescale_factor_f64(0.0), 0.0);
        // The default config: 255 maps to exactly 1.0 and then to 1.0 after normalising.
        let tables = channel_tables(&PreprocessorConfig::default());
        assert_eq!(tables[0][0], -1.0);
        assert_eq!(tables[2][255], 1.0);
    }

    #[test]
    fn output_length_is_checked() {
        let png = encode_png(2, 2, ExtendedColorType::Rgb8, &[0; 12]);
        let mut out = vec![0.0; 10];
        let err = preprocess_into(
            &png,
            &PreprocessorConfig::default(),
            &DecodeLimits::default(),
            &mut out,
        );
        assert!(matches!(err, Err(PreprocessError::Decode(_))), "{err:?}");
    }

    #[test]
    fn without_resize_the_size_must_match() {
        let cfg = PreprocessorConfig {
            do_resize: false,
            size: ImageSize {
                height: 2,
                width: 2,
            },
            ..PreprocessorConfig::default()
        };
        let mut out = vec![0.0; 12];
        let fits = encode_png(2, 2, ExtendedColorType::Rgb8, &[255; 12]);
        preprocess_into(&fits, &cfg, &DecodeLimits::default(), &mut out).unwrap();
        assert_eq!(out, [1.0; 12]);
        let misfit = encode_png(3, 2, ExtendedColorType::Rgb8, &[255; 18]);
        let err = preprocess_into(&misfit, &cfg, &DecodeLimits::default(), &mut out).unwrap_err();
        assert!(err.to_string().contains("do_resize is false"), "{err}");
    }
}
