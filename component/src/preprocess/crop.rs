//! Center crop exactly as transformers' `center_crop`: the window starts at
//! `(side - crop) // 2` (Python's floor division), and where the image is
//! smaller than the crop it is zero-padded, `ceil((crop - side) / 2)` before,
//! which is the same offset.

use image::RgbImage;

use crate::config::ImageSize;

/// Which source pixel each output pixel reads: output `(y, x)` is source
/// `(y + top, x + left)`, or zero where that falls outside the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub top: i64,
    pub left: i64,
    pub height: u32,
    pub width: u32,
}

impl Window {
    /// The whole image.
    pub fn full(img: &RgbImage) -> Self {
        Self {
            top: 0,
            left: 0,
            height: img.height(),
            width: img.width(),
        }
    }

    /// transformers' center crop of `img` to `crop`.
    pub fn center(img: &RgbImage, crop: ImageSize) -> Self {
        let offset = |side: u32, crop: u32| (i64::from(side) - i64::from(crop)).div_euclid(2);
        Self {
            top: offset(img.height(), crop.height),
            left: offset(img.width(), crop.width),
            height: crop.height,
            width: crop.width,
        }
    }

    /// The output columns `[start, end)` that read inside a source `width` wide.
    pub fn columns_inside(&self, width: u32) -> (usize, usize) {
        let start = (-self.left).clamp(0, i64::from(self.width));
        let end = (i64::from(width) - self.left).clamp(start, i64::from(self.width));
        (start as usize, end as usize)
    }

    /// The source row output row `y` reads, if inside a source `height` tall.
    pub fn source_row(&self, y: u32, height: u32) -> Option<usize> {
        let row = i64::from(y) + self.top;
        (0..i64::from(height))
            .contains(&row)
            .then_some(row as usize)
    }
}

/// The cropped image itself, for a crop that another crop follows.
pub fn center_crop(img: &RgbImage, crop: ImageSize) -> RgbImage {
    let window = Window::center(img, crop);
    let mut out = RgbImage::new(crop.width, crop.height);
    let (start, end) = window.columns_inside(img.width());
    let stride = img.width() as usize * 3;
    for y in 0..crop.height {
        let Some(row) = window.source_row(y, img.height()) else {
            continue;
        };
        let src_x = (start as i64 + window.left) as usize;
        let src = &img.as_raw()[row * stride + src_x * 3..row * stride + (src_x + end - start) * 3];
        let dst_row = y as usize * crop.width as usize * 3;
        out.as_mut()[dst_row + start * 3..dst_row + end * 3].copy_from_slice(src);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]))
    }

    #[test]
    fn offsets_round_down_as_python_does() {
        // (7 - 4) // 2 = 1; (6 - 3) // 2 = 1.
        let w = Window::center(
            &numbered(7, 6),
            ImageSize {
                height: 3,
                width: 4,
            },
        );
        assert_eq!((w.top, w.left), (1, 1));
        let out = center_crop(
            &numbered(7, 6),
            ImageSize {
                height: 3,
                width: 4,
            },
        );
        assert_eq!(out.get_pixel(0, 0).0, [1, 1, 7]);
        assert_eq!(out.get_pixel(3, 2).0, [4, 3, 7]);
    }

    #[test]
    fn smaller_images_are_padded_with_zeros() {
        // 3 wide into 6: ceil(3 / 2) = 2 zero columns before, 1 after.
        let out = center_crop(
            &numbered(3, 2),
            ImageSize {
                height: 5,
                width: 6,
            },
        );
        let row: Vec<[u8; 3]> = (0..6).map(|x| out.get_pixel(x, 2).0).collect();
        assert_eq!(
            row,
            [[0; 3], [0; 3], [0, 0, 7], [1, 0, 7], [2, 0, 7], [0; 3]]
        );
        // 2 tall into 5: (2 - 5) // 2 = -2, so rows 2 and 3 hold the image.
        let col: Vec<u8> = (0..5).map(|y| out.get_pixel(2, y).0[2]).collect();
        assert_eq!(col, [0, 0, 7, 7, 0]);
    }
}
