//! Image decoding and ViT preprocessing, matching transformers' PIL backend.
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
//! [`resize`] reproduces `ImagingResample` for 8-bit images: a separable
//! convolution (horizontal pass, then vertical) whose kernel is widened by
//! the downscale factor (antialiasing), with weights normalised in f64,
//! quantised to 22 fractional bits and accumulated in i32 with rounding and
//! clipping to u8 after each pass. NEAREST follows PIL's affine nearest
//! sampling instead.
//!
//! Decoding uses the `image` crate for headers, metadata, PNG, WebP and GIF,
//! with conversions to RGB8 that mirror PIL's `convert("RGB")` (see
//! [`decode_rgb`]). JPEG pixels come from a decoder written to reproduce
//! libjpeg-turbo, which PIL uses, because the `image` crate's JPEG backend
//! rounds differently by up to 4 levels (see the `jpeg` module).

use std::f64::consts::PI;
use std::fmt;
use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};

use crate::api::env_limit;
use crate::config::{ImageSize, PreprocessorConfig, Resample};

/// Upper bounds on what [`decode_rgb`] will allocate for, checked from the
/// image header. Like [`crate::api::RequestLimits`], set by the host's flags
/// through the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted `width * height`: `--max_image_pixels`, [`MAX_IMAGE_PIXELS_ENV`].
    pub max_pixels: u64,
    /// Largest accepted width or height: `--max_image_dimension`, [`MAX_IMAGE_DIMENSION_ENV`].
    pub max_dimension: u32,
}

pub const MAX_IMAGE_PIXELS_ENV: &str = "VITRINE_MAX_IMAGE_PIXELS";
pub const MAX_IMAGE_PIXELS_FLAG: &str = "--max_image_pixels";
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 40_000_000;
pub const MAX_IMAGE_DIMENSION_ENV: &str = "VITRINE_MAX_IMAGE_DIMENSION";
pub const MAX_IMAGE_DIMENSION_FLAG: &str = "--max_image_dimension";
pub const DEFAULT_MAX_IMAGE_DIMENSION: u32 = 16_384;

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: DEFAULT_MAX_IMAGE_PIXELS,
            max_dimension: DEFAULT_MAX_IMAGE_DIMENSION,
        }
    }
}

impl DecodeLimits {
    /// The limits in the process environment, defaults for those unset.
    pub fn from_env() -> DecodeLimits {
        DecodeLimits::from_vars(|name| std::env::var(name).ok())
    }

    /// The limits `var` gives by variable name.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> DecodeLimits {
        let default = DecodeLimits::default();
        DecodeLimits {
            max_pixels: env_limit(&var, MAX_IMAGE_PIXELS_ENV, default.max_pixels, u64::MAX),
            max_dimension: env_limit(
                &var,
                MAX_IMAGE_DIMENSION_ENV,
                default.max_dimension,
                u32::MAX,
            ),
        }
    }
}

/// Why an image could not be turned into model input.
#[derive(Debug)]
pub enum PreprocessError {
    /// Not a JPEG, PNG, WebP or GIF.
    UnsupportedFormat,
    /// The data is corrupt, truncated or otherwise unusable; the text says why.
    Decode(String),
    /// The header declares an image beyond [`DecodeLimits`].
    TooLarge {
        width: u32,
        height: u32,
        limit: String,
    },
}

impl fmt::Display for PreprocessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedFormat => {
                f.write_str("unsupported image format; send a JPEG, PNG, WebP or GIF image")
            }
            Self::Decode(reason) => f.write_str(reason),
            Self::TooLarge {
                width,
                height,
                limit,
            } => write!(f, "image is {width}x{height} pixels; the limit is {limit}"),
        }
    }
}

impl std::error::Error for PreprocessError {}

fn decode_error(err: ImageError) -> PreprocessError {
    match err {
        ImageError::Unsupported(e) => {
            PreprocessError::Decode(format!("image uses an unsupported feature: {e}"))
        }
        ImageError::Limits(e) => {
            PreprocessError::Decode(format!("image exceeds the decoder's memory limits: {e}"))
        }
        ImageError::IoError(e) => {
            PreprocessError::Decode(format!("image data is truncated or unreadable: {e}"))
        }
        e => PreprocessError::Decode(format!("image data is corrupt: {e}")),
    }
}

/// Checks dimensions from the header BEFORE decoding (decompression bombs must
/// be refused without allocating), then decodes to RGB8.
///
/// Mirrors `transformers.image_utils.load_image`: the EXIF orientation (or,
/// failing that, XMP `tiff:Orientation`, as PIL's `getexif` does) is applied,
/// and pixels are converted like PIL's `convert("RGB")`: grey is replicated,
/// alpha is dropped without compositing, palettes are expanded (GIF: first
/// frame). For 16-bit PNGs PIL keeps the high byte of each RGB(A)/grey-alpha
/// sample but clips plain 16-bit grey (`I;16`) to 255; both are reproduced.
pub fn decode_rgb(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, PreprocessError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| PreprocessError::Decode(format!("cannot read image data: {e}")))?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Gif)) => {
            f
        }
        _ => return Err(PreprocessError::UnsupportedFormat),
    };
    // PNG and GIF give their size in their first bytes: a bomb is refused
    // before a decoder exists, even when the rest of the file is missing.
    if let Some((w, h)) = header_dimensions(bytes, format) {
        check_dimensions(w, h, limits)?;
    }
    // Creating the decoder parses headers only. The image crate's own limits
    // would refuse a bomb with a vaguer message before we see its size; ours,
    // checked next, bound every allocation that follows.
    let mut reader = reader;
    reader.no_limits();
    let mut decoder = match reader.into_decoder() {
        Ok(d) => d,
        // On wasm32 a bomb's buffer size overflows usize inside the decoder
        // before its dimensions reach us: read them from the header instead.
        Err(e @ ImageError::Limits(_)) => {
            return Err(match header_dimensions(bytes, format) {
                Some((w, h)) => check_dimensions(w, h, limits)
                    .err()
                    .unwrap_or_else(|| decode_error(e)),
                None => decode_error(e),
            });
        }
        Err(e) => return Err(decode_error(e)),
    };
    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, limits)?;
    if format == ImageFormat::Gif {
        check_gif_frames(bytes, limits)?;
    }

    if format == ImageFormat::Jpeg && jpeg_is_truncated(bytes) {
        // PIL refuses these ("image file is truncated"); JPEG decoders would
        // otherwise fill the missing rows with grey.
        return Err(PreprocessError::Decode(
            "JPEG data is truncated (no end-of-image marker)".into(),
        ));
    }

    let orientation = orientation_like_pil(&mut decoder);
    let rgb = if format == ImageFormat::Jpeg {
        match jpeg::decode(bytes, (width, height)) {
            Ok(rgb) => rgb,
            Err(jpeg::Failure::Corrupt(reason)) => {
                return Err(PreprocessError::Decode(format!(
                    "JPEG data is corrupt: {reason}"
                )));
            }
            // 12-bit, arithmetic-coded, lossless...: the image crate's decoder.
            Err(jpeg::Failure::Unsupported) => {
                rgb8_like_pil(DynamicImage::from_decoder(decoder).map_err(decode_error)?)
            }
        }
    } else {
        rgb8_like_pil(DynamicImage::from_decoder(decoder).map_err(decode_error)?)
    };
    if orientation == Orientation::NoTransforms {
        return Ok(rgb);
    }
    let mut oriented = DynamicImage::ImageRgb8(rgb);
    oriented.apply_orientation(orientation);
    Ok(oriented.into_rgb8())
}

/// Width and height straight from a PNG's IHDR or a GIF's logical screen.
fn header_dimensions(bytes: &[u8], format: ImageFormat) -> Option<(u32, u32)> {
    let be = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    };
    let le16 = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))
    };
    match format {
        ImageFormat::Png if bytes.get(12..16) == Some(b"IHDR") => Some((be(16)?, be(20)?)),
        ImageFormat::Gif => Some((le16(6)?, le16(8)?)),
        _ => None,
    }
}

fn check_dimensions(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), PreprocessError> {
    if width == 0 || height == 0 {
        return Err(PreprocessError::Decode(format!(
            "image header declares an empty {width}x{height} image"
        )));
    }
    if width > limits.max_dimension || height > limits.max_dimension {
        return Err(PreprocessError::TooLarge {
            width,
            height,
            limit: format!(
                "{} pixels per side ({MAX_IMAGE_DIMENSION_FLAG}, {MAX_IMAGE_DIMENSION_ENV})",
                limits.max_dimension
            ),
        });
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(PreprocessError::TooLarge {
            width,
            height,
            limit: format!(
                "{} pixels ({MAX_IMAGE_PIXELS_FLAG}, {MAX_IMAGE_PIXELS_ENV})",
                limits.max_pixels
            ),
        });
    }
    Ok(())
}

/// A GIF's frames carry their own sizes, and the decoder allocates for a
/// frame before it is clipped to the logical screen: a 24x16 GIF may declare
/// a 65304x65535 frame (found by fuzzing). Walks the block structure and
/// checks each frame's extent before anything is decoded.
fn check_gif_frames(bytes: &[u8], limits: &DecodeLimits) -> Result<(), PreprocessError> {
    let le16 = |at: usize| -> Option<u32> {
        Some(u32::from(u16::from_le_bytes([
            *bytes.get(at)?,
            *bytes.get(at + 1)?,
        ])))
    };
    let skip_sub_blocks = |mut at: usize| -> Option<usize> {
        loop {
            let len = usize::from(*bytes.get(at)?);
            at += 1 + len;
            if len == 0 {
                return Some(at);
            }
        }
    };
    let color_table = |flags: u8| {
        if flags & 0x80 != 0 {
            3usize << ((flags & 7) + 1)
        } else {
            0
        }
    };
    // Header (6) and logical screen descriptor (7), then the global colors.
    let Some(&screen_flags) = bytes.get(10) else {
        return Ok(());
    };
    let mut at = 13 + color_table(screen_flags);
    // A truncated or malformed stream ends the walk: the decoder reports it.
    while let Some(&block) = bytes.get(at) {
        match block {
            0x21 => match skip_sub_blocks(at + 2) {
                Some(next) => at = next,
                None => break,
            },
            0x2C => {
                let (Some(left), Some(top), Some(w), Some(h), Some(&flags)) = (
                    le16(at + 1),
                    le16(at + 3),
                    le16(at + 5),
                    le16(at + 7),
                    bytes.get(at + 9),
                ) else {
                    break;
                };
                check_dimensions(w.max(1), h.max(1), limits)?;
                check_dimensions((left + w).max(1), (top + h).max(1), limits)?;
                // Local colors, the LZW code size byte, then the data.
                match skip_sub_blocks(at + 10 + color_table(flags) + 1) {
                    Some(next) => at = next,
                    None => break,
                }
            }
            _ => break,
        }
    }
    Ok(())
}

