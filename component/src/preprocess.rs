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
//! sampling instead. Decoding uses the `image` crate; the conversions to RGB8
//! mirror PIL's `convert("RGB")` (see [`decode_rgb`]).

use std::f64::consts::PI;
use std::fmt;
use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};

use crate::config::{ImageSize, PreprocessorConfig, Resample};

/// Upper bounds on what [`decode_rgb`] will allocate for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted `width * height`.
    pub max_pixels: u64,
    /// Largest accepted width or height.
    pub max_dimension: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: 40_000_000,
            max_dimension: 16_384,
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
        Some(f @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Gif)) => f,
        _ => return Err(PreprocessError::UnsupportedFormat),
    };
    // Creating the decoder parses headers only.
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, limits)?;

    if format == ImageFormat::Jpeg && jpeg_is_truncated(bytes) {
        // PIL refuses these ("image file is truncated"); zune-jpeg would
        // silently fill the missing rows.
        return Err(PreprocessError::Decode(
            "JPEG data is truncated (no end-of-image marker)".into(),
        ));
    }

    let orientation = orientation_like_pil(&mut decoder);
    let decoded = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    let rgb = rgb8_like_pil(decoded);
    if orientation == Orientation::NoTransforms {
        return Ok(rgb);
    }
    let mut oriented = DynamicImage::ImageRgb8(rgb);
    oriented.apply_orientation(orientation);
    Ok(oriented.into_rgb8())
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
            limit: format!("{} pixels per side", limits.max_dimension),
        });
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(PreprocessError::TooLarge {
            width,
            height,
            limit: format!("{} pixels", limits.max_pixels),
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The synthetic image the expected values below were computed from with
    /// Pillow 13.0.0: `v(x, y, c) = (x*37 + y*91 + c*53 + x*y*11) % 256`.
    fn pattern(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            image::Rgb(std::array::from_fn(|c| {
                ((x * 37 + y * 91 + c as u32 * 53 + x * y * 11) % 256) as u8
            }))
        })
    }

    #[test]
    fn placeholder() {
        let _ = pattern(2, 2);
    }
}
