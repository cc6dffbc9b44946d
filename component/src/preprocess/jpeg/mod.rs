//! JPEG decoding that reproduces libjpeg-turbo, the decoder behind PIL.
//!
//! zune-jpeg (the `image` crate's backend) rounds its IDCT, chroma upsampling
//! and colour conversion differently, putting samples up to 4 levels off PIL
//! on 4:2:0 files. This decoder follows libjpeg's default decompression
//! instead: the accurate integer IDCT (`jidctint.c`: 13-bit constants, 2 extra
//! bits in the first pass, range limiting through a 10-bit mask), "fancy"
//! triangular upsampling for 2:1 chroma (`jdsample.c`, with its alternating
//! rounding biases and edge replication) and the 16-bit fixed-point YCbCr
//! tables of `jdcolor.c`. It handles 8-bit Huffman-coded sequential and
//! progressive frames with one (grey), three (YCbCr, RGB) or four (CMYK,
//! YCCK) components; anything else is left to the `image` crate.
//!
//! [`decode`] walks the marker segments; the stages live in:
//! - `markers`: quantization tables, frame and scan headers;
//! - `huffman`: Huffman tables and the entropy-coded bit reader;
//! - `frame`: the frame's components, blocks and zigzag order;
//! - `scan`: one scan's MCUs, baseline blocks and progressive DC;
//! - `progressive`: progressive AC first passes and refinements;
//! - `idct`: the accurate integer inverse DCT;
//! - `upsample`: chroma upsampling;
//! - `color`: grey, RGB, YCbCr and CMYK/YCCK rows to RGB;
//! - `error`: [`Failure`], unsupported versus corrupt.

mod color;
mod error;
mod frame;
mod huffman;
mod idct;
mod markers;
mod progressive;
mod scan;
mod upsample;

use image::RgbImage;

use self::color::{Color, to_rgb};
pub(super) use self::error::Failure;
use self::error::Result;
use self::frame::Frame;
use self::huffman::{Bits, Huffman, read_huffman_tables};
use self::idct::inverse_transform_all;
use self::markers::{read_frame, read_quant_tables, read_scan, u16_at};
use self::scan::decode_scan;

/// Progressive files use about ten scans; each scan walks every block,
/// so a file with thousands of empty scans is only a way to burn CPU.
const MAX_SCANS: usize = 256;

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
