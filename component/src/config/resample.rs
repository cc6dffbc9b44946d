//! PIL's resampling filters, as `preprocessor_config.json`'s `resample` codes them.

use std::fmt;

use anyhow::Context;
use serde_json::Value;

/// PIL resampling filters, by their integer codes in `preprocessor_config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resample {
    Nearest,
    Lanczos,
    #[default]
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

impl Resample {
    /// PIL's integer code (`PIL.Image.Resampling`).
    pub fn pil_code(self) -> u8 {
        match self {
            Self::Nearest => 0,
            Self::Lanczos => 1,
            Self::Bilinear => 2,
            Self::Bicubic => 3,
            Self::Box => 4,
            Self::Hamming => 5,
        }
    }

    /// Maps PIL's integer code; `None` for codes PIL has but Vitrine lacks
    /// (6 and 7, Pillow 13's MKS filters) or that PIL does not know.
    pub fn from_pil_code(code: u64) -> Option<Self> {
        Some(match code {
            0 => Self::Nearest,
            1 => Self::Lanczos,
            2 => Self::Bilinear,
            3 => Self::Bicubic,
            4 => Self::Box,
            5 => Self::Hamming,
            _ => return None,
        })
    }

    pub(super) fn from_json(value: &Value) -> anyhow::Result<Self> {
        value
            .as_u64()
            .and_then(Self::from_pil_code)
            .with_context(|| {
                format!(
                    "resample {value} is not supported; use a PIL filter code 0-5 \
                     (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)"
                )
            })
    }
}

impl fmt::Display for Resample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Nearest => "nearest",
            Self::Lanczos => "lanczos",
            Self::Bilinear => "bilinear",
            Self::Bicubic => "bicubic",
            Self::Box => "box",
            Self::Hamming => "hamming",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resample_codes_round_trip() {
        for code in 0..6 {
            assert_eq!(
                u64::from(Resample::from_pil_code(code).unwrap().pil_code()),
                code
            );
        }
        assert!(Resample::from_json(&serde_json::json!(7)).is_err());
    }
}
