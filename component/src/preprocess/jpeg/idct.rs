//! libjpeg's accurate integer inverse DCT (`jidctint.c`) with its range limit.
//!
//! Each pass transforms eight columns (then eight rows) at once, as
//! [`Lanes`], which the compiler turns into SIMD. libjpeg computes in 64-bit
//! `JLONG`s; a block whose values stay within [`I32_LIMIT`] gives the same
//! integers in 32 bits, twice as many per SIMD register. Others (only
//! corrupt or contrived files reach the limit) take the 64-bit path.

use std::ops::{Add, Mul, Neg, Shl, Shr, Sub};

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
const FIX_0_298631336: i16 = 2446;
const FIX_0_390180644: i16 = 3196;
const FIX_0_541196100: i16 = 4433;
const FIX_0_765366865: i16 = 6270;
const FIX_0_899976223: i16 = 7373;
const FIX_1_175875602: i16 = 9633;
const FIX_1_501321110: i16 = 12299;
const FIX_1_847759065: i16 = 15137;
const FIX_1_961570560: i16 = 16069;
const FIX_2_053119869: i16 = 16819;
const FIX_2_562915447: i16 = 20995;
const FIX_3_072711026: i16 = 25172;

/// The largest input magnitude for which a pass cannot overflow `i32`: no
/// intermediate of `idct_1d` exceeds 61214 times its largest input
/// (the sum of its coefficients' magnitudes), and
/// 61214 * 35000 + 2^17 (the widest descale's rounding) < 2^31.
const I32_LIMIT: i32 = 35_000;

/// Eight values, one per column or row, each step applied to all of them.
#[derive(Clone, Copy)]
struct Lanes<T>([T; 8]);

macro_rules! lanes_ops {
    ($t:ty) => {
        impl Add for Lanes<$t> {
            type Output = Self;
            fn add(self, o: Self) -> Self {
                Lanes(std::array::from_fn(|i| self.0[i] + o.0[i]))
            }
        }
        impl Sub for Lanes<$t> {
            type Output = Self;
            fn sub(self, o: Self) -> Self {
                Lanes(std::array::from_fn(|i| self.0[i] - o.0[i]))
            }
        }
        impl Neg for Lanes<$t> {
            type Output = Self;
            fn neg(self) -> Self {
                Lanes(self.0.map(|x| -x))
            }
        }
        impl Mul<i16> for Lanes<$t> {
            type Output = Self;
            fn mul(self, k: i16) -> Self {
                Lanes(self.0.map(|x| x * <$t>::from(k)))
            }
        }
        impl Shl<u32> for Lanes<$t> {
            type Output = Self;
            fn shl(self, n: u32) -> Self {
                Lanes(self.0.map(|x| x << n))
            }
        }
        impl Shr<u32> for Lanes<$t> {
            type Output = Self;
            /// libjpeg's `DESCALE`: a rounded arithmetic shift.
            fn shr(self, n: u32) -> Self {
                Lanes(self.0.map(|x| (x + (1 << (n - 1))) >> n))
            }
        }
    };
}
lanes_ops!(i32);
lanes_ops!(i64);

trait Lane:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Neg<Output = Self>
    + Mul<i16, Output = Self>
    + Shl<u32, Output = Self>
    + Shr<u32, Output = Self>
{
}
impl<T> Lane for T where
    T: Copy
        + Add<Output = T>
        + Sub<Output = T>
        + Neg<Output = T>
        + Mul<i16, Output = T>
        + Shl<u32, Output = T>
        + Shr<u32, Output = T>
{
}

