//! Bytes to RGB8 as `transformers.image_utils.load_image` gets them: format
//! detection, limits checked before any pixel buffer exists, JPEG through
//! our libjpeg-compatible decoder, the rest through the `image` crate.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};

use super::convert::rgb8_like_pil;
use super::error::{PreprocessError, decode_error};
use super::jpeg;
use super::limits::{DecodeLimits, check_dimensions};
use super::orientation::{orient, orientation_like_pil};

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
    Ok(orient(rgb, orientation))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::limits::{MAX_IMAGE_DIMENSION_ENV, MAX_IMAGE_PIXELS_ENV};
    use crate::preprocess::test_images::{encode_jpeg, encode_png, pattern};
    use image::codecs::gif::GifEncoder;
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
}
