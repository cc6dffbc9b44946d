//! `size` and `crop_size` as transformers reads them, and its arithmetic for
//! the size an image is resized to.
//!
//! Python's float arithmetic is IEEE f64 and `int()` truncates, so each
//! formula is evaluated here in the same order, in f64, and truncated: the
//! long side of a shortest-edge resize is `int(shortest * long / short)`,
//! exactly as `get_resize_output_image_size` computes it.

use anyhow::{Context, bail};
use serde_json::Value;

/// Refuses sizes whose tensors could not be allocated sensibly.
pub const MAX_SIDE: u32 = 16_384;

/// An output size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSize {
    pub height: u32,
    pub width: u32,
}

impl Default for ImageSize {
    fn default() -> Self {
        Self {
            height: 224,
            width: 224,
        }
    }
}

/// A `size` dict after transformers' `get_size_dict`: one of its valid key sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeDict {
    HeightWidth(ImageSize),
    ShortestEdge(u32),
    ShortestLongest { shortest: u32, longest: u32 },
    LongestEdge(u32),
    MaxHeightWidth { max_height: u32, max_width: u32 },
    Pixels { min_pixels: u64, max_pixels: u64 },
}

impl SizeDict {
    /// Reads `value` (an int, `[h, w]` or a dict) as `get_size_dict` does:
    /// an int is a square when `default_to_square`, else a shortest edge.
    pub fn from_json(value: &Value, default_to_square: bool, key: &str) -> anyhow::Result<Self> {
        let side = |v: &Value, what: &str| -> anyhow::Result<u32> {
            let n = v
                .as_u64()
                .with_context(|| format!("{key}: {what} must be a positive integer, got {v}"))?;
            if n == 0 || n > u64::from(MAX_SIDE) {
                bail!("{key}: {what} {n} is out of range (1..={MAX_SIDE})");
            }
            Ok(n as u32)
        };
        match value {
            Value::Number(_) if default_to_square => {
                let s = side(value, "the side")?;
                Ok(Self::HeightWidth(ImageSize {
                    height: s,
                    width: s,
                }))
            }
            Value::Number(_) => Ok(Self::ShortestEdge(side(value, "the shortest edge")?)),
            Value::Array(pair) if pair.len() == 2 => Ok(Self::HeightWidth(ImageSize {
                height: side(&pair[0], "the height")?,
                width: side(&pair[1], "the width")?,
            })),
            Value::Object(map) => {
                let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
                keys.sort_unstable();
                let get = |k: &str| side(&map[k], k);
                Ok(match keys.as_slice() {
                    ["height", "width"] => Self::HeightWidth(ImageSize {
                        height: get("height")?,
                        width: get("width")?,
                    }),
                    ["shortest_edge"] => Self::ShortestEdge(get("shortest_edge")?),
                    ["longest_edge", "shortest_edge"] => Self::ShortestLongest {
                        shortest: get("shortest_edge")?,
                        longest: get("longest_edge")?,
                    },
                    ["longest_edge"] => Self::LongestEdge(get("longest_edge")?),
                    ["max_height", "max_width"] => Self::MaxHeightWidth {
                        max_height: get("max_height")?,
                        max_width: get("max_width")?,
                    },
                    ["max_pixels", "min_pixels"] => Self::Pixels {
                        min_pixels: map["min_pixels"].as_u64().unwrap_or(0),
                        max_pixels: map["max_pixels"].as_u64().unwrap_or(0),
                    },
                    _ => bail!(
                        "{key} must have one of the key sets {{height, width}}, {{shortest_edge}}, \
                         {{shortest_edge, longest_edge}}, {{longest_edge}}, {{max_height, max_width}}, \
                         {{min_pixels, max_pixels}}; got {keys:?}"
                    ),
                })
            }
            other => bail!("{key} must be an integer, [height, width] or a dict, got {other}"),
        }
    }

    /// The key set as the config spells it, for errors.
    pub fn describe(&self) -> String {
        match self {
            Self::HeightWidth(s) => format!("{{height: {}, width: {}}}", s.height, s.width),
            Self::ShortestEdge(s) => format!("{{shortest_edge: {s}}}"),
            Self::ShortestLongest { shortest, longest } => {
                format!("{{shortest_edge: {shortest}, longest_edge: {longest}}}")
            }
            Self::LongestEdge(l) => format!("{{longest_edge: {l}}}"),
            Self::MaxHeightWidth {
                max_height,
                max_width,
            } => format!("{{max_height: {max_height}, max_width: {max_width}}}"),
            Self::Pixels {
                min_pixels,
                max_pixels,
            } => format!("{{min_pixels: {min_pixels}, max_pixels: {max_pixels}}}"),
        }
    }
}

