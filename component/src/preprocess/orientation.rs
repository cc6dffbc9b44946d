//! The orientation `PIL.ImageOps.exif_transpose` applies: EXIF first, then
//! XMP `tiff:Orientation`.

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, RgbImage};

/// `rgb` turned as `orientation` says.
pub(super) fn orient(rgb: RgbImage, orientation: Orientation) -> RgbImage {
    if orientation == Orientation::NoTransforms {
        return rgb;
    }
    let mut oriented = DynamicImage::ImageRgb8(rgb);
    oriented.apply_orientation(orientation);
    oriented.into_rgb8()
}

/// The orientation `PIL.ImageOps.exif_transpose` would apply.
pub(super) fn orientation_like_pil(decoder: &mut impl ImageDecoder) -> Orientation {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::decode::decode_rgb;
    use crate::preprocess::limits::DecodeLimits;
    use image::codecs::png::PngEncoder;
    use image::{ExtendedColorType, ImageEncoder};

    fn exif_with_orientation(orientation: u16) -> Vec<u8> {
        // Little-endian TIFF header and one IFD entry: Orientation (0x0112), SHORT, 1 value.
        let mut exif = b"II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00".to_vec();
        exif.extend_from_slice(&orientation.to_le_bytes());
        exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        exif
    }

    #[test]
    fn exif_orientation_is_applied() {
        // 3x2 source; values are x + 10 * y in every channel.
        let source = RgbImage::from_fn(3, 2, |x, y| image::Rgb([(x + 10 * y) as u8; 3]));
        // PIL's exif_transpose results (first channel, row-major) for orientations 1..=8.
        let expected: [(u32, u32, [u8; 6]); 8] = [
            (3, 2, [0, 1, 2, 10, 11, 12]),
            (3, 2, [2, 1, 0, 12, 11, 10]),
            (3, 2, [12, 11, 10, 2, 1, 0]),
            (3, 2, [10, 11, 12, 0, 1, 2]),
            (2, 3, [0, 10, 1, 11, 2, 12]),
            (2, 3, [10, 0, 11, 1, 12, 2]),
            (2, 3, [12, 2, 11, 1, 10, 0]),
            (2, 3, [2, 12, 1, 11, 0, 10]),
        ];
        for (orientation, (width, height, values)) in (1..=8).zip(expected) {
            let mut png = Vec::new();
            let mut encoder = PngEncoder::new(&mut png);
            encoder
                .set_exif_metadata(exif_with_orientation(orientation))
                .unwrap();
            encoder
                .write_image(source.as_raw(), 3, 2, ExtendedColorType::Rgb8)
                .unwrap();
            let rgb = decode_rgb(&png, &DecodeLimits::default()).unwrap();
            let firsts: Vec<u8> = rgb.as_raw().chunks(3).map(|p| p[0]).collect();
            assert_eq!(
                (rgb.width(), rgb.height(), firsts.as_slice()),
                (width, height, &values[..]),
                "orientation {orientation}"
            );
        }
    }

    #[test]
    fn xmp_orientation_is_found_like_pil() {
        assert_eq!(
            xmp_orientation(b"<x tiff:Orientation=\"6\"/>"),
            Some(Orientation::Rotate90)
        );
        assert_eq!(
            xmp_orientation(b"<tiff:Orientation>3</tiff:Orientation>"),
            Some(Orientation::Rotate180)
        );
        assert_eq!(
            xmp_orientation(b"tiff:Orientation tiff:Orientation=\"8\""),
            Some(Orientation::Rotate270)
        );
        assert_eq!(xmp_orientation(b"tiff:Orientation=\"9\""), None);
        assert_eq!(xmp_orientation(b"tiff:Orientation="), None);
    }
}
