//! Decoded pixels to RGB8 the way PIL's `convert("RGB")` treats the mode PIL
//! would have opened: grey replicated, alpha dropped, palettes expanded,
//! 16-bit samples cut like PIL's raw modes.

use image::{DynamicImage, RgbImage};

/// Converts to RGB8 the way PIL's `convert("RGB")` treats the mode PIL would have opened.
pub(super) fn rgb8_like_pil(image: DynamicImage) -> RgbImage {
    fn from_samples<const N: usize>(
        image: &image::ImageBuffer<impl image::Pixel<Subpixel = u16>, Vec<u16>>,
        to_rgb: impl Fn(&[u16]) -> [u8; 3],
    ) -> RgbImage {
        let mut out = RgbImage::new(image.width(), image.height());
        for (dst, src) in out.chunks_exact_mut(3).zip(image.as_raw().chunks_exact(N)) {
            dst.copy_from_slice(&to_rgb(src));
        }
        out
    }
    let high = |v: u16| v.to_be_bytes()[0];
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        // PIL opens 16-bit grey as "I;16" and clips it into 0..=255.
        DynamicImage::ImageLuma16(img) => from_samples::<1>(&img, |s| {
            let v = u8::try_from(s[0]).unwrap_or(u8::MAX);
            [v; 3]
        }),
        // PIL unpacks these with ";16B" raw modes, i.e. keeps the high byte.
        DynamicImage::ImageLumaA16(img) => from_samples::<2>(&img, |s| [high(s[0]); 3]),
        DynamicImage::ImageRgb16(img) => {
            from_samples::<3>(&img, |s| [high(s[0]), high(s[1]), high(s[2])])
        }
        DynamicImage::ImageRgba16(img) => {
            from_samples::<4>(&img, |s| [high(s[0]), high(s[1]), high(s[2])])
        }
        // Luma8 replicates, LumaA8/Rgba8 drop alpha: the same as PIL.
        other => other.into_rgb8(),
    }
}

#[cfg(test)]
mod tests {
    use crate::preprocess::decode::decode_rgb;
    use crate::preprocess::limits::DecodeLimits;
    use crate::preprocess::test_images::encode_png;
    use image::ExtendedColorType;
    use image::codecs::gif::GifEncoder;

    #[test]
    fn grayscale_png_is_replicated() {
        let png = encode_png(3, 1, ExtendedColorType::L8, &[0, 128, 255]);
        let rgb = decode_rgb(&png, &DecodeLimits::default()).unwrap();
        assert_eq!(rgb.as_raw(), &[0, 0, 0, 128, 128, 128, 255, 255, 255]);
        let png = encode_png(2, 1, ExtendedColorType::La8, &[10, 0, 200, 255]);
        let rgb = decode_rgb(&png, &DecodeLimits::default()).unwrap();
        assert_eq!(rgb.as_raw(), &[10, 10, 10, 200, 200, 200]);
    }

    #[test]
    fn rgba_png_drops_alpha_without_compositing() {
        let png = encode_png(
            2,
            1,
            ExtendedColorType::Rgba8,
            &[10, 20, 30, 0, 40, 50, 60, 128],
        );
        let rgb = decode_rgb(&png, &DecodeLimits::default()).unwrap();
        assert_eq!(rgb.as_raw(), &[10, 20, 30, 40, 50, 60]);
    }

    #[test]
    fn sixteen_bit_png_follows_pil() {
        // PIL: "I;16" grey clips to 255; 16-bit RGB(A) keeps the high byte.
        // The encoder takes native-endian samples.
        let samples: Vec<u8> = [0u16, 1, 255, 256, 65535]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let png = encode_png(5, 1, ExtendedColorType::L16, &samples);
        let rgb = decode_rgb(&png, &DecodeLimits::default()).unwrap();
        let grey: Vec<u8> = rgb.as_raw().chunks(3).map(|p| p[0]).collect();
        assert_eq!(grey, [0, 1, 255, 255, 255]);

        let samples: Vec<u8> = [0x1234u16, 0xABCD, 0x00FF]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let png = encode_png(1, 1, ExtendedColorType::Rgb16, &samples);
        let rgb = decode_rgb(&png, &DecodeLimits::default()).unwrap();
        assert_eq!(rgb.as_raw(), &[0x12, 0xAB, 0x00]);
    }

    #[test]
    fn gif_first_frame_expands_palette() {
        let frame = image::RgbaImage::from_fn(3, 2, |x, y| {
            image::Rgba([x as u8 * 100, y as u8 * 50, 7, 255])
        });
        let mut gif = Vec::new();
        GifEncoder::new(&mut gif)
            .encode(frame.as_raw(), 3, 2, ExtendedColorType::Rgba8)
            .unwrap();
        let rgb = decode_rgb(&gif, &DecodeLimits::default()).unwrap();
        assert_eq!(rgb.dimensions(), (3, 2));
        assert_eq!(rgb.get_pixel(2, 1).0, [200, 50, 7]);
    }
}
