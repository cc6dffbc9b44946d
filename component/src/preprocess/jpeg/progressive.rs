//! The AC scans of progressive frames: first passes and refinements, with
//! end-of-band runs (JPEG Annex G.1.2.2, libjpeg's `jdphuff.c`).

use super::frame::{NATURAL_ORDER, Scan};
use super::huffman::{Bits, Huffman};

pub(super) fn decode_ac_first(
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

pub(super) fn decode_ac_refine(
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
