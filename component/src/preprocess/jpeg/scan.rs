//! One scan's entropy-coded data: the MCU walk with restart intervals,
//! baseline blocks, and the DC scans of progressive frames.

use super::error::{Failure, Result};
use super::frame::{Frame, NATURAL_ORDER, Scan};
use super::huffman::{Bits, Huffman};
use super::idct::inverse_transform;
use super::progressive::{decode_ac_first, decode_ac_refine};

fn table(tables: &[Option<Huffman>; 4], index: usize) -> Result<&Huffman> {
    tables[index].as_ref().ok_or(Failure::Corrupt(
        "JPEG scan uses an undefined Huffman table",
    ))
}

pub(super) fn decode_scan(
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
                    let coefs: &mut [i16; 64] = (&mut component.coefs[index * 64..index * 64 + 64])
                        .try_into()
                        .map_err(|_| Failure::Corrupt("JPEG block out of range"))?;
                    if scan.ss == 0 {
                        if scan.ah == 0 {
                            let dc = table(dc_tables, component.dc_table)?;
                            let size = u32::from(bits.decode(dc));
                            component.dc_pred = component.dc_pred.wrapping_add(bits.signed(size));
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
        if let Some(coef) = bits.fast_ac(ac) {
            k += coef.run;
            block[NATURAL_ORDER[k]] = coef.value as i16;
            k += 1;
            continue;
        }
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
