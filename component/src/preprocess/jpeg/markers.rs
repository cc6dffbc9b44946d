//! The marker segments that describe the image: quantization tables (DQT),
//! the frame header (SOFn) and scan headers (SOS).

use super::error::{Failure, Result};
use super::frame::{Component, Frame, NATURAL_ORDER, Scan};

pub(super) fn u16_at(data: &[u8], pos: usize) -> Result<usize> {
    match data.get(pos..pos + 2) {
        Some(&[hi, lo]) => Ok(usize::from(u16::from_be_bytes([hi, lo]))),
        _ => Err(Failure::Corrupt("JPEG segment runs past the end")),
    }
}

pub(super) fn read_quant_tables(mut body: &[u8], quant: &mut [Option<[u16; 64]>; 4]) -> Result<()> {
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

pub(super) fn read_frame(body: &[u8], progressive: bool, size: (u32, u32)) -> Result<Frame> {
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

pub(super) fn read_scan(body: &[u8], frame: &mut Frame) -> Result<Scan> {
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
        let ac = scan.ss >= 1 && scan.ss <= scan.se && scan.se <= 63 && scan.components.len() == 1;
        (dc || ac) && scan.al <= 13 && scan.ah <= 13
    } else {
        true
    };
    if scan.components.is_empty() || !valid {
        return Err(Failure::Corrupt("bad JPEG scan parameters"));
    }
    Ok(scan)
}
