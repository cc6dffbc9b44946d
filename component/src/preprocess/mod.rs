//! Image decoding and preprocessing, matching transformers' PIL backend:
//! this room turns the bytes of one request's image into the f32 tensor row
//! the model reads, bit for bit what transformers would have produced.
//!
//! The reference is what a Hugging Face image-classification pipeline does
//! without torchvision: `transformers.image_utils.load_image` (PIL decode,
//! `ImageOps.exif_transpose`, `convert("RGB")`), then the model's image
//! processor (`*ImageProcessorPil`, configured as [`PreprocessorConfig`]
//! resolves it):
//!
//! 1. resize: PIL `Image.resize((w, h), resample, reducing_gap=None)` on the
//!    uint8 RGB image, to a fixed size or one that keeps the aspect ratio;
//! 2. center crop, zero-padding where the image is smaller;
//! 3. `rescale`: `uint8 -> float64 * rescale_factor -> float32` (minus 1
//!    with EfficientNet's `rescale_offset`);
//! 4. `normalize`: `(x - mean) / std` in float32 (again by `std` with
//!    EfficientNet's `include_top`), channels first, RGB or (MobileViT) BGR.
//!
//! [`preprocess_into`] is that pipeline: decode -> orient -> convert ->
//! resize -> crop -> rescale/normalize. Its stages:
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
//! - `crop`: transformers' `center_crop`, its offsets and padding;
//! - `limits`: [`DecodeLimits`], from the host's flags through the environment;
//! - `error`: [`PreprocessError`], what the client is told.
//!
//! Rescale and normalize are tabulated per channel and u8 value here.

mod convert;
mod crop;
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

use self::crop::{Window, center_crop};
use crate::config::{ImageSize, PreprocessorConfig};

/// Full pipeline for one image; writes channels-first `[3, H, W]` f32 into
/// `out` (a row of a preallocated batch tensor; `out.len()` must equal
/// `3 * H * W` where `H`, `W` = [`PreprocessorConfig::input_size`], else `Err`).
pub fn preprocess_into(
    bytes: &[u8],
    cfg: &PreprocessorConfig,
    limits: &DecodeLimits,
    out: &mut [f32],
) -> Result<(), PreprocessError> {
    let ImageSize { height, width } = cfg.input_size;
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
    let mut pixels = match cfg.resize {
        Some(rule) => {
            let (w, h) = rule.target(decoded.width(), decoded.height());
            if (w, h) == decoded.dimensions() {
                // PIL returns an unchanged copy for identity resizes.
                &decoded
            } else {
                resized = resize(&decoded, w, h, cfg.resample);
                &resized
            }
        }
        None => &decoded,
    };
    // Every crop but the last is materialised (only ConvNeXt crops twice);
    // the last is read through its window while writing the tensor.
    let cropped;
    let window = match cfg.crops.split_last() {
        Some((last, [])) => Window::center(pixels, *last),
        Some((last, first)) => {
            let mut img = center_crop(pixels, first[0]);
            for crop in &first[1..] {
                img = center_crop(&img, *crop);
            }
            cropped = img;
            pixels = &cropped;
            Window::center(pixels, *last)
        }
        None => Window::full(pixels),
    };
    if (window.width, window.height) != (width, height) {
        return Err(PreprocessError::Decode(format!(
            "image is {}x{} pixels, but this model's preprocessor does not resize (do_resize is false) and needs exactly {width}x{height}",
            decoded.width(),
            decoded.height()
        )));
    }

    let tables = channel_tables(cfg);
    // do_flip_channel_order comes last: plane 0 holds blue.
    let order = if cfg.flip_channel_order {
        [2, 1, 0]
    } else {
        [0, 1, 2]
    };
    let (start, end) = window.columns_inside(pixels.width());
    let stride = pixels.width() as usize * 3;
    let first_x = (start as i64 + window.left).max(0) as usize;
    for (plane_index, out_plane) in out.chunks_exact_mut(plane).enumerate() {
        let c = order[plane_index];
        let table = &tables[c];
        // Padding is pixel value 0, rescaled and normalised like any other.
        let pad = table[0];
        for (y, row) in out_plane.chunks_exact_mut(width as usize).enumerate() {
            let Some(src_row) = window.source_row(y as u32, pixels.height()) else {
                row.fill(pad);
                continue;
            };
            row[..start].fill(pad);
            row[end..].fill(pad);
            let src = &pixels.as_raw()[src_row * stride + first_x * 3..];
            for (dst, rgb) in row[start..end].iter_mut().zip(src.chunks_exact(3)) {
                *dst = table[usize::from(rgb[c])];
            }
        }
    }
    Ok(())
}

