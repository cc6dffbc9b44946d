//! Images the unit tests encode and compare against.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};

/// The synthetic image the tests' expected values were computed from with
/// Pillow 13.0.0: `v(x, y, c) = (x*37 + y*91 + c*53 + x*y*11) % 256`.
pub(super) fn pattern(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        image::Rgb(std::array::from_fn(|c| {
            ((x * 37 + y * 91 + c as u32 * 53 + x * y * 11) % 256) as u8
        }))
    })
}

pub(super) fn encode_png(
    width: u32,
    height: u32,
    color: ExtendedColorType,
    samples: &[u8],
) -> Vec<u8> {
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(samples, width, height, color)
        .unwrap();
    png
}

pub(super) fn encode_jpeg(img: &RgbImage) -> Vec<u8> {
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, 90)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .unwrap();
    jpeg
}