/// One 1-D pass of libjpeg's `jpeg_idct_islow` over eight inputs; returns
/// the outputs before descaling.
fn idct_1d<L: Lane>(v: [L; 8]) -> [L; 8] {
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

/// libjpeg's post-IDCT range limit, `range_limit[x & 1023]` from
/// `IDCT_range_limit`: the 10-bit mask keeps wild (corrupt) values from
/// wrapping differently than in PIL. Shifted by the table's +128 centre
/// and written as compares rather than a lookup, so that whole rows
/// vectorise; the test checks it against the table.
fn range_limit(x: i32) -> u8 {
    let u = x.wrapping_add(128) & 1023;
    if u < 256 {
        u as u8
    } else if u < 640 {
        255
    } else {
        0
    }
}

/// The column pass: `rows[r]` holds row `r` of the dequantized block; the
/// result's `[c]` holds column `c` of the workspace (transposed, as the row
/// pass reads it). libjpeg's shortcut for all-zero AC terms gives the same
/// values, so every column takes the full computation.
fn columns<T: Copy>(rows: [Lanes<T>; 8]) -> [Lanes<T>; 8]
where
    Lanes<T>: Lane,
{
    let out = idct_1d(rows).map(|r| r >> (CONST_BITS - PASS1_BITS));
    transpose(out)
}

fn transpose<T: Copy>(m: [Lanes<T>; 8]) -> [Lanes<T>; 8] {
    std::array::from_fn(|c| Lanes(std::array::from_fn(|r| m[r].0[c])))
}

/// The row pass over a transposed workspace; `[i].0[r]` of the result is
/// output sample `i` of row `r`, descaled.
fn rows<T: Copy>(workspace: [Lanes<T>; 8]) -> [Lanes<T>; 8]
where
    Lanes<T>: Lane,
{
    idct_1d(workspace).map(|r| r >> (CONST_BITS + PASS1_BITS + 3))
}

/// Range-limits the row pass's output into `out`, a row at a time: the
/// samples are transposed first so each row is one lane array. (An 8x8
/// byte transpose of the limited columns in three rounds of word swaps
/// measured no faster in wasm.)
fn write(samples: [Lanes<i32>; 8], out: &mut [u8], stride: usize) {
    for (row, dst) in transpose(samples).iter().zip(out.chunks_mut(stride)) {
        dst[..8].copy_from_slice(&row.0.map(range_limit));
    }
}

/// The 64-bit path's samples for [`write`]: the range limit reads only the
/// low 10 bits, which truncation keeps.
fn low_bits(samples: [Lanes<i64>; 8]) -> [Lanes<i32>; 8] {
    samples.map(|l| Lanes(l.0.map(|x| x as i32)))
}

pub(super) fn inverse_transform(
    coefs: &[i16; 64],
    quant: &[u16; 64],
    out: &mut [u8],
    stride: usize,
) {
    if coefs[1..].iter().all(|&c| c == 0) {
        // A flat block, the commonest kind: the full computation gives
        // descale(dc << PASS1_BITS, PASS1_BITS + 3) everywhere.
        let dc = i64::from(coefs[0]) * i64::from(quant[0]);
        let value = range_limit((Lanes([dc << PASS1_BITS; 8]) >> (PASS1_BITS + 3)).0[0] as i32);
        for dst in out.chunks_mut(stride).take(8) {
            dst[..8].fill(value);
        }
        return;
    }
    // i16 * u16 always fits in i32.
    let dequantized: [i32; 64] = std::array::from_fn(|i| i32::from(coefs[i]) * i32::from(quant[i]));
    let fits = |m: &[i32]| m.iter().all(|x| (-I32_LIMIT..=I32_LIMIT).contains(x));
    if fits(&dequantized) {
        let input = std::array::from_fn(|r| Lanes(std::array::from_fn(|c| dequantized[r * 8 + c])));
        let workspace = columns::<i32>(input);
        if workspace.iter().all(|l| fits(&l.0)) {
            return write(rows(workspace), out, stride);
        }
    }
    let input =
        std::array::from_fn(|r| Lanes(std::array::from_fn(|c| i64::from(dequantized[r * 8 + c]))));
    write(low_bits(rows(columns::<i64>(input))), out, stride);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 64-bit path alone, libjpeg's `JLONG` arithmetic: what the 32-bit
    /// path must reproduce.
    fn reference(coefs: &[i16; 64], quant: &[u16; 64]) -> [u8; 64] {
        let input = std::array::from_fn(|r| {
            Lanes(std::array::from_fn(|c| {
                i64::from(coefs[r * 8 + c]) * i64::from(quant[r * 8 + c])
            }))
        });
        let mut out = [0u8; 64];
        write(low_bits(rows(columns::<i64>(input))), &mut out, 8);
        out
    }

    #[test]
    fn the_32_bit_path_gives_libjpegs_64_bit_values() {
        // A xorshift: coefficient blocks from small to far past I32_LIMIT.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut took_fallback = 0;
        for case in 0..20_000 {
            let magnitude = 1i32 << (case % 16);
            let coefs: [i16; 64] = std::array::from_fn(|_| {
                let v = (next() % (2 * magnitude as u64 + 1)) as i32 - magnitude;
                v.clamp(i16::MIN.into(), i16::MAX.into()) as i16
            });
            let quant: [u16; 64] = std::array::from_fn(|_| 1 + (next() % 255) as u16);
            let mut out = [0u8; 64];
            inverse_transform(&coefs, &quant, &mut out, 8);
            assert_eq!(out, reference(&coefs, &quant), "case {case}: {coefs:?}");
            let peak = (0..64)
                .map(|i| (i32::from(coefs[i]) * i32::from(quant[i])).abs())
                .max();
            took_fallback += usize::from(peak > Some(I32_LIMIT));
        }
        assert!(
            took_fallback > 1000,
            "the 64-bit path ran {took_fallback} times"
        );
    }

    #[test]
    fn write_puts_sample_i_of_row_r_at_row_r_column_i() {
        let samples: [Lanes<i32>; 8] =
            std::array::from_fn(|i| Lanes(std::array::from_fn(|r| (r * 8 + i) as i32 - 128)));
        let mut out = [0u8; 10 * 8];
        write(samples, &mut out, 10);
        for r in 0..8 {
            let expected: Vec<u8> = (0..8).map(|i| (r * 8 + i) as u8).collect();
            assert_eq!(out[r * 10..r * 10 + 8], expected[..], "row {r}");
            assert_eq!(out[r * 10 + 8..r * 10 + 10], [0, 0], "row {r}'s padding");
        }
    }

    #[test]
    fn the_range_limit_is_libjpegs_table() {
        // `prepare_range_limit_table`, indexed from its centre as the IDCT
        // indexes it: 0..=255 as they are, then 384 of 255, 384 zeros, and
        // 0..=127 again for the wrapped negative values.
        let table: Vec<u8> = (0..=255)
            .chain(std::iter::repeat_n(255, 384))
            .chain(std::iter::repeat_n(0, 384))
            .chain(0..=127)
            .collect();
        for x in -5000..5000 {
            let expected = table[128 + (x & 1023) as usize];
            assert_eq!(range_limit(x), expected, "x = {x}");
        }
        for x in [i32::MIN, i32::MAX, i32::MIN + 1, i32::MAX - 127] {
            assert_eq!(range_limit(x), table[128 + (x & 1023) as usize], "x = {x}");
        }
    }

    #[test]
    fn a_flat_block_is_its_dc_everywhere() {
        let mut coefs = [0i16; 64];
        coefs[0] = -40;
        let quant = [16u16; 64];
        let mut out = [0u8; 64];
        inverse_transform(&coefs, &quant, &mut out, 8);
        // -640 / 8 + 128.
        assert_eq!(out, [48; 64]);
        assert_eq!(out, reference(&coefs, &quant));
    }
}