/// What an image is resized to: a fixed size, or one that keeps its aspect
/// ratio and so depends on the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// `(height, width)`, whatever the image.
    Exact(ImageSize),
    /// The short side becomes this (`get_resize_output_image_size` with
    /// `default_to_square=False`).
    ShortestEdge(u32),
    /// `get_size_with_aspect_ratio(image, shortest, longest)`.
    ShortestLongest { shortest: u32, longest: u32 },
}

impl Resize {
    /// The `(width, height)` an image of `width` x `height` is resized to.
    pub fn target(&self, width: u32, height: u32) -> (u32, u32) {
        match *self {
            Self::Exact(ImageSize { height, width }) => (width, height),
            Self::ShortestEdge(short) => shortest_edge_target(width, height, short),
            Self::ShortestLongest { shortest, longest } => {
                aspect_ratio_target(width, height, shortest, longest)
            }
        }
    }
}

/// `int(x)` of a positive f64, clamped into the side range.
fn trunc(x: f64) -> u32 {
    x.clamp(1.0, f64::from(MAX_SIDE)) as u32
}

/// transformers' `get_resize_output_image_size(image, size, default_to_square=False)`.
fn shortest_edge_target(width: u32, height: u32, size: u32) -> (u32, u32) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    // Python: int(requested_new_short * long / short); the product is an exact int.
    let new_long = trunc((u64::from(size) * u64::from(long)) as f64 / f64::from(short.max(1)));
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// transformers' `get_size_with_aspect_ratio((height, width), size, max_size)`.
fn aspect_ratio_target(width: u32, height: u32, size: u32, max_size: u32) -> (u32, u32) {
    let (h, w) = (f64::from(height.max(1)), f64::from(width.max(1)));
    let mut size = size;
    let mut raw_size = None;
    let (min_side, max_side) = (h.min(w), h.max(w));
    if max_side / min_side * f64::from(size) > f64::from(max_size) {
        let raw = f64::from(max_size) * min_side / max_side;
        raw_size = Some(raw);
        // Python's round() rounds half to even.
        size = trunc(raw.round_ties_even());
    }
    if (height <= width && height == size) || (width <= height && width == size) {
        return (width, height);
    }
    if width < height {
        let oh = match raw_size {
            Some(raw) => trunc(raw * h / w),
            None => trunc((u64::from(size) * u64::from(height)) as f64 / w),
        };
        (size, oh)
    } else {
        let ow = match raw_size {
            Some(raw) => trunc(raw * w / h),
            None => trunc((u64::from(size) * u64::from(width)) as f64 / h),
        };
        (ow, size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_parse_as_get_size_dict() {
        let hw = |h, w| {
            SizeDict::HeightWidth(ImageSize {
                height: h,
                width: w,
            })
        };
        assert_eq!(
            SizeDict::from_json(&json!(224), true, "size").unwrap(),
            hw(224, 224)
        );
        assert_eq!(
            SizeDict::from_json(&json!(224), false, "size").unwrap(),
            SizeDict::ShortestEdge(224)
        );
        assert_eq!(
            SizeDict::from_json(&json!([200, 100]), true, "size").unwrap(),
            hw(200, 100)
        );
        assert_eq!(
            SizeDict::from_json(&json!({"shortest_edge": 256}), true, "size").unwrap(),
            SizeDict::ShortestEdge(256)
        );
        for bad in [
            json!({"height": 3}),
            json!({"shortest_edge": 0}),
            json!("224"),
            json!([1]),
        ] {
            assert!(SizeDict::from_json(&bad, true, "size").is_err(), "{bad}");
        }
    }

    #[test]
    fn shortest_edge_truncates_the_long_side() {
        // 640x480 -> short side 256: long = int(256 * 640 / 480) = int(341.33) = 341.
        assert_eq!(Resize::ShortestEdge(256).target(640, 480), (341, 256));
        assert_eq!(Resize::ShortestEdge(256).target(480, 640), (256, 341));
        // 451x300 -> 288: int(288 * 451 / 300) = int(432.96) = 432.
        assert_eq!(Resize::ShortestEdge(288).target(451, 300), (432, 288));
        assert_eq!(Resize::ShortestEdge(224).target(100, 100), (224, 224));
    }

    #[test]
    fn aspect_ratio_caps_the_long_side() {
        // 640x480, shortest 800, longest 1000: 640/480*800 > 1000, raw = 750.
        let r = Resize::ShortestLongest {
            shortest: 800,
            longest: 1000,
        };
        assert_eq!(r.target(640, 480), (1000, 750));
        let r = Resize::ShortestLongest {
            shortest: 480,
            longest: 1000,
        };
        assert_eq!(r.target(640, 480), (640, 480));
    }
}