/// True when a JPEG's scan data is not followed by an End Of Image marker.
///
/// Walks the marker segments to the first Start Of Scan (skipping APPn
/// segments, whose embedded thumbnails carry their own EOI), then looks for
/// EOI after it; entropy-coded data cannot contain the bytes FF D9.
fn jpeg_is_truncated(bytes: &[u8]) -> bool {
    const SOS: u8 = 0xDA;
    let mut pos = 2; // after SOI
    let scan_start = loop {
        let (Some(&0xFF), Some(&marker)) = (bytes.get(pos), bytes.get(pos + 1)) else {
            // Malformed or cut inside the headers: leave the verdict to the decoder.
            return bytes.len() <= pos + 1;
        };
        match marker {
            0xFF => pos += 1, // fill byte
            SOS => break pos,
            0x01 | 0xD0..=0xD8 => pos += 2, // markers without a length
            _ => {
                let (Some(&hi), Some(&lo)) = (bytes.get(pos + 2), bytes.get(pos + 3)) else {
                    return true;
                };
                pos += 2 + usize::from(u16::from_be_bytes([hi, lo]));
            }
        }
    };
    !bytes[scan_start..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// The orientation `PIL.ImageOps.exif_transpose` would apply.
fn orientation_like_pil(decoder: &mut impl ImageDecoder) -> Orientation {
    // Metadata problems never fail the request: PIL ignores unreadable EXIF too.
    if let Some(orientation) = decoder
        .exif_metadata()
        .ok()
        .flatten()
        .and_then(|exif| Orientation::from_exif_chunk(&exif))
    {
        return orientation;
    }
    decoder
        .xmp_metadata()
        .ok()
        .flatten()
        .and_then(|xmp| xmp_orientation(&xmp))
        .unwrap_or(Orientation::NoTransforms)
}

/// PIL's fallback: the first match of `tiff:Orientation(="|>)([0-9])` in the XMP packet.
fn xmp_orientation(xmp: &[u8]) -> Option<Orientation> {
    const KEY: &[u8] = b"tiff:Orientation";
    let digit = xmp.windows(KEY.len()).enumerate().find_map(|(i, w)| {
        if w != KEY {
            return None;
        }
        match &xmp[i + KEY.len()..] {
            [b'=', b'"', d, ..] | [b'>', d, ..] if d.is_ascii_digit() => Some(*d),
            _ => None,
        }
    })?;
    Orientation::from_exif(digit - b'0')
}

/// Converts to RGB8 the way PIL's `convert("RGB")` treats the mode PIL would have opened.
fn rgb8_like_pil(image: DynamicImage) -> RgbImage {
    fn from_samples<const N: usize>(
        image: &image::ImageBuffer<impl image::Pixel<Subpixel = u16>, Vec<u16>>,
        to_rgb: impl Fn(&[u16]) -> [u8; 3],
    ) -> RgbImage {
        let mut out = RgbImage::new(image.width(), image.height());
        for (dst, src) in out.chunks_exact_mut(3).zip(image.as_raw().chunks_exact(N)) {
            dst.copy_from_slice(&to_rgb(src));
        }
        out
    }
    let high = |v: u16| v.to_be_bytes()[0];
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        // PIL opens 16-bit grey as "I;16" and clips it into 0..=255.
        DynamicImage::ImageLuma16(img) => from_samples::<1>(&img, |s| {
            let v = u8::try_from(s[0]).unwrap_or(u8::MAX);
            [v; 3]
        }),
        // PIL unpacks these with ";16B" raw modes, i.e. keeps the high byte.
        DynamicImage::ImageLumaA16(img) => from_samples::<2>(&img, |s| [high(s[0]); 3]),
        DynamicImage::ImageRgb16(img) => {
            from_samples::<3>(&img, |s| [high(s[0]), high(s[1]), high(s[2])])
        }
        DynamicImage::ImageRgba16(img) => {
            from_samples::<4>(&img, |s| [high(s[0]), high(s[1]), high(s[2])])
        }
        // Luma8 replicates, LumaA8/Rgba8 drop alpha: the same as PIL.
        other => other.into_rgb8(),
    }
}

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

/// PIL-equivalent `Image.resize((width, height), filter)` of an RGB image.
pub fn resize(img: &image::RgbImage, width: u32, height: u32, filter: Resample) -> image::RgbImage {
    let mut out = RgbImage::new(width, height);
    if width == 0 || height == 0 || img.width() == 0 || img.height() == 0 {
        return out;
    }
    if img.dimensions() == (width, height) {
        out.copy_from_slice(img.as_raw());
        return out;
    }
    let src = Pixels {
        data: img.as_raw(),
        width: img.width() as usize,
        height: img.height() as usize,
    };
    match Kernel::for_filter(filter) {
        Some(kernel) => resample(&src, &mut out, kernel),
        None => nearest(&src, &mut out),
    }
    out
}

/// Borrowed interleaved RGB8 samples.
struct Pixels<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
}

const CHANNELS: usize = 3;

/// Fractional bits of PIL's fixed-point weights (`PRECISION_BITS` in `Resample.c`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// A PIL resampling kernel: the filter function and its support at scale 1.
#[derive(Clone, Copy)]
struct Kernel {
    support: f64,
    weight: fn(f64) -> f64,
}

impl Kernel {
    fn for_filter(filter: Resample) -> Option<Self> {
        let (support, weight): (f64, fn(f64) -> f64) = match filter {
            Resample::Nearest => return None,
            Resample::Box => (0.5, box_weight),
            Resample::Bilinear => (1.0, bilinear_weight),
            Resample::Hamming => (1.0, hamming_weight),
            Resample::Bicubic => (2.0, bicubic_weight),
            Resample::Lanczos => (3.0, lanczos_weight),
        };
        Some(Self { support, weight })
    }
}

fn box_weight(x: f64) -> f64 {
    // Half-open so that exactly one source pixel covers each boundary.
    if x > -0.5 && x <= 0.5 { 1.0 } else { 0.0 }
}

fn bilinear_weight(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

fn hamming_weight(x: f64) -> f64 {
    let x = x.abs();
    if x == 0.0 {
        1.0
    } else if x >= 1.0 {
        0.0
    } else {
        let x = x * PI;
        // PIL writes these constants as C floats, so they carry f32 rounding.
        x.sin() / x * (f64::from(0.54f32) + f64::from(0.46f32) * x.cos())
    }
}

fn bicubic_weight(x: f64) -> f64 {
    // Keys' cubic with a = -0.5, as PIL uses.
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * PI;
        x.sin() / x
    }
}

fn lanczos_weight(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// Fixed-point weights for one axis: output index `i` reads `len[i]` source
/// samples from `start[i]`, weighted by `weights[i * ksize..][..len[i]]`.
struct AxisWeights {
    start: Vec<usize>,
    len: Vec<usize>,
    ksize: usize,
    weights: Vec<i32>,
}

impl AxisWeights {
    /// PIL's `precompute_coeffs` followed by `normalize_coeffs_8bpc`, for the
    /// whole source axis (box `0..in_size`).
    fn new(in_size: usize, out_size: usize, kernel: Kernel) -> Self {
        // PIL keeps the box in C floats; sizes up to 2^24 are exact either way.
        let scale = f64::from(in_size as f32) / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = kernel.support * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let inv_filterscale = 1.0 / filterscale;
        let one = f64::from(1u32 << PRECISION_BITS);

        let mut start = Vec::with_capacity(out_size);
        let mut len = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * ksize];
        let mut exact = vec![0.0f64; ksize];
        for (i, row) in weights.chunks_exact_mut(ksize).enumerate() {
            let center = (i as f64 + 0.5) * scale;
            // C's (int) truncates toward zero; clamped to the image after.
            let first = ((center - support + 0.5) as i64).max(0);
            let end = ((center + support + 0.5) as i64).min(in_size as i64);
            let count = usize::try_from(end - first).unwrap_or(0).min(ksize);

            let mut total = 0.0;
            for (j, w) in exact[..count].iter_mut().enumerate() {
                *w = (kernel.weight)(((first + j as i64) as f64 - center + 0.5) * inv_filterscale);
                total += *w;
            }
            for (w, fixed) in exact[..count].iter().zip(row.iter_mut()) {
                let w = if total != 0.0 { w / total } else { *w };
                // Round half away from zero, then truncate like C's (int).
                *fixed = if w < 0.0 {
                    (-0.5 + w * one) as i32
                } else {
                    (0.5 + w * one) as i32
                };
            }
            start.push(first as usize);
            len.push(count);
        }
        Self {
            start,
            len,
            ksize,
            weights,
        }
    }

    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let weights = &self.weights[i * self.ksize..][..self.len[i]];
        (self.start[i], weights)
    }
}