/// The final f32 for every (channel, u8 value): rescale, offset and the
/// normalisations are per-value maps, so tabulating them reproduces
/// transformers' arithmetic exactly at 768 evaluations per image.
fn channel_tables(cfg: &PreprocessorConfig) -> [[f32; 256]; 3] {
    let mut tables = [[0.0f32; 256]; 3];
    for (c, table) in tables.iter_mut().enumerate() {
        for (value, entry) in (0u8..=255).zip(table.iter_mut()) {
            // `rescale`: float64 multiply, then cast to float32.
            let mut x = match cfg.rescale {
                Some(factor) => (f64::from(value) * factor) as f32,
                None => f32::from(value),
            };
            // EfficientNet's `rescale_offset`: `rescaled -= 1` in float32.
            if cfg.rescale_offset {
                x -= 1.0;
            }
            // `normalize`: float32 subtract and divide.
            if let Some((mean, std)) = cfg.normalize {
                x = (x - mean[c]) / std[c];
            }
            // EfficientNet's `include_top`: `normalize(image, 0, image_std)`.
            if let Some(std) = cfg.include_top {
                x = (x - 0.0) / std[c];
            }
            *entry = x;
        }
    }
    tables
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
        // The default config: 255 maps to exactly 1.0 and then to 1.0 after normalising.
        let tables = channel_tables(&PreprocessorConfig::default());
        assert_eq!(tables[0][0], -1.0);
        assert_eq!(tables[2][255], 1.0);
        let cfg = PreprocessorConfig::from_json(
            br#"{"rescale_factor": 0.00784313725490196, "do_normalize": false}"#,
        )
        .unwrap();
        assert_eq!(
            channel_tables(&cfg)[0][255],
            (255.0 * 0.00784313725490196f64) as f32
        );
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
        let cfg = PreprocessorConfig::from_json(
            br#"{"do_resize": false, "size": {"height": 2, "width": 2}}"#,
        )
        .unwrap();
        let mut out = vec![0.0; 12];
        let fits = encode_png(2, 2, ExtendedColorType::Rgb8, &[255; 12]);
        preprocess_into(&fits, &cfg, &DecodeLimits::default(), &mut out).unwrap();
        assert_eq!(out, [1.0; 12]);
        let misfit = encode_png(3, 2, ExtendedColorType::Rgb8, &[255; 18]);
        let err = preprocess_into(&misfit, &cfg, &DecodeLimits::default(), &mut out).unwrap_err();
        assert!(err.to_string().contains("do_resize is false"), "{err}");
    }

    #[test]
    fn crops_pad_with_normalised_zeros_and_flip_to_bgr() {
        // No resize, a 4x3 crop of a 2x1 image: (1 - 3) // 2 = -1 and
        // (2 - 4) // 2 = -1, so the image lands at row 1, columns 1-2.
        let cfg = PreprocessorConfig::from_json(
            br#"{"image_processor_type": "MobileViTImageProcessor", "do_resize": false,
                 "crop_size": {"height": 3, "width": 4}}"#,
        )
        .unwrap();
        let png = encode_png(2, 1, ExtendedColorType::Rgb8, &[255, 0, 51, 0, 255, 102]);
        let mut out = vec![f32::NAN; 36];
        preprocess_into(&png, &cfg, &DecodeLimits::default(), &mut out).unwrap();
        let (b, g, r) = (&out[..12], &out[12..24], &out[24..]);
        #[rustfmt::skip]
        let expect = |first: f32, second: f32| vec![
            0.0, 0.0, 0.0, 0.0,
            0.0, first, second, 0.0,
            0.0, 0.0, 0.0, 0.0,
        ];
        assert_eq!(r, expect(1.0, 0.0));
        assert_eq!(g, expect(0.0, 1.0));
        assert_eq!(b, expect(0.2, 0.4));
    }

    #[test]
    fn efficientnet_offsets_and_divides_twice() {
        let cfg = PreprocessorConfig::from_json(
            br#"{"image_processor_type": "EfficientNetImageProcessor", "rescale_offset": true,
                 "rescale_factor": 0.00784313725490196, "image_mean": 0.0, "image_std": 0.5,
                 "do_resize": false, "size": {"height": 1, "width": 1}}"#,
        )
        .unwrap();
        let tables = channel_tables(&cfg);
        // 255 / 127.5 - 1 = 1, then / 0.5 / 0.5.
        assert_eq!(tables[0][255], 4.0);
        assert_eq!(tables[1][0], -4.0);
    }
}
