//! libjpeg's accurate integer inverse DCT (`jidctint.c`) with its range limit.

use super::frame::Component;

pub(super) fn inverse_transform_all(component: &mut Component) {
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

pub(super) fn inverse_transform(
    coefs: &[i16; 64],
    quant: &[u16; 64],
    out: &mut [u8],
    stride: usize,
) {
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