/// PIL's `clip8`: drop the fractional bits and saturate to u8.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Rounding bias added before the shift in `clip8`.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// PIL's `ImagingResampleInner` for 8-bit RGB: horizontal pass over only the
/// source rows the vertical pass will read, then the vertical pass.
fn resample(src: &Pixels<'_>, out: &mut RgbImage, kernel: Kernel) {
    let out_w = out.width() as usize;
    let out_h = out.height() as usize;
    let need_horizontal = out_w != src.width;
    let need_vertical = out_h != src.height;
    let horizontal = AxisWeights::new(src.width, out_w, kernel);
    let vertical = AxisWeights::new(src.height, out_h, kernel);

    if !need_horizontal {
        vertical_pass(src.data, src.width, &vertical, 0, out);
        return;
    }

    let first_row = vertical.start[0];
    let last_row = vertical.start[out_h - 1] + vertical.len[out_h - 1];
    let row_in = src.width * CHANNELS;
    let row_out = out_w * CHANNELS;
    let mut temp = vec![0u8; (last_row - first_row) * row_out];
    for (dst_row, src_row) in temp
        .chunks_exact_mut(row_out)
        .zip(src.data.chunks_exact(row_in).skip(first_row))
    {
        for (x, dst) in dst_row.chunks_exact_mut(CHANNELS).enumerate() {
            let (start, weights) = horizontal.taps(x);
            let taps = &src_row[start * CHANNELS..][..weights.len() * CHANNELS];
            let mut acc = [HALF; CHANNELS];
            for (px, &w) in taps.chunks_exact(CHANNELS).zip(weights) {
                acc[0] += i32::from(px[0]) * w;
                acc[1] += i32::from(px[1]) * w;
                acc[2] += i32::from(px[2]) * w;
            }
            dst[0] = clip8(acc[0]);
            dst[1] = clip8(acc[1]);
            dst[2] = clip8(acc[2]);
        }
    }

    if need_vertical {
        vertical_pass(&temp, out_w, &vertical, first_row, out);
    } else {
        out.copy_from_slice(&temp);
    }
}

/// Vertical pass over `rows`, whose first row is source row `row_offset`.
/// Accumulates whole rows at a time; integer sums make the order irrelevant.
fn vertical_pass(
    rows: &[u8],
    width: usize,
    vertical: &AxisWeights,
    row_offset: usize,
    out: &mut RgbImage,
) {
    let row_len = width * CHANNELS;
    let mut acc = vec![0i32; row_len];
    for (y, dst_row) in out.chunks_exact_mut(row_len).enumerate() {
        let (start, weights) = vertical.taps(y);
        acc.fill(HALF);
        let first = (start - row_offset) * row_len;
        for (src_row, &w) in rows[first..].chunks_exact(row_len).zip(weights) {
            for (a, &s) in acc.iter_mut().zip(src_row) {
                *a += i32::from(s) * w;
            }
        }
        for (d, &a) in dst_row.iter_mut().zip(&acc) {
            *d = clip8(a);
        }
    }
}

/// Source index for each output index under PIL's nearest resize, which is
/// an affine transform sampling at pixel centres with an accumulated step.
fn nearest_indices(in_size: usize, out_size: usize) -> Vec<usize> {
    let step = f64::from(in_size as f32) / out_size as f64;
    let mut position = step * 0.5;
    let mut indices = Vec::with_capacity(out_size);
    for _ in 0..out_size {
        indices.push((position as usize).min(in_size.saturating_sub(1)));
        position += step;
    }
    indices
}

fn nearest(src: &Pixels<'_>, out: &mut RgbImage) {
    let out_w = out.width() as usize;
    let out_h = out.height() as usize;
    if src.width == 0 || src.height == 0 {
        return;
    }
    let columns = nearest_indices(src.width, out_w);
    let rows = nearest_indices(src.height, out_h);
    let row_in = src.width * CHANNELS;
    for (dst_row, &y) in out.chunks_exact_mut(out_w * CHANNELS).zip(&rows) {
        let src_row = &src.data[y * row_in..][..row_in];
        for (dst, &x) in dst_row.chunks_exact_mut(CHANNELS).zip(&columns) {
            dst.copy_from_slice(&src_row[x * CHANNELS..][..CHANNELS]);
        }
    }
}

/// JPEG decoding that reproduces libjpeg-turbo, the decoder behind PIL.
///
/// zune-jpeg (the `image` crate's backend) rounds its IDCT, chroma upsampling
/// and colour conversion differently, putting samples up to 4 levels off PIL
/// on 4:2:0 files. This decoder follows libjpeg's default decompression
/// instead: the accurate integer IDCT (`jidctint.c`: 13-bit constants, 2 extra
/// bits in the first pass, range limiting through a 10-bit mask), "fancy"
/// triangular upsampling for 2:1 chroma (`jdsample.c`, with its alternating
/// rounding biases and edge replication) and the 16-bit fixed-point YCbCr
/// tables of `jdcolor.c`. It handles 8-bit Huffman-coded sequential and
/// progressive frames with one (grey), three (YCbCr, RGB) or four (CMYK,
/// YCCK) components; anything else is left to the `image` crate.
mod jpeg {
    use image::RgbImage;

    /// Zigzag position -> natural position, with libjpeg's 16 spare entries
    /// so that corrupt run lengths land on coefficient 63 rather than out of bounds.
    const NATURAL_ORDER: [usize; 80] = [
        0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27,
        20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
        58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63,
        63, 63, 63, 63, 63, 63, 63, 63, 63,
    ];

    /// Why this decoder did not produce an image.
    pub(super) enum Failure {
        /// A valid JPEG feature this decoder does not implement.
        Unsupported,
        /// The data is malformed.
        Corrupt(&'static str),
    }

    type Result<T> = std::result::Result<T, Failure>;

    /// Progressive files use about ten scans; each scan walks every block,
    /// so a file with thousands of empty scans is only a way to burn CPU.
    const MAX_SCANS: usize = 256;

    struct Huffman {
        /// (code length, symbol) for every 9-bit prefix of a code of at most 9 bits.
        fast: Vec<(u8, u8)>,
        /// Canonical decoding tables indexed by code length (JPEG Annex F.2.2.3).
        max_code: [i32; 17],
        min_code: [i32; 17],
        first_index: [usize; 17],
        symbols: Vec<u8>,
    }

    const FAST_BITS: u32 = 9;

    impl Huffman {
        fn new(counts: &[u8; 16], symbols: &[u8]) -> Result<Self> {
            let mut fast = vec![(0u8, 0u8); 1 << FAST_BITS];
            let mut max_code = [-1i32; 17];
            let mut min_code = [0i32; 17];
            let mut first_index = [0usize; 17];
            let mut code = 0u32;
            let mut index = 0usize;
            for len in 1..=16 {
                let count = usize::from(counts[len - 1]);
                first_index[len] = index;
                min_code[len] = code as i32;
                for _ in 0..count {
                    if code >= 1 << len {
                        return Err(Failure::Corrupt("bad Huffman table"));
                    }
                    if len as u32 <= FAST_BITS {
                        let shift = FAST_BITS - len as u32;
                        let first = (code << shift) as usize;
                        for entry in &mut fast[first..first + (1 << shift)] {
                            *entry = (len as u8, symbols[index]);
                        }
                    }
                    code += 1;
                    index += 1;
                }
                if count > 0 {
                    max_code[len] = code as i32 - 1;
                }
                code <<= 1;
            }
            Ok(Self {
                fast,
                max_code,
                min_code,
                first_index,
                symbols: symbols.to_vec(),
            })
        }
    }

    /// Entropy-coded data reader with libjpeg's conventions: stuffed zero
    /// bytes are removed, and once a marker is reached it supplies zeros.
    struct Bits<'a> {
        data: &'a [u8],
        pos: usize,
        acc: u64,
        count: u32,
        at_marker: bool,
    }

    impl<'a> Bits<'a> {
        fn new(data: &'a [u8], pos: usize) -> Self {
            Self {
                data,
                pos,
                acc: 0,
                count: 0,
                at_marker: false,
            }
        }

        fn fill(&mut self) {
            while self.count <= 56 {
                let mut byte = 0u8;
                if !self.at_marker && self.pos < self.data.len() {
                    byte = self.data[self.pos];
                    if byte == 0xFF {
                        let mut next = self.pos + 1;
                        while self.data.get(next) == Some(&0xFF) {
                            next += 1;
                        }
                        if self.data.get(next) == Some(&0) {
                            self.pos = next + 1;
                        } else {
                            // A marker (or the end): leave `pos` on its last 0xFF.
                            self.pos = next - 1;
                            self.at_marker = true;
                            byte = 0;
                        }
                    } else {
                        self.pos += 1;
                    }
                }
                self.acc |= u64::from(byte) << (56 - self.count);
                self.count += 8;
            }
        }

        fn peek(&mut self, n: u32) -> u32 {
            if self.count < n {
                self.fill();
            }
            (self.acc >> (64 - n)) as u32
        }

        fn consume(&mut self, n: u32) {
            self.acc <<= n;
            self.count -= n;
        }

        fn bits(&mut self, n: u32) -> u32 {
            if n == 0 {
                return 0;
            }
            let v = self.peek(n);
            self.consume(n);
            v
        }

        fn bit(&mut self) -> bool {
            self.bits(1) == 1
        }

        /// `HUFF_EXTEND(receive(s), s)`.
        fn signed(&mut self, s: u32) -> i32 {
            if s == 0 {
                return 0;
            }
            let v = self.bits(s) as i32;
            if v < 1 << (s - 1) {
                v - (1 << s) + 1
            } else {
                v
            }
        }

        fn decode(&mut self, table: &Huffman) -> u8 {
            let (len, symbol) = table.fast[self.peek(FAST_BITS) as usize];
            if len > 0 {
                self.consume(u32::from(len));
                return symbol;
            }
            let bits = self.peek(16) as i32;
            for len in FAST_BITS as usize + 1..=16 {
                let code = bits >> (16 - len);
                if code <= table.max_code[len] {
                    self.consume(len as u32);
                    let index = table.first_index[len] + (code - table.min_code[len]) as usize;
                    return table.symbols.get(index).copied().unwrap_or(0);
                }
            }
            // libjpeg substitutes a zero for an invalid code.
            self.consume(16);
            0
        }

        /// Drops buffered bits and steps over the RSTn marker that should follow.
        fn restart(&mut self) {
            self.acc = 0;
            self.count = 0;
            self.at_marker = false;
            let mut i = self.pos;
            while i + 1 < self.data.len() {
                if self.data[i] == 0xFF {
                    match self.data[i + 1] {
                        0xD0..=0xD7 => {
                            self.pos = i + 2;
                            return;
                        }
                        0x00 | 0xFF => {}
                        _ => return, // another marker: leave it for the parser
                    }
                }
                i += 1;
            }
        }

        /// Position of the next marker after the scan data.
        fn next_marker(&self) -> usize {
            let mut i = self.pos;
            while i + 1 < self.data.len() {
                if self.data[i] == 0xFF && !matches!(self.data[i + 1], 0x00 | 0xFF | 0xD0..=0xD7) {
                    return i;
                }
                i += 1;
            }
            self.data.len()
        }
    }

