//! Colour conversion of upsampled rows to RGB: grey, RGB, YCbCr through
//! `jdcolor.c`'s fixed-point tables, and Adobe CMYK/YCCK as PIL converts it.

use image::RgbImage;

use super::frame::Frame;
use super::upsample::upsample_row;

#[derive(Clone, Copy)]
pub(super) enum Color {
    Grey,
    YCbCr,
    Rgb,
    /// Adobe CMYK, or YCCK when its APP14 transform says so.
    Cmyk {
        ycck: bool,
    },
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
            cr_r: std::array::from_fn(|i| ((fix(1.40200) * centred(i) + ONE_HALF) >> 16) as i32),
            cb_b: std::array::from_fn(|i| ((fix(1.77200) * centred(i) + ONE_HALF) >> 16) as i32),
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

/// `jdcolor.c`'s fixed-point factors, as [`YccTables`] rounds them.
const fn fix(x: f64) -> i32 {
    (x * 65536.0 + 0.5) as i32
}
const CR_R: i32 = fix(1.40200);
const CB_B: i32 = fix(1.77200);
const CR_G: i32 = fix(0.71414);
const CB_G: i32 = fix(0.34414);

/// YCbCr -> RGB for one row, the tables' exact values computed in 32-bit
/// arithmetic (no term exceeds 2^24), which the compiler vectorises where
/// the tables' lookups could not be. Sixteen pixels at a time, planar, then
/// interleaved.
fn ycc_row(luma: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
    const HALF: i32 = 1 << 15;
    const N: usize = 16;
    let mut planes = [[0u8; N]; 3];
    for (((l, cb), cr), out) in luma
        .chunks(N)
        .zip(cb.chunks(N))
        .zip(cr.chunks(N))
        .zip(out.chunks_mut(3 * N))
    {
        for i in 0..l.len() {
            let y = i32::from(l[i]);
            let (b, r) = (i32::from(cb[i]) - 128, i32::from(cr[i]) - 128);
            planes[0][i] = clamp(y + ((CR_R * r + HALF) >> 16));
            planes[1][i] = clamp(y + ((-CB_G * b + HALF - CR_G * r) >> 16));
            planes[2][i] = clamp(y + ((CB_B * b + HALF) >> 16));
        }
        for (i, px) in out.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&[planes[0][i], planes[1][i], planes[2][i]]);
        }
    }
}

fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

pub(super) fn to_rgb(frame: &Frame, color: Color) -> RgbImage {
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
                ycc_row(&l[..width], &cb[..width], &cr[..width], out_row)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vectorised_row_gives_the_tables_values() {
        let tables = YccTables::new();
        for luma in [0u8, 1, 17, 128, 200, 254, 255] {
            // Every (cb, cr) pair, one row of 256 pixels per cb.
            for cb in 0..=255u8 {
                let cr: Vec<u8> = (0..=255).collect();
                let mut out = vec![0u8; 256 * 3];
                ycc_row(&[luma; 256], &[cb; 256], &cr, &mut out);
                for (px, &cr) in out.chunks_exact(3).zip(&cr) {
                    assert_eq!(px, tables.rgb(luma, cb, cr), "y {luma} cb {cb} cr {cr}");
                }
            }
        }
    }
}
