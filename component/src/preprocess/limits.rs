//! How large an image may be: the decode limits, from the host's flags
//! through the environment, checked against header dimensions.

use crate::api::env_limit;

use super::error::PreprocessError;

/// Upper bounds on what [`decode_rgb`](super::decode_rgb) will allocate for, checked from the
/// image header. Like [`crate::api::RequestLimits`], set by the host's flags
/// through the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted `width * height`: `--max_image_pixels`, [`MAX_IMAGE_PIXELS_ENV`].
    pub max_pixels: u64,
    /// Largest accepted width or height: `--max_image_dimension`, [`MAX_IMAGE_DIMENSION_ENV`].
    pub max_dimension: u32,
}

pub const MAX_IMAGE_PIXELS_ENV: &str = "VITRINE_MAX_IMAGE_PIXELS";
pub const MAX_IMAGE_PIXELS_FLAG: &str = "--max_image_pixels";
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 40_000_000;
pub const MAX_IMAGE_DIMENSION_ENV: &str = "VITRINE_MAX_IMAGE_DIMENSION";
pub const MAX_IMAGE_DIMENSION_FLAG: &str = "--max_image_dimension";
pub const DEFAULT_MAX_IMAGE_DIMENSION: u32 = 16_384;

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: DEFAULT_MAX_IMAGE_PIXELS,
            max_dimension: DEFAULT_MAX_IMAGE_DIMENSION,
        }
    }
}

impl DecodeLimits {
    /// The limits in the process environment, defaults for those unset.
    pub fn from_env() -> DecodeLimits {
        DecodeLimits::from_vars(crate::variables::environment)
    }

    /// The limits `var` gives by variable name.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> DecodeLimits {
        let default = DecodeLimits::default();
        DecodeLimits {
            max_pixels: env_limit(&var, MAX_IMAGE_PIXELS_ENV, default.max_pixels, u64::MAX),
            max_dimension: env_limit(
                &var,
                MAX_IMAGE_DIMENSION_ENV,
                default.max_dimension,
                u32::MAX,
            ),
        }
    }
}

pub(super) fn check_dimensions(
    width: u32,
    height: u32,
    limits: &DecodeLimits,
) -> Result<(), PreprocessError> {
    if width == 0 || height == 0 {
        return Err(PreprocessError::Decode(format!(
            "image header declares an empty {width}x{height} image"
        )));
    }
    if width > limits.max_dimension || height > limits.max_dimension {
        return Err(PreprocessError::TooLarge {
            width,
            height,
            limit: format!(
                "{} pixels per side ({MAX_IMAGE_DIMENSION_FLAG}, {MAX_IMAGE_DIMENSION_ENV})",
                limits.max_dimension
            ),
        });
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(PreprocessError::TooLarge {
            width,
            height,
            limit: format!(
                "{} pixels ({MAX_IMAGE_PIXELS_FLAG}, {MAX_IMAGE_PIXELS_ENV})",
                limits.max_pixels
            ),
        });
    }
    Ok(())
}