    struct Component {
        id: u8,
        h: usize,
        v: usize,
        quant_index: usize,
        /// Copied when the component first appears in a scan, as libjpeg does.
        quant: Option<[u16; 64]>,
        /// Sample dimensions before upsampling (`downsampled_width/height`).
        width: usize,
        height: usize,
        /// Block grid padded to whole MCUs.
        blocks_w: usize,
        blocks_h: usize,
        /// Progressive frames keep every coefficient until the last scan.
        coefs: Vec<i16>,
        samples: Vec<u8>,
        dc_pred: i32,
        dc_table: usize,
        ac_table: usize,
    }

    struct Frame {
        width: usize,
        height: usize,
        progressive: bool,
        h_max: usize,
        v_max: usize,
        mcus_x: usize,
        mcus_y: usize,
        components: Vec<Component>,
    }

    struct Scan {
        components: Vec<usize>,
        ss: usize,
        se: usize,
        ah: u32,
        al: u32,
    }

    fn u16_at(data: &[u8], pos: usize) -> Result<usize> {
        match data.get(pos..pos + 2) {
            Some(&[hi, lo]) => Ok(usize::from(u16::from_be_bytes([hi, lo]))),
            _ => Err(Failure::Corrupt("JPEG segment runs past the end")),
        }
    }

    /// Decodes `data` to RGB like PIL's `Image.open(...).convert("RGB")`.
    /// `size` is what the already-checked header declared; a frame of any
    /// other size is refused before its buffers are allocated.
    pub(super) fn decode(data: &[u8], size: (u32, u32)) -> Result<RgbImage> {
        if data.get(..2) != Some(&[0xFF, 0xD8]) {
            return Err(Failure::Corrupt("missing JPEG start-of-image marker"));
        }
        let mut quant: [Option<[u16; 64]>; 4] = [None; 4];
        let mut dc_tables: [Option<Huffman>; 4] = [None, None, None, None];
        let mut ac_tables: [Option<Huffman>; 4] = [None, None, None, None];
        let mut frame: Option<Frame> = None;
        let mut restart_interval = 0usize;
        let mut saw_jfif = false;
        let mut adobe_transform: Option<u8> = None;
        let mut scans = 0;

        let mut pos = 2;
        loop {
            // Like libjpeg, skip stray bytes (it warns) and 0xFF fill bytes.
            let marker = loop {
                while data.get(pos).is_some_and(|&b| b != 0xFF) {
                    pos += 1;
                }
                while data.get(pos + 1) == Some(&0xFF) {
                    pos += 1;
                }
                match data.get(pos + 1) {
                    Some(0) => pos += 2,
                    next => break next.copied(),
                }
            };
            let Some(marker) = marker else {
                // PIL stops at the end of the data; a missing EOI was refused earlier.
                if frame.is_some() {
                    break;
                }
                return Err(Failure::Corrupt("JPEG ends before its image data"));
            };
            pos += 2;
            if marker == 0xD9 {
                break;
            }
            if matches!(marker, 0x01 | 0xD0..=0xD7) {
                continue;
            }
            let len = u16_at(data, pos)?;
            if len < 2 {
                return Err(Failure::Corrupt("bad JPEG segment length"));
            }
            let body = data
                .get(pos + 2..pos + len)
                .ok_or(Failure::Corrupt("JPEG segment runs past the end"))?;
            match marker {
                // libjpeg's minimum lengths for these two markers.
                0xE0 => saw_jfif |= body.len() >= 14 && body.starts_with(b"JFIF\0"),
                0xEE if body.len() >= 12 && body.starts_with(b"Adobe") => {
                    adobe_transform = Some(body[11]);
                }
                0xDB => read_quant_tables(body, &mut quant)?,
                0xC4 => read_huffman_tables(body, &mut dc_tables, &mut ac_tables)?,
                0xDD => restart_interval = u16_at(body, 0)?,
                0xC0..=0xC2 => {
                    if frame.is_some() {
                        return Err(Failure::Corrupt("more than one JPEG frame"));
                    }
                    frame = Some(read_frame(body, marker == 0xC2, size)?);
                }
                // Lossless, hierarchical, arithmetic-coded or DNL-sized images.
                0xC3 | 0xC5..=0xC7 | 0xC8..=0xCF | 0xDC => return Err(Failure::Unsupported),
                0xDA => {
                    scans += 1;
                    if scans > MAX_SCANS {
                        return Err(Failure::Corrupt("too many JPEG scans"));
                    }
                    let frame = frame
                        .as_mut()
                        .ok_or(Failure::Corrupt("JPEG scan before frame"))?;
                    let scan = read_scan(body, frame)?;
                    for &c in &scan.components {
                        let component = &mut frame.components[c];
                        if component.quant.is_none() {
                            component.quant = quant[component.quant_index];
                        }
                        if component.quant.is_none() {
                            return Err(Failure::Corrupt(
                                "JPEG component lacks a quantization table",
                            ));
                        }
                    }
                    let mut bits = Bits::new(data, pos + len);
                    decode_scan(
                        frame,
                        &scan,
                        &dc_tables,
                        &ac_tables,
                        restart_interval,
                        &mut bits,
                    )?;
                    pos = bits.next_marker();
                    continue;
                }
                _ => {}
            }
            pos += len;
        }

        let mut frame = frame.ok_or(Failure::Corrupt("JPEG has no frame"))?;
        if frame.progressive {
            for component in &mut frame.components {
                inverse_transform_all(component);
            }
        }
        let color = match (frame.components.len(), saw_jfif, adobe_transform) {
            (1, ..) => Color::Grey,
            (4, _, Some(0) | None) => Color::Cmyk { ycck: false },
            (4, _, Some(_)) => Color::Cmyk { ycck: true },
            (3, true, _) => Color::YCbCr,
            (3, false, Some(0)) => Color::Rgb,
            (3, false, Some(_)) => Color::YCbCr,
            (3, false, None) => {
                let ids: Vec<u8> = frame.components.iter().map(|c| c.id).collect();
                if ids == b"RGB" {
                    Color::Rgb
                } else {
                    Color::YCbCr
                }
            }
            _ => return Err(Failure::Unsupported),
        };
        Ok(to_rgb(&frame, color))
    }

    fn read_quant_tables(mut body: &[u8], quant: &mut [Option<[u16; 64]>; 4]) -> Result<()> {
        while let Some((&pq_tq, rest)) = body.split_first() {
            let wide = pq_tq >> 4 != 0;
            let index = usize::from(pq_tq & 15);
            let size = if wide { 128 } else { 64 };
            let values = rest
                .get(..size)
                .ok_or(Failure::Corrupt("short JPEG quantization table"))?;
            let slot = quant
                .get_mut(index)
                .ok_or(Failure::Corrupt("bad quantization table index"))?;
            let mut table = [0u16; 64];
            for (k, &natural) in NATURAL_ORDER[..64].iter().enumerate() {
                table[natural] = if wide {
                    u16::from_be_bytes([values[2 * k], values[2 * k + 1]])
                } else {
                    u16::from(values[k])
                };
            }
            *slot = Some(table);
            body = &rest[size..];
        }
        Ok(())
    }

    fn read_huffman_tables(
        mut body: &[u8],
        dc: &mut [Option<Huffman>; 4],
        ac: &mut [Option<Huffman>; 4],
    ) -> Result<()> {
        while let Some((&tc_th, rest)) = body.split_first() {
            let counts: [u8; 16] = rest
                .get(..16)
                .and_then(|c| c.try_into().ok())
                .ok_or(Failure::Corrupt("short JPEG Huffman table"))?;
            let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
            let symbols = rest
                .get(16..16 + total)
                .ok_or(Failure::Corrupt("short JPEG Huffman table"))?;
            if total > 256 {
                return Err(Failure::Corrupt("bad JPEG Huffman table"));
            }
            let is_dc = tc_th >> 4 == 0;
            if is_dc && symbols.iter().any(|&s| s > 15) {
                // libjpeg rejects these too; they would overflow the bit reader.
                return Err(Failure::Corrupt("bad JPEG DC Huffman table"));
            }
            let table = Huffman::new(&counts, symbols)?;
            let slots = if is_dc { &mut *dc } else { &mut *ac };
            *slots
                .get_mut(usize::from(tc_th & 15))
                .ok_or(Failure::Corrupt("bad Huffman table index"))? = Some(table);
            body = &rest[16 + total..];
        }
        Ok(())
    }

