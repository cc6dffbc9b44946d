//! Why an image could not be turned into model input.

use std::fmt;

use image::ImageError;

/// Why an image could not be turned into model input.
#[derive(Debug)]
pub enum PreprocessError {
    /// Not a JPEG, PNG, WebP or GIF.
    UnsupportedFormat,
    /// The data is corrupt, truncated or otherwise unusable; the text says why.
    Decode(String),
    /// The header declares an image beyond [`DecodeLimits`].
    TooLarge {
        width: u32,
        height: u32,
        limit: String,
    },
}

impl fmt::Display for PreprocessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedFormat => {
                f.write_str("unsupported image format; send a JPEG, PNG, WebP or GIF image")
            }
            Self::Decode(reason) => f.write_str(reason),
            Self::TooLarge {
                width,
                height,
                limit,
            } => write!(f, "image is {width}x{height} pixels; the limit is {limit}"),
        }
    }
}

impl std::error::Error for PreprocessError {}

pub(super) fn decode_error(err: ImageError) -> PreprocessError {
    match err {
        ImageError::Unsupported(e) => {
            PreprocessError::Decode(format!("image uses an unsupported feature: {e}"))
        }
        ImageError::Limits(e) => {
            PreprocessError::Decode(format!("image exceeds the decoder's memory limits: {e}"))
        }
        ImageError::IoError(e) => {
            PreprocessError::Decode(format!("image data is truncated or unreadable: {e}"))
        }
        e => PreprocessError::Decode(format!("image data is corrupt: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_well() {
        assert_eq!(
            PreprocessError::UnsupportedFormat.to_string(),
            "unsupported image format; send a JPEG, PNG, WebP or GIF image"
        );
    }
}
