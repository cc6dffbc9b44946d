//! PIL's `Image.resize` for 8-bit RGB: its six filters, bit for bit.
//!
//! [`resize`] reproduces `ImagingResample` for 8-bit images: a separable
//! convolution (one pass per axis, in Pillow 13's order) whose kernel is widened by
//! the downscale factor (antialiasing), with weights normalised in f64,
//! quantised to 22 fractional bits and accumulated in i32 with rounding and
//! clipping to u8 after each pass. NEAREST follows PIL's affine nearest
//! sampling instead.

use std::f64::consts::PI;

use image::RgbImage;

use crate::config::Resample;

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

/// PIL's `ImagingResampleInner` for 8-bit RGB, as Pillow 13 orders it:
/// when the height shrinks by more than twice what the width does, the
/// vertical pass runs first (over every column); otherwise the horizontal
/// pass runs first, over only the source rows the vertical pass will read.
/// The intermediate image is rounded to u8, so the order shows in the result
/// (Pillow 12 and earlier always ran the horizontal pass first).
fn resample(src: &Pixels<'_>, out: &mut RgbImage, kernel: Kernel) {
    let out_w = out.width() as usize;
    let out_h = out.height() as usize;
    let need_horizontal = out_w != src.width;
    let need_vertical = out_h != src.height;
    let horizontal = AxisWeights::new(src.width, out_w, kernel);
    let vertical = AxisWeights::new(src.height, out_h, kernel);

    // Pillow 13's test, in its own signed arithmetic.
    let shrink_h = src.height as i64 - out_h as i64;
    let shrink_w = src.width as i64 - out_w as i64;
    let vertical_first = shrink_h > 0 && shrink_h > shrink_w * 2;

    if !need_horizontal {
        vertical_pass(src.data, src.width, &vertical, 0, out);
    } else if vertical_first {
        let mut temp = vec![0u8; out_h * src.width * CHANNELS];
        vertical_pass(src.data, src.width, &vertical, 0, &mut temp);
        horizontal_pass(&temp, src.width, &horizontal, out);
    } else if need_vertical {
        let first_row = vertical.start[0];
        let last_row = vertical.start[out_h - 1] + vertical.len[out_h - 1];
        let rows = &src.data[first_row * src.width * CHANNELS..last_row * src.width * CHANNELS];
        let mut temp = vec![0u8; (last_row - first_row) * out_w * CHANNELS];
        horizontal_pass(rows, src.width, &horizontal, &mut temp);
        vertical_pass(&temp, out_w, &vertical, first_row, out);
    } else {
        horizontal_pass(src.data, src.width, &horizontal, out);
    }
}

/// Horizontal pass of every row of `rows` (each `width` pixels) into `out`,
/// whose rows are as many, each `horizontal`'s output width.
fn horizontal_pass(rows: &[u8], width: usize, horizontal: &AxisWeights, out: &mut [u8]) {
    // A kernel size known at compile time unrolls the taps into straight
    // scalar code that Cranelift keeps in registers. Sizes are odd
    // (`AxisWeights::new`); those listed cover bilinear down to 1/10 of the
    // width and bicubic down to 1/5.
    macro_rules! dispatch {
        ($($k:literal)*) => {
            match horizontal.ksize {
                $($k => horizontal_rows::<$k>(rows, width, horizontal, out),)*
                _ => horizontal_rows::<0>(rows, width, horizontal, out),
            }
        };
    }
    dispatch!(1 3 5 7 9 11 13 15 17 19 21);
}

/// [`horizontal_pass`] for kernels of `K` weights (0: any size). Weights
/// past a tap's length are zero, so an output whose `K` source pixels all
/// lie in the row sums all `K` of them; only those at the right edge take
/// their exact length.
#[inline(always)]
fn horizontal_rows<const K: usize>(
    rows: &[u8],
    width: usize,
    horizontal: &AxisWeights,
    out: &mut [u8],
) {
    let row_in = width * CHANNELS;
    let row_out = horizontal.start.len() * CHANNELS;
    let ksize = horizontal.ksize;
    for (src_row, dst_row) in rows.chunks_exact(row_in).zip(out.chunks_exact_mut(row_out)) {
        for (x, dst) in dst_row.chunks_exact_mut(CHANNELS).enumerate() {
            let first = horizontal.start[x] * CHANNELS;
            let acc = match src_row.get(first..first + K * CHANNELS) {
                Some(taps) if K > 0 => tap_sums(&horizontal.weights[x * ksize..][..K], taps),
                _ => {
                    let (_, exact) = horizontal.taps(x);
                    tap_sums(exact, &src_row[first..][..exact.len() * CHANNELS])
                }
            };
            dst[0] = clip8(acc[0]);
            dst[1] = clip8(acc[1]);
            dst[2] = clip8(acc[2]);
        }
    }
}

/// The three channel sums of one output pixel, with PIL's rounding bias.
#[inline(always)]
fn tap_sums(weights: &[i32], taps: &[u8]) -> [i32; CHANNELS] {
    let (mut r, mut g, mut b) = (HALF, HALF, HALF);
    for (px, &w) in taps.chunks_exact(CHANNELS).zip(weights) {
        r += i32::from(px[0]) * w;
        g += i32::from(px[1]) * w;
        b += i32::from(px[2]) * w;
    }
    [r, g, b]
}

/// Vertical pass over `rows`, whose first row is source row `row_offset`.
/// Accumulates whole rows at a time; integer sums make the order irrelevant.
fn vertical_pass(
    rows: &[u8],
    width: usize,
    vertical: &AxisWeights,
    row_offset: usize,
    out: &mut [u8],
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
    use crate::preprocess::test_images::pattern;

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
    fn height_shrinking_most_runs_the_vertical_pass_first_as_pillow_13_does() {
        // 12 -> 3 rows against 5 -> 4 columns: Pillow 13 resamples rows first.
        // The horizontal-first order gives different values here.
        #[rustfmt::skip]
        let bilinear = [
            102, 139, 131, 125, 141, 131, 139, 122, 130, 117, 141, 125, 121, 144, 137, 135, 126,
            141, 146, 91, 134, 131, 134, 109, 139, 116, 153, 125, 139, 128, 135, 113, 112, 143,
            91, 126
        ];
        assert_resize((5, 12), (4, 3), Resample::Bilinear, &bilinear);
        // Columns upscale while rows shrink.
        #[rustfmt::skip]
        let bicubic = [
            77, 135, 118, 109, 124, 146, 136, 125, 160, 111, 166, 103, 140, 134, 123, 160, 103,
            155, 104, 146, 135, 120, 142, 121, 150, 126, 114, 109, 169, 129, 120, 161, 131, 127,
            148, 131, 110, 131, 127, 136, 97, 134, 156, 92, 130, 121, 164, 87, 95, 151, 128, 82,
            119, 177, 127, 106, 152, 136, 122, 146, 150, 128, 139, 159, 95, 138, 153, 71, 130,
            143, 68, 121, 137, 98, 115, 131, 125, 114, 127, 140, 115, 147, 113, 147, 141, 123,
            151, 127, 138, 140, 101, 151, 87, 112, 157, 90, 137, 141, 115, 156, 86, 132, 168,
            89, 153, 173, 108, 167, 163, 122, 103, 145, 134, 108, 124, 138, 117, 119, 107, 129,
            118, 147, 106, 132, 178, 99, 173, 118, 157, 143, 133, 149, 105, 164, 126
        ];
        assert_resize((6, 16), (9, 5), Resample::Bicubic, &bicubic);
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
}