    fn read_frame(body: &[u8], progressive: bool, size: (u32, u32)) -> Result<Frame> {
        let (&precision, rest) = body
            .split_first()
            .ok_or(Failure::Corrupt("short JPEG frame header"))?;
        if precision != 8 {
            return Err(Failure::Unsupported);
        }
        let height = u16_at(rest, 0)?;
        let width = u16_at(rest, 2)?;
        let count = usize::from(
            *rest
                .get(4)
                .ok_or(Failure::Corrupt("short JPEG frame header"))?,
        );
        if width == 0 || height == 0 {
            return Err(Failure::Unsupported); // height given later by a DNL marker
        }
        if (width, height) != (size.0 as usize, size.1 as usize) {
            return Err(Failure::Corrupt(
                "JPEG frame size disagrees with its header",
            ));
        }
        if ![1, 3, 4].contains(&count) {
            return Err(Failure::Unsupported);
        }
        let specs = rest
            .get(5..5 + 3 * count)
            .ok_or(Failure::Corrupt("short JPEG frame header"))?;
        let mut components = Vec::with_capacity(count);
        for spec in specs.chunks_exact(3) {
            let (h, v) = (usize::from(spec[1] >> 4), usize::from(spec[1] & 15));
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) || spec[2] > 3 {
                return Err(Failure::Corrupt("bad JPEG component parameters"));
            }
            components.push(Component {
                id: spec[0],
                h,
                v,
                quant_index: usize::from(spec[2]),
                quant: None,
                width: 0,
                height: 0,
                blocks_w: 0,
                blocks_h: 0,
                coefs: Vec::new(),
                samples: Vec::new(),
                dc_pred: 0,
                dc_table: 0,
                ac_table: 0,
            });
        }
        // A single-component frame is never interleaved: its MCU is one block.
        if count == 1 {
            components[0].h = 1;
            components[0].v = 1;
        }
        let h_max = components.iter().map(|c| c.h).max().unwrap_or(1);
        let v_max = components.iter().map(|c| c.v).max().unwrap_or(1);
        if components
            .iter()
            .any(|c| h_max % c.h != 0 || v_max % c.v != 0)
        {
            // libjpeg refuses fractional sampling ratios too.
            return Err(Failure::Unsupported);
        }
        let mcus_x = width.div_ceil(8 * h_max);
        let mcus_y = height.div_ceil(8 * v_max);
        for c in &mut components {
            c.width = (width * c.h).div_ceil(h_max);
            c.height = (height * c.v).div_ceil(v_max);
            c.blocks_w = mcus_x * c.h;
            c.blocks_h = mcus_y * c.v;
            let blocks = c.blocks_w * c.blocks_h;
            if progressive {
                c.coefs = vec![0; blocks * 64];
            }
            c.samples = vec![0; blocks * 64];
        }
        Ok(Frame {
            width,
            height,
            progressive,
            h_max,
            v_max,
            mcus_x,
            mcus_y,
            components,
        })
    }

    fn read_scan(body: &[u8], frame: &mut Frame) -> Result<Scan> {
        let short = Failure::Corrupt("short JPEG scan header");
        let count = usize::from(*body.first().ok_or(short)?);
        let specs = body
            .get(1..1 + 2 * count)
            .ok_or(Failure::Corrupt("short JPEG scan header"))?;
        let mut components = Vec::with_capacity(count);
        for spec in specs.chunks_exact(2) {
            let index = frame
                .components
                .iter()
                .position(|c| c.id == spec[0])
                .ok_or(Failure::Corrupt("JPEG scan names an unknown component"))?;
            let component = &mut frame.components[index];
            component.dc_table = usize::from(spec[1] >> 4);
            component.ac_table = usize::from(spec[1] & 15);
            if component.dc_table > 3 || component.ac_table > 3 {
                return Err(Failure::Corrupt("bad Huffman table index"));
            }
            components.push(index);
        }
        let tail = body
            .get(1 + 2 * count..4 + 2 * count)
            .ok_or(Failure::Corrupt("short JPEG scan header"))?;
        let scan = Scan {
            components,
            ss: usize::from(tail[0]),
            se: usize::from(tail[1]),
            ah: u32::from(tail[2] >> 4),
            al: u32::from(tail[2] & 15),
        };
        let valid = if frame.progressive {
            let dc = scan.ss == 0 && scan.se == 0;
            let ac =
                scan.ss >= 1 && scan.ss <= scan.se && scan.se <= 63 && scan.components.len() == 1;
            (dc || ac) && scan.al <= 13 && scan.ah <= 13
        } else {
            true
        };
        if scan.components.is_empty() || !valid {
            return Err(Failure::Corrupt("bad JPEG scan parameters"));
        }
        Ok(scan)
    }

    fn table(tables: &[Option<Huffman>; 4], index: usize) -> Result<&Huffman> {
        tables[index].as_ref().ok_or(Failure::Corrupt(
            "JPEG scan uses an undefined Huffman table",
        ))
    }

    fn decode_scan(
        frame: &mut Frame,
        scan: &Scan,
        dc_tables: &[Option<Huffman>; 4],
        ac_tables: &[Option<Huffman>; 4],
        restart_interval: usize,
        bits: &mut Bits<'_>,
    ) -> Result<()> {
        let progressive = frame.progressive;
        let needs_dc = !progressive || scan.ss == 0;
        let needs_ac = !progressive || scan.ss > 0;
        for &c in &scan.components {
            let component = &mut frame.components[c];
            component.dc_pred = 0;
            if needs_dc && !(progressive && scan.ah > 0) {
                table(dc_tables, component.dc_table)?;
            }
            if needs_ac {
                table(ac_tables, component.ac_table)?;
            }
        }

        // (component, block x, block y) of every block, in MCU order.
        let interleaved = scan.components.len() > 1;
        let (mcus_x, mcus_y) = if interleaved {
            (frame.mcus_x, frame.mcus_y)
        } else {
            let component = &frame.components[scan.components[0]];
            (component.width.div_ceil(8), component.height.div_ceil(8))
        };
        let mut eob_run = 0u32;
        let mut restarts_left = restart_interval;
        for mcu in 0..mcus_x * mcus_y {
            if restart_interval > 0 {
                if restarts_left == 0 {
                    bits.restart();
                    eob_run = 0;
                    for &c in &scan.components {
                        frame.components[c].dc_pred = 0;
                    }
                    restarts_left = restart_interval;
                }
                restarts_left -= 1;
            }
            let (mx, my) = (mcu % mcus_x, mcu / mcus_x);
            for &c in &scan.components {
                let (h, v) = if interleaved {
                    (frame.components[c].h, frame.components[c].v)
                } else {
                    (1, 1)
                };
                for by in my * v..(my + 1) * v {
                    for bx in mx * h..(mx + 1) * h {
                        let component = &mut frame.components[c];
                        let index = by * component.blocks_w + bx;
                        if !progressive {
                            let mut block = [0; 64];
                            let dc = table(dc_tables, component.dc_table)?;
                            let ac = table(ac_tables, component.ac_table)?;
                            decode_sequential(bits, dc, ac, &mut component.dc_pred, &mut block);
                            let quant = component
                                .quant
                                .as_ref()
                                .ok_or(Failure::Corrupt("no quantization table"))?;
                            let stride = component.blocks_w * 8;
                            let at = by * 8 * stride + bx * 8;
                            inverse_transform(&block, quant, &mut component.samples[at..], stride);
                            continue;
                        }
                        let coefs: &mut [i16; 64] = (&mut component.coefs
                            [index * 64..index * 64 + 64])
                            .try_into()
                            .map_err(|_| Failure::Corrupt("JPEG block out of range"))?;
                        if scan.ss == 0 {
                            if scan.ah == 0 {
                                let dc = table(dc_tables, component.dc_table)?;
                                let size = u32::from(bits.decode(dc));
                                component.dc_pred =
                                    component.dc_pred.wrapping_add(bits.signed(size));
                                coefs[0] = (component.dc_pred << scan.al) as i16;
                            } else if bits.bit() {
                                coefs[0] |= 1 << scan.al;
                            }
                        } else {
                            let ac = table(ac_tables, component.ac_table)?;
                            if scan.ah == 0 {
                                decode_ac_first(bits, ac, scan, &mut eob_run, coefs);
                            } else {
                                decode_ac_refine(bits, ac, scan, &mut eob_run, coefs);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn decode_sequential(
        bits: &mut Bits<'_>,
        dc: &Huffman,
        ac: &Huffman,
        pred: &mut i32,
        block: &mut [i16; 64],
    ) {
        let size = u32::from(bits.decode(dc));
        *pred = pred.wrapping_add(bits.signed(size));
        block[0] = *pred as i16;
        let mut k = 1;
        while k < 64 {
            let rs = bits.decode(ac);
            let (run, size) = (usize::from(rs >> 4), u32::from(rs & 15));
            if size != 0 {
                k += run;
                block[NATURAL_ORDER[k]] = bits.signed(size) as i16;
            } else if run == 15 {
                k += 15;
            } else {
                break;
            }
            k += 1;
        }
    }

    fn decode_ac_first(
        bits: &mut Bits<'_>,
        ac: &Huffman,
        scan: &Scan,
        eob_run: &mut u32,
        coefs: &mut [i16; 64],
    ) {
        if *eob_run > 0 {
            *eob_run -= 1;
            return;
        }
        let mut k = scan.ss;
        while k <= scan.se {
            let rs = bits.decode(ac);
            let (run, size) = (usize::from(rs >> 4), u32::from(rs & 15));
            if size != 0 {
                k += run;
                coefs[NATURAL_ORDER[k]] = (bits.signed(size) << scan.al) as i16;
            } else if run == 15 {
                k += 15;
            } else {
                *eob_run = (1 << run) + bits.bits(run as u32) - 1;
                break;
            }
            k += 1;
        }
    }

    fn decode_ac_refine(
        bits: &mut Bits<'_>,
        ac: &Huffman,
        scan: &Scan,
        eob_run: &mut u32,
        coefs: &mut [i16; 64],
    ) {
        let plus = 1i16 << scan.al;
        let minus = (-1i16) << scan.al;
        let refine = |bits: &mut Bits<'_>, coef: &mut i16| {
            if bits.bit() && *coef & plus == 0 {
                *coef = coef.wrapping_add(if *coef >= 0 { plus } else { minus });
            }
        };
        let mut k = scan.ss;
        if *eob_run == 0 {
            while k <= scan.se {
                let rs = bits.decode(ac);
                let (mut run, size) = (i32::from(rs >> 4), rs & 15);
                let mut value = 0i16;
                if size != 0 {
                    value = if bits.bit() { plus } else { minus };
                } else if run != 15 {
                    *eob_run = (1 << run) + bits.bits(run as u32);
                    break;
                }
                // Skip `run` zero coefficients, refining non-zero ones on the way.
                while k <= scan.se {
                    let coef = &mut coefs[NATURAL_ORDER[k]];
                    if *coef != 0 {
                        refine(bits, coef);
                    } else {
                        run -= 1;
                        if run < 0 {
                            break;
                        }
                    }
                    k += 1;
                }
                if value != 0 {
                    coefs[NATURAL_ORDER[k]] = value;
                }
                k += 1;
            }
        }
        if *eob_run > 0 {
            while k <= scan.se {
                let coef = &mut coefs[NATURAL_ORDER[k]];
                if *coef != 0 {
                    refine(bits, coef);
                }
                k += 1;
            }
            *eob_run -= 1;
        }
    }

    fn inverse_transform_all(component: &mut Component) {
        let Some(quant) = component.quant else {
            return; // never scanned: libjpeg leaves such a component blank too
        };
        let stride = component.blocks_w * 8;
        for (index, block) in component.coefs.chunks_exact(64).enumerate() {
            let (bx, by) = (index % component.blocks_w, index / component.blocks_w);
            let block: &[i16; 64] = block.try_into().unwrap_or(&[0; 64]);
            inverse_transform(
                block,
                &quant,
                &mut component.samples[by * 8 * stride + bx * 8..],
                stride,
            );
        }
    }

    const CONST_BITS: u32 = 13;
    const PASS1_BITS: u32 = 2;
    const FIX_0_298631336: i64 = 2446;
    const FIX_0_390180644: i64 = 3196;
    const FIX_0_541196100: i64 = 4433;
    const FIX_0_765366865: i64 = 6270;
    const FIX_0_899976223: i64 = 7373;
    const FIX_1_175875602: i64 = 9633;
    const FIX_1_501321110: i64 = 12299;
    const FIX_1_847759065: i64 = 15137;
    const FIX_1_961570560: i64 = 16069;
    const FIX_2_053119869: i64 = 16819;
    const FIX_2_562915447: i64 = 20995;
    const FIX_3_072711026: i64 = 25172;

    fn descale(x: i64, n: u32) -> i64 {
        (x + (1 << (n - 1))) >> n
    }

    /// One 1-D pass of libjpeg's `jpeg_idct_islow` over eight inputs; returns
    /// the outputs before descaling.
    fn idct_1d(v: [i64; 8]) -> [i64; 8] {
        // Even part.
        let z1 = (v[2] + v[6]) * FIX_0_541196100;
        let tmp2 = z1 - v[6] * FIX_1_847759065;
        let tmp3 = z1 + v[2] * FIX_0_765366865;
        let tmp0 = (v[0] + v[4]) << CONST_BITS;
        let tmp1 = (v[0] - v[4]) << CONST_BITS;
        let (tmp10, tmp13) = (tmp0 + tmp3, tmp0 - tmp3);
        let (tmp11, tmp12) = (tmp1 + tmp2, tmp1 - tmp2);
        // Odd part.
        let (t0, t1, t2, t3) = (v[7], v[5], v[3], v[1]);
        let z1 = t0 + t3;
        let z2 = t1 + t2;
        let z3 = t0 + t2;
        let z4 = t1 + t3;
        let z5 = (z3 + z4) * FIX_1_175875602;
        let z1 = -z1 * FIX_0_899976223;
        let z2 = -z2 * FIX_2_562915447;
        let z3 = -z3 * FIX_1_961570560 + z5;
        let z4 = -z4 * FIX_0_390180644 + z5;
        let t0 = t0 * FIX_0_298631336 + z1 + z3;
        let t1 = t1 * FIX_2_053119869 + z2 + z4;
        let t2 = t2 * FIX_3_072711026 + z2 + z3;
        let t3 = t3 * FIX_1_501321110 + z1 + z4;
        [
            tmp10 + t3,
            tmp11 + t2,
            tmp12 + t1,
            tmp13 + t0,
            tmp13 - t0,
            tmp12 - t1,
            tmp11 - t2,
            tmp10 - t3,
        ]
    }

    /// libjpeg's post-IDCT range limit: the 10-bit masked index keeps wild
    /// (corrupt) values from wrapping differently than in PIL.
    fn range_limit(x: i64) -> u8 {
        let x = (x as i32) & 1023;
        match x {
            0..=127 => (x + 128) as u8,
            128..=511 => 255,
            512..=895 => 0,
            _ => (x - 896) as u8,
        }
    }

    fn inverse_transform(coefs: &[i16; 64], quant: &[u16; 64], out: &mut [u8], stride: usize) {
        let mut workspace = [0i32; 64];
        for col in 0..8 {
            let v: [i64; 8] = std::array::from_fn(|row| {
                i64::from(coefs[row * 8 + col]) * i64::from(quant[row * 8 + col])
            });
            // Shortcuts for all-zero AC terms give the same values as the full
            // computation; they only save time, as in libjpeg.
            if v[1..].iter().all(|&x| x == 0) {
                for row in 0..8 {
                    workspace[row * 8 + col] = (v[0] << PASS1_BITS) as i32;
                }
                continue;
            }
            let result = idct_1d(v);
            for (row, r) in result.into_iter().enumerate() {
                workspace[row * 8 + col] = descale(r, CONST_BITS - PASS1_BITS) as i32;
            }
        }
        for (row, line) in workspace.chunks_exact(8).enumerate() {
            let dst = &mut out[row * stride..row * stride + 8];
            if line[1..].iter().all(|&x| x == 0) {
                dst.fill(range_limit(descale(i64::from(line[0]), PASS1_BITS + 3)));
                continue;
            }
            let v: [i64; 8] = std::array::from_fn(|i| i64::from(line[i]));
            let result = idct_1d(v);
            for (d, r) in dst.iter_mut().zip(result) {
                *d = range_limit(descale(r, CONST_BITS + PASS1_BITS + 3));
            }
        }
    }

    #[derive(Clone, Copy)]
    enum Color {
        Grey,
        YCbCr,
        Rgb,
        /// Adobe CMYK, or YCCK when its APP14 transform says so.
        Cmyk {
            ycck: bool,
        },
    }

    /// libjpeg's upsampled row `y` of a component. Writes at least the
    /// image width (more for padded 2:1 rows); callers crop.
    fn upsample_row(frame: &Frame, component: &Component, y: usize, out: &mut [u8]) {
        let stride = component.blocks_w * 8;
        let row = |i: usize| &component.samples[i * stride..i * stride + component.width];
        let h_ratio = frame.h_max / component.h;
        let v_ratio = frame.v_max / component.v;
        // The row that is nearer for this output row's other half, clamped to
        // the image as libjpeg's context rows are.
        let further_row = || {
            if y.is_multiple_of(2) {
                (y / 2).saturating_sub(1)
            } else {
                (y / 2 + 1).min(component.height - 1)
            }
        };
        let fancy_width = component.width > 2;
        match (h_ratio, v_ratio) {
            (1, 1) => out[..component.width].copy_from_slice(row(y)),
            (2, 1) if fancy_width => fancy_h2(row(y), out),
            (1, 2) => {
                // h1v2_fancy_upsample: 3/4 nearer row + 1/4 further row,
                // biased 1 above and 2 below.
                let bias = if y.is_multiple_of(2) { 1 } else { 2 };
                for ((o, &near), &far) in out.iter_mut().zip(row(y / 2)).zip(row(further_row())) {
                    *o = ((u32::from(near) * 3 + u32::from(far) + bias) >> 2) as u8;
                }
            }
            (2, 2) if fancy_width => fancy_h2v2(row(y / 2), row(further_row()), out),
            (h, v) => {
                // int_upsample, h2v1_upsample, h2v2_upsample: replication.
                for (chunk, &sample) in out.chunks_mut(h).zip(row(y / v)) {
                    chunk.fill(sample);
                }
            }
        }
    }

    /// `h2v1_fancy_upsample`: 3/4 nearer + 1/4 further sample, biased 1
    /// then 2. Replicating the edge samples reproduces its special first and
    /// last columns.
    fn fancy_h2(input: &[u8], out: &mut [u8]) {
        let at = |i: usize| u32::from(input[i]);
        let last = input.len() - 1;
        for (c, pair) in out.chunks_exact_mut(2).take(input.len()).enumerate() {
            let this = at(c) * 3;
            pair[0] = ((this + at(c.saturating_sub(1)) + 1) >> 2) as u8;
            pair[1] = ((this + at((c + 1).min(last)) + 2) >> 2) as u8;
        }
    }

    /// `h2v2_fancy_upsample` for one output row: vertical 3:1 column sums,
    /// then horizontal 3:1 with biases 8 and 7 over 16. Replicating the edge
    /// sums reproduces its special first and last columns.
    fn fancy_h2v2(near: &[u8], far: &[u8], out: &mut [u8]) {
        let sum = |i: usize| u32::from(near[i]) * 3 + u32::from(far[i]);
        let last = near.len() - 1;
        let mut previous = sum(0);
        let mut this = previous;
        for (c, pair) in out.chunks_exact_mut(2).take(near.len()).enumerate() {
            let next = sum((c + 1).min(last));
            pair[0] = ((this * 3 + previous + 8) >> 4) as u8;
            pair[1] = ((this * 3 + next + 7) >> 4) as u8;
            previous = this;
            this = next;
        }
    }

    /// `jdcolor.c`'s YCbCr -> RGB tables: 16 fractional bits, rounding folded in.
    struct YccTables {
        cr_r: [i32; 256],
        cb_b: [i32; 256],
        cr_g: [i64; 256],
        cb_g: [i64; 256],
    }

    impl YccTables {
        fn new() -> Self {
            const ONE_HALF: i64 = 1 << 15;
            let fix = |x: f64| (x * 65536.0 + 0.5) as i64;
            let centred = |i: usize| i as i64 - 128;
            Self {
                cr_r: std::array::from_fn(|i| {
                    ((fix(1.40200) * centred(i) + ONE_HALF) >> 16) as i32
                }),
                cb_b: std::array::from_fn(|i| {
                    ((fix(1.77200) * centred(i) + ONE_HALF) >> 16) as i32
                }),
                cr_g: std::array::from_fn(|i| -fix(0.71414) * centred(i)),
                cb_g: std::array::from_fn(|i| -fix(0.34414) * centred(i) + ONE_HALF),
            }
        }

        fn rgb(&self, luma: u8, cb: u8, cr: u8) -> [u8; 3] {
            let luma = i32::from(luma);
            let (cb, cr) = (usize::from(cb), usize::from(cr));
            [
                clamp(luma + self.cr_r[cr]),
                clamp(luma + ((self.cb_g[cb] + self.cr_g[cr]) >> 16) as i32),
                clamp(luma + self.cb_b[cb]),
            ]
        }
    }

    fn clamp(v: i32) -> u8 {
        v.clamp(0, 255) as u8
    }

    fn to_rgb(frame: &Frame, color: Color) -> RgbImage {
        let (width, height) = (frame.width, frame.height);
        let mut image = RgbImage::new(width as u32, height as u32);
        // Wide enough for any upsampled row, padding included.
        let padded = frame.mcus_x * 8 * frame.h_max;
        let mut rows = vec![vec![0u8; padded]; frame.components.len()];
        let ycc = YccTables::new();

        for (y, out_row) in image.chunks_exact_mut(width * 3).enumerate() {
            for (component, row) in frame.components.iter().zip(&mut rows) {
                upsample_row(frame, component, y, row);
            }
            let pixels = out_row.chunks_exact_mut(3);
            match (color, &rows[..]) {
                (Color::Grey, [l, ..]) => {
                    for (px, &l) in pixels.zip(l) {
                        px.fill(l);
                    }
                }
                (Color::Rgb, [r, g, b, ..]) => {
                    for (px, ((&r, &g), &b)) in pixels.zip(r.iter().zip(g).zip(b)) {
                        px.copy_from_slice(&[r, g, b]);
                    }
                }
                (Color::YCbCr, [l, cb, cr, ..]) => {
                    for (px, ((&l, &cb), &cr)) in pixels.zip(l.iter().zip(cb).zip(cr)) {
                        px.copy_from_slice(&ycc.rgb(l, cb, cr));
                    }
                }
                (Color::Cmyk { ycck }, [c, m, y, k]) => {
                    // PIL reads CMYK JPEGs as Adobe-inverted ("CMYK;I") and
                    // converts with 255 - k - c * (255 - k) / 255 per channel.
                    let samples = c.iter().zip(m).zip(y).zip(k);
                    for (px, (((&c, &m), &y), &k)) in pixels.zip(samples) {
                        let inverted = if ycck {
                            // libjpeg's YCCK -> CMYK is 255 - RGB; PIL's inversion undoes it.
                            ycc.rgb(c, m, y)
                        } else {
                            [255 - c, 255 - m, 255 - y]
                        };
                        let not_black = i32::from(k);
                        for (o, c) in px.iter_mut().zip(inverted) {
                            let product = i32::from(c) * not_black + 128;
                            *o = clamp(not_black - (((product >> 8) + product) >> 8));
                        }
                    }
                }
                // `decode` pairs each colour with its component count.
                _ => {}
            }
        }
        image
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::gif::GifEncoder;
    use image::codecs::jpeg::JpegEncoder;
    use image::codecs::png::PngEncoder;
    use image::{ExtendedColorType, ImageEncoder};
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Records the largest single allocation, to show that refused images
    /// never get their pixel buffer allocated.
    struct LargestAllocation;

    static LARGEST: AtomicUsize = AtomicUsize::new(0);

    // SAFETY: defers to `System`; only adds a relaxed atomic update.
    unsafe impl GlobalAlloc for LargestAllocation {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as the caller's.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            LARGEST.fetch_max(new_size, Ordering::Relaxed);
            // SAFETY: same contract as the caller's.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: LargestAllocation = LargestAllocation;

    /// The synthetic image the expected values below were computed from with
    /// Pillow 13.0.0: `v(x, y, c) = (x*37 + y*91 + c*53 + x*y*11) % 256`.
    fn pattern(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            image::Rgb(std::array::from_fn(|c| {
                ((x * 37 + y * 91 + c as u32 * 53 + x * y * 11) % 256) as u8
            }))
        })
    }

    /// `numpy.array(Image.fromarray(pattern(w, h)).resize(out, resample=filter))`.
    fn assert_resize(input: (u32, u32), output: (u32, u32), filter: Resample, pil: &[u8]) {
        let resized = resize(&pattern(input.0, input.1), output.0, output.1, filter);
        assert_eq!(resized.dimensions(), output);
        assert_eq!(
            resized.as_raw().as_slice(),
            pil,
            "{filter} {input:?} -> {output:?}"
        );
    }

    #[test]
    fn bilinear_downscale_matches_pil() {
        #[rustfmt::skip]
        let pil = [108, 136, 143, 135, 132, 140, 131, 130, 131, 117, 145, 117, 127, 124, 113, 106, 134, 120];
        assert_resize((7, 5), (3, 2), Resample::Bilinear, &pil);
    }

    #[test]
    fn bilinear_upscale_matches_pil() {
        #[rustfmt::skip]
        let pil = [
            0, 53, 106, 6, 59, 112, 23, 76, 129, 39, 92, 145, 56, 109, 162, 72, 125, 178, 88, 141, 194,
            105, 158, 211, 111, 164, 217, 36, 89, 142, 43, 96, 149, 62, 115, 168, 80, 133, 180, 99, 152,
            154, 117, 170, 126, 135, 148, 139, 154, 122, 157, 161, 111, 164, 91, 144, 197, 99, 152, 205,
            120, 173, 226, 142, 195, 233, 163, 216, 141, 184, 237, 49, 206, 159, 56, 227, 67, 77, 235, 32,
            85, 146, 199, 98, 155, 182, 107, 179, 138, 131, 195, 103, 150, 151, 127, 129, 107, 151, 108,
            123, 136, 126, 147, 114, 150, 156, 106, 159, 182, 235, 32, 192, 202, 42, 218, 115, 68, 230, 41,
            94, 143, 68, 121, 55, 94, 147, 67, 120, 173, 93, 146, 199, 103, 156, 209,
        ];
        assert_resize((4, 3), (9, 5), Resample::Bilinear, &pil);
    }

    #[test]
    fn bilinear_non_square_matches_pil() {
        // Narrower and taller at once: one axis downscales, the other upscales.
        #[rustfmt::skip]
        let pil = [
            19, 72, 125, 77, 130, 183, 145, 198, 200, 203, 122, 65, 74, 127, 174, 142, 154, 131, 116, 128,
            159, 143, 139, 144, 140, 162, 168, 165, 152, 110, 113, 100, 115, 103, 124, 174, 201, 144, 63,
            100, 102, 155, 157, 159, 79, 115, 58, 99, 96, 118, 123, 145, 132, 90, 121, 108, 123, 136, 157,
            111, 90, 143, 142, 124, 136, 91, 112, 124, 120, 105, 158, 129, 138, 191, 135, 72, 125, 126,
            118, 171, 91, 52, 105, 146,
        ];
        assert_resize((7, 5), (4, 7), Resample::Bilinear, &pil);
    }

    #[test]
    fn identity_size_is_unchanged() {
        for filter in [Resample::Bilinear, Resample::Bicubic, Resample::Nearest] {
            let input = pattern(6, 4);
            assert_eq!(resize(&input, 6, 4, filter), input);
        }
    }

    #[test]
    fn other_filters_match_pil() {
        #[rustfmt::skip]
        let bicubic = [
            45, 104, 149, 123, 158, 187, 170, 149, 116, 161, 165, 146, 143, 121, 105, 100, 106, 149, 118,
            121, 105, 137, 116, 109, 133, 136, 109, 108, 167, 126, 108, 136, 111, 77, 136, 127,
        ];
        assert_resize((7, 5), (3, 4), Resample::Bicubic, &bicubic);
        #[rustfmt::skip]
        let lanczos = [
            51, 104, 165, 108, 161, 148, 146, 124, 169, 111, 174, 154, 169, 113, 122, 153, 148, 115, 152,
            128, 122, 138, 121, 104, 131, 106, 100, 111, 119, 141, 94, 147, 153, 102, 155, 81, 133, 113,
            122, 90, 144, 113, 98, 148, 129,
        ];
        assert_resize((7, 5), (5, 3), Resample::Lanczos, &lanczos);
        #[rustfmt::skip]
        let box_filter = [
            19, 72, 125, 111, 164, 217, 204, 129, 54, 164, 153, 142, 127, 137, 105, 111, 100, 153, 52,
            105, 158, 142, 109, 77, 146, 199, 124, 149, 202, 127, 95, 148, 116, 42, 95, 148,
        ];
        assert_resize((7, 5), (3, 4), Resample::Box, &box_filter);
        #[rustfmt::skip]
        let hamming = [
            52, 105, 157, 122, 153, 142, 119, 150, 187, 167, 128, 115, 170, 147, 93, 107, 124, 129, 135,
            152, 84, 112, 89, 120, 106, 159, 145, 94, 125, 97, 121, 152, 99, 87, 140, 137,
        ];
        assert_resize((7, 5), (4, 3), Resample::Hamming, &hamming);
        #[rustfmt::skip]
        let nearest = [
            0, 53, 106, 74, 127, 180, 148, 201, 254, 222, 19, 72, 0, 53, 106, 74, 127, 180, 148, 201, 254,
            222, 19, 72, 91, 144, 197, 187, 240, 37, 27, 80, 133, 123, 176, 229, 182, 235, 32, 44, 97, 150,
            162, 215, 12, 24, 77, 130, 182, 235, 32, 44, 97, 150, 162, 215, 12, 24, 77, 130, 17, 70, 123,
            157, 210, 7, 41, 94, 147, 181, 234, 31, 108, 161, 214, 14, 67, 120, 176, 229, 26, 82, 135, 188,
            108, 161, 214, 14, 67, 120, 176, 229, 26, 82, 135, 188,
        ];
        assert_resize((7, 5), (4, 8), Resample::Nearest, &nearest);
    }

    #[test]
    fn degenerate_sizes_do_not_panic() {
        let input = pattern(3, 2);
        assert_eq!(
            resize(&input, 0, 5, Resample::Bilinear).dimensions(),
            (0, 5)
        );
        assert_eq!(
            resize(&RgbImage::new(0, 0), 2, 2, Resample::Bicubic).dimensions(),
            (2, 2)
        );
        assert_eq!(resize(&input, 1, 1, Resample::Lanczos).dimensions(), (1, 1));
        assert_eq!(
            resize(&input, 1000, 1, Resample::Nearest).dimensions(),
            (1000, 1)
        );
    }

    fn encode_png(width: u32, height: u32, color: ExtendedColorType, samples: &[u8]) -> Vec<u8> {
        let mut png = Vec::new();
        PngEncoder::new(&mut png)
            .write_image(samples, width, height, color)
            .unwrap();
        png
    }

    fn encode_jpeg(img: &RgbImage) -> Vec<u8> {
        let mut jpeg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpeg, 90)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                ExtendedColorType::Rgb8,
            )
            .unwrap();
        jpeg
    }

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

    #[test]
    fn grayscale_png_is_replicated() {
        let png = encode_png(3, 1, ExtendedColorType::L8, &[0, 128, 255]);
        let rgb = decode_rgb(&png, &DecodeLimits::default()).unwrap();
        assert_eq!(rgb.as_raw(), &[0, 0, 0, 128, 128, 128, 255, 255, 255]);
        let png = encode_png(2, 1, ExtendedColorType::La8, &[10, 0, 200, 255]);
        let rgb = decode_rgb(&png, &DecodeLimits::default()).unwrap();
        assert_eq!(rgb.as_raw(), &[10, 10, 10, 200, 200, 200]);
    }

    #[test]
    fn rgba_png_drops_alpha_without_compositing() {
        let png = encode_png(
            2,
            1,
            ExtendedColorType::Rgba8,
            &[10, 20, 30, 0, 40, 50, 60, 128],
        );
        let rgb = decode_rgb(&png, &DecodeLimits::default()).unwrap();
        assert_eq!(rgb.as_raw(), &[10, 20, 30, 40, 50, 60]);
    }

    #[test]
    fn sixteen_bit_png_follows_pil() {
        // PIL: "I;16" grey clips to 255; 16-bit RGB(A) keeps the high byte.
        // The encoder takes native-endian samples.
        let samples: Vec<u8> = [0u16, 1, 255, 256, 65535]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let png = encode_png(5, 1, ExtendedColorType::L16, &samples);
        let rgb = decode_rgb(&png, &DecodeLimits::default()).unwrap();
        let grey: Vec<u8> = rgb.as_raw().chunks(3).map(|p| p[0]).collect();
        assert_eq!(grey, [0, 1, 255, 255, 255]);

        let samples: Vec<u8> = [0x1234u16, 0xABCD, 0x00FF]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let png = encode_png(1, 1, ExtendedColorType::Rgb16, &samples);
        let rgb = decode_rgb(&png, &DecodeLimits::default()).unwrap();
        assert_eq!(rgb.as_raw(), &[0x12, 0xAB, 0x00]);
    }

    #[test]
    fn gif_first_frame_expands_palette() {
        let frame = image::RgbaImage::from_fn(3, 2, |x, y| {
            image::Rgba([x as u8 * 100, y as u8 * 50, 7, 255])
        });
        let mut gif = Vec::new();
        GifEncoder::new(&mut gif)
            .encode(frame.as_raw(), 3, 2, ExtendedColorType::Rgba8)
            .unwrap();
        let rgb = decode_rgb(&gif, &DecodeLimits::default()).unwrap();
        assert_eq!(rgb.dimensions(), (3, 2));
        assert_eq!(rgb.get_pixel(2, 1).0, [200, 50, 7]);
    }

    /// CRC-32 as PNG chunks need it.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [
            (
                &b"IHDR"[..],
                [
                    &width.to_be_bytes()[..],
                    &height.to_be_bytes(),
                    &[8, 2, 0, 0, 0],
                ]
                .concat(),
            ),
            (
                b"IDAT",
                vec![0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
            ),
            (b"IEND", vec![]),
        ] {
            png.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let body = [kind, &data].concat();
            png.extend_from_slice(&body);
            png.extend_from_slice(&crc32(&body).to_be_bytes());
        }
        png
    }

    #[test]
    fn decode_limits_come_from_the_environment() {
        let limits = DecodeLimits::from_vars(|name| match name {
            MAX_IMAGE_PIXELS_ENV => Some("1000".into()),
            MAX_IMAGE_DIMENSION_ENV => Some("50".into()),
            _ => None,
        });
        assert_eq!((limits.max_pixels, limits.max_dimension), (1000, 50));
        assert_eq!(DecodeLimits::from_vars(|_| None), DecodeLimits::default());
        let unusable = DecodeLimits::from_vars(|_| Some("-3".into()));
        assert_eq!(unusable, DecodeLimits::default());
        // A lowered limit refuses what the default accepts, naming the flag.
        let err = decode_rgb(&png_claiming(40, 30), &limits).unwrap_err();
        assert!(
            err.to_string().contains("40x30") && err.to_string().contains("--max_image_pixels"),
            "{err}"
        );
        let err = decode_rgb(&png_claiming(60, 10), &limits).unwrap_err();
        assert!(err.to_string().contains("--max_image_dimension"), "{err}");
    }

    #[test]
    fn pixel_bomb_is_refused_before_allocating() {
        let limits = DecodeLimits::default();
        for (width, height, limit) in [
            (
                100_000,
                100_000,
                "16384 pixels per side (--max_image_dimension, VITRINE_MAX_IMAGE_DIMENSION)",
            ),
            (
                16_000,
                16_000,
                "40000000 pixels (--max_image_pixels, VITRINE_MAX_IMAGE_PIXELS)",
            ),
        ] {
            let bomb = png_claiming(width, height);
            LARGEST.store(0, Ordering::Relaxed);
            let err = decode_rgb(&bomb, &limits).unwrap_err();
            // Other tests run concurrently, but none allocates anywhere near this.
            assert!(LARGEST.load(Ordering::Relaxed) < 64 << 20);
            match &err {
                PreprocessError::TooLarge {
                    width: w,
                    height: h,
                    limit: l,
                } => {
                    assert_eq!((*w, *h, l.as_str()), (width, height, limit));
                }
                other => panic!("expected TooLarge, got {other:?}"),
            }
            assert_eq!(
                err.to_string(),
                format!("image is {width}x{height} pixels; the limit is {limit}")
            );
        }
    }

    #[test]
    fn truncated_jpeg_is_an_error() {
        let jpeg = encode_jpeg(&pattern(40, 24));
        assert!(decode_rgb(&jpeg, &DecodeLimits::default()).is_ok());
        for cut in 0..jpeg.len() {
            match decode_rgb(&jpeg[..cut], &DecodeLimits::default()) {
                Err(PreprocessError::Decode(_) | PreprocessError::UnsupportedFormat) => {}
                other => panic!("{cut} of {} bytes: {other:?}", jpeg.len()),
            }
        }
        // Bytes after the end-of-image marker are ignored, as PIL ignores them.
        let padded = [&jpeg[..], b"trailing bytes"].concat();
        assert!(decode_rgb(&padded, &DecodeLimits::default()).is_ok());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let limits = DecodeLimits::default();
        assert!(matches!(
            decode_rgb(b"", &limits),
            Err(PreprocessError::UnsupportedFormat)
        ));
        assert!(matches!(
            decode_rgb(b"definitely not an image", &limits),
            Err(PreprocessError::UnsupportedFormat)
        ));
        // Known signatures followed by rubbish: every prefix must fail cleanly.
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let rubbish: Vec<u8> = (0..512)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        for signature in [
            &b"\x89PNG\r\n\x1a\n"[..],
            b"\xFF\xD8\xFF",
            b"GIF89a",
            b"RIFF\x00\x01\x00\x00WEBPVP8 ",
        ] {
            let data = [signature, &rubbish].concat();
            for cut in 0..data.len() {
                let _ = decode_rgb(&data[..cut], &limits);
            }
            assert!(decode_rgb(&data, &limits).is_err());
        }
        // Every truncation of valid PNG, GIF and WebP files fails or decodes; none panics.
        let png = encode_png(5, 4, ExtendedColorType::Rgb8, pattern(5, 4).as_raw());
        let mut gif = Vec::new();
        GifEncoder::new(&mut gif)
            .encode(&[9; 5 * 4 * 4], 5, 4, ExtendedColorType::Rgba8)
            .unwrap();
        let mut webp = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
            .write_image(pattern(5, 4).as_raw(), 5, 4, ExtendedColorType::Rgb8)
            .unwrap();
        for file in [png, gif, webp] {
            assert!(decode_rgb(&file, &limits).is_ok());
            for cut in 0..file.len() {
                let _ = decode_rgb(&file[..cut], &limits);
            }
        }
        // Damaged JPEG bytes reach the entropy decoder and IDCT.
        let jpeg = encode_jpeg(&pattern(37, 29));
        for at in 2..jpeg.len() - 2 {
            for flip in [0x01, 0x10, 0xFF] {
                let mut damaged = jpeg.clone();
                damaged[at] ^= flip;
                let _ = decode_rgb(&damaged, &limits);
            }
        }
    }

    fn exif_with_orientation(orientation: u16) -> Vec<u8> {
        // Little-endian TIFF header and one IFD entry: Orientation (0x0112), SHORT, 1 value.
        let mut exif = b"II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00".to_vec();
        exif.extend_from_slice(&orientation.to_le_bytes());
        exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        exif
    }

    #[test]
    fn exif_orientation_is_applied() {
        // 3x2 source; values are x + 10 * y in every channel.
        let source = RgbImage::from_fn(3, 2, |x, y| image::Rgb([(x + 10 * y) as u8; 3]));
        // PIL's exif_transpose results (first channel, row-major) for orientations 1..=8.
        let expected: [(u32, u32, [u8; 6]); 8] = [
            (3, 2, [0, 1, 2, 10, 11, 12]),
            (3, 2, [2, 1, 0, 12, 11, 10]),
            (3, 2, [12, 11, 10, 2, 1, 0]),
            (3, 2, [10, 11, 12, 0, 1, 2]),
            (2, 3, [0, 10, 1, 11, 2, 12]),
            (2, 3, [10, 0, 11, 1, 12, 2]),
            (2, 3, [12, 2, 11, 1, 10, 0]),
            (2, 3, [2, 12, 1, 11, 0, 10]),
        ];
        for (orientation, (width, height, values)) in (1..=8).zip(expected) {
            let mut png = Vec::new();
            let mut encoder = PngEncoder::new(&mut png);
            encoder
                .set_exif_metadata(exif_with_orientation(orientation))
                .unwrap();
            encoder
                .write_image(source.as_raw(), 3, 2, ExtendedColorType::Rgb8)
                .unwrap();
            let rgb = decode_rgb(&png, &DecodeLimits::default()).unwrap();
            let firsts: Vec<u8> = rgb.as_raw().chunks(3).map(|p| p[0]).collect();
            assert_eq!(
                (rgb.width(), rgb.height(), firsts.as_slice()),
                (width, height, &values[..]),
                "orientation {orientation}"
            );
        }
    }

    #[test]
    fn xmp_orientation_is_found_like_pil() {
        assert_eq!(
            xmp_orientation(b"<x tiff:Orientation=\"6\"/>"),
            Some(Orientation::Rotate90)
        );
        assert_eq!(
            xmp_orientation(b"<tiff:Orientation>3</tiff:Orientation>"),
            Some(Orientation::Rotate180)
        );
        assert_eq!(
            xmp_orientation(b"tiff:Orientation tiff:Orientation=\"8\""),
            Some(Orientation::Rotate270)
        );
        assert_eq!(xmp_orientation(b"tiff:Orientation=\"9\""), None);
        assert_eq!(xmp_orientation(b"tiff:Orientation="), None);
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            PreprocessError::UnsupportedFormat.to_string(),
            "unsupported image format; send a JPEG, PNG, WebP or GIF image"
        );
    }
}
