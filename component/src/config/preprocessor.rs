//! `preprocessor_config.json`, read exactly as transformers reads it:
//! [`PreprocessorConfig`] is the plan of one processor class (see
//! `processors`) with that file's keys over the class defaults.
//!
//! transformers' rules, followed here: a key that is absent or `null` takes
//! the class default; `size` may be an int (a square, or a shortest edge
//! where the class has `default_to_square = False`), `[h, w]` or a dict;
//! keys the class does not know are ignored; `do_convert_rgb` is moot
//! because images reach the processor as RGB (`load_image`, see
//! `preprocess`). What no class here can honour is refused, naming the key.

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use super::processors::{DefaultSize, Processor, ResizeRule};
use super::resample::Resample;
use super::size::{ImageSize, MAX_SIDE, Resize, SizeDict};

/// The preprocessing one model version runs, resolved from its config.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessorConfig {
    /// The transformers class whose PIL path this reproduces.
    pub processor: Processor,
    /// `None` when `do_resize` is false.
    pub resize: Option<Resize>,
    pub resample: Resample,
    /// Center crops, in order (ConvNeXt's own crop may be followed by `crop_size`'s).
    pub crops: Vec<ImageSize>,
    /// `rescale_factor` as the JSON's f64 (transformers multiplies in float64),
    /// `None` when `do_rescale` is false.
    pub rescale: Option<f64>,
    /// EfficientNet's `rescale_offset`: subtract 1 after rescaling.
    pub rescale_offset: bool,
    /// `(image_mean, image_std)` as float32, `None` when not normalising.
    pub normalize: Option<([f32; 3], [f32; 3])>,
    /// EfficientNet's `include_top`: divide by `image_std` once more.
    pub include_top: Option<[f32; 3]>,
    /// MobileViT's `do_flip_channel_order`: RGB to BGR, last.
    pub flip_channel_order: bool,
    /// The `[height, width]` of the tensor the model reads.
    pub input_size: ImageSize,
}

impl Default for PreprocessorConfig {
    /// `ViTImageProcessor`'s defaults (google/vit-base-patch16-224's preprocessor).
    fn default() -> Self {
        Self::resolve(Processor::Vit, &Map::new()).unwrap_or_else(|_| unreachable!())
    }
}

impl PreprocessorConfig {
    /// Parses `preprocessor_config.json`; a config naming no processor is read
    /// as `ViTImageProcessor`. Errors name the offending key.
    pub fn from_json(bytes: &[u8]) -> anyhow::Result<Self> {
        Self::from_json_for_model(bytes, None)
    }

    /// As [`from_json`](Self::from_json), with `config.json`'s `model_type`,
    /// which transformers consults when the file names no processor.
    pub fn from_json_for_model(bytes: &[u8], model_type: Option<&str>) -> anyhow::Result<Self> {
        let value: Value = serde_json::from_slice(bytes)?;
        let Value::Object(map) = value else {
            bail!("preprocessor_config.json must hold a JSON object");
        };
        let processor = pick_processor(&map, model_type)?;
        Self::resolve(processor, &map)
            .with_context(|| format!("as transformers' {} reads it", processor.class_name()))
    }

    fn resolve(processor: Processor, map: &Map<String, Value>) -> anyhow::Result<Self> {
        let d = processor.defaults();
        let keys = Keys(map);
        let default_to_square = keys.bool("default_to_square", d.default_to_square)?;
        let size = keys.opt("size", Some(from_default(d.size)), |v| {
            SizeDict::from_json(v, default_to_square, "size")
        })?;
        // get_size_dict's default: an int crop_size is a square.
        let crop_size = keys.opt("crop_size", d.crop_size.map(from_default), |v| {
            SizeDict::from_json(v, true, "crop_size")
        })?;
        let resample = keys.opt("resample", Some(d.resample), Resample::from_json)?;
        let do_resize = keys.bool("do_resize", true)?;
        let do_center_crop = keys.bool("do_center_crop", d.do_center_crop)?;
        let do_rescale = keys.bool("do_rescale", true)?;
        let do_normalize = keys.bool("do_normalize", d.do_normalize)?;
        let rescale_factor = keys.opt("rescale_factor", Some(1.0 / 255.0), |v| {
            number(v, "rescale_factor")
        })?;
        let mean = keys.opt("image_mean", Some(d.image_mean), |v| stats(v, "image_mean"))?;
        let std = keys.opt("image_std", Some(d.image_std), |v| stats(v, "image_std"))?;
        // Only ConvNeXt and PoolFormer know crop_pct; the rest ignore it.
        let crop_pct = match d.crop_pct {
            Some(_) => keys.opt("crop_pct", d.crop_pct, |v| number(v, "crop_pct"))?,
            None => None,
        };

        if keys.bool("do_pad", false)? && d.pads {
            bail!(
                "do_pad is true, which Vitrine does not support: {} would pad every image to \
                 pad_size after normalising; remove do_pad or set it to false",
                processor.class_name()
            );
        }

        let mut crops = Vec::new();
        let resize = if do_resize {
            let size = size.context("do_resize is true but size is null")?;
            Some(resize_for(d.resize_rule, size, crop_pct, &mut crops)?)
        } else {
            None
        };
        let resample = match (resize, resample) {
            (Some(_), None) => bail!("do_resize is true but resample is null"),
            (_, resample) => resample.unwrap_or_default(),
        };
        if do_center_crop && d.crops {
            match crop_size {
                Some(SizeDict::HeightWidth(c)) => crops.push(c),
                Some(other) => bail!(
                    "crop_size must give height and width, got {}",
                    other.describe()
                ),
                None => bail!("do_center_crop is true but crop_size is missing"),
            }
        }
        let input_size = match (crops.last(), resize, size) {
            (Some(crop), _, _) => *crop,
            (None, Some(Resize::Exact(s)), _) => s,
            (None, None, Some(SizeDict::HeightWidth(s))) => s,
            (None, _, Some(size)) => bail!(
                "size {} without a center crop gives every image its own size, but the model \
                 reads one fixed [3, height, width]; add do_center_crop with crop_size, or give \
                 size as {{height, width}}",
                size.describe()
            ),
            (None, _, None) => bail!("size is null and nothing crops: the input size is unknown"),
        };

        let rescale = match (do_rescale, rescale_factor) {
            (true, None) => bail!("do_rescale is true but rescale_factor is null"),
            (true, Some(f)) if !f.is_finite() => bail!("rescale_factor {f} is not a finite number"),
            (true, f) => f,
            (false, _) => None,
        };
        let normalize = if do_normalize && d.normalizes {
            match (mean, std) {
                (Some(mean), Some(std)) => {
                    Some((f32s(mean, "image_mean")?, stds(std, "image_std")?))
                }
                _ => bail!("do_normalize is true but image_mean or image_std is null"),
            }
        } else {
            None
        };
        let include_top = match d.include_top {
            Some(default) if keys.bool("include_top", default)? => Some(stds(
                std.context("include_top is true but image_std is null")?,
                "image_std",
            )?),
            _ => None,
        };
        let rescale_offset = match d.rescale_offset {
            Some(default) => keys.bool("rescale_offset", default)?,
            None => false,
        };
        let flip_channel_order = match d.flip_channel_order {
            Some(default) => keys.bool("do_flip_channel_order", default)?,
            None => false,
        };
        Ok(Self {
            processor,
            resize,
            resample,
            crops,
            rescale,
            rescale_offset: rescale.is_some() && rescale_offset,
            normalize,
            include_top,
            flip_channel_order,
            input_size,
        })
    }

    /// One line for logs and metadata: the class and its steps.
    pub fn describe(&self) -> String {
        let mut steps = vec![self.processor.class_name().to_string()];
        match self.resize {
            Some(Resize::Exact(s)) => steps.push(format!("resize {}x{}", s.width, s.height)),
            Some(Resize::ShortestEdge(e)) => steps.push(format!("resize short side to {e}")),
            Some(Resize::ShortestLongest { shortest, longest }) => steps.push(format!(
                "resize short side to {shortest}, long side at most {longest}"
            )),
            None => {}
        }
        if self.resize.is_some() {
            steps.push(self.resample.to_string());
        }
        for c in &self.crops {
            steps.push(format!("center crop {}x{}", c.width, c.height));
        }
        if self.flip_channel_order {
            steps.push("RGB to BGR".into());
        }
        steps.join(", ")
    }
}

/// `image_processor_type`, else the legacy `feature_extractor_type`, else
/// `config.json`'s `model_type`, else ViT (Vitrine's own demo models).
fn pick_processor(map: &Map<String, Value>, model_type: Option<&str>) -> anyhow::Result<Processor> {
    for key in ["image_processor_type", "feature_extractor_type"] {
        match map.get(key) {
            None | Some(Value::Null) => continue,
            Some(Value::String(name)) => {
                return Processor::from_class_name(name).with_context(|| {
                    let known: Vec<&str> = super::processors::PROCESSORS
                        .iter()
                        .map(|p| p.class_name())
                        .collect();
                    format!(
                        "{key} {name:?} is not an image processor Vitrine reproduces; \
                         it reproduces {}",
                        known.join(", ")
                    )
                });
            }
            Some(other) => bail!("{key} must be a class name, got {other}"),
        }
    }
    Ok(model_type
        .and_then(Processor::for_model_type)
        .unwrap_or(Processor::Vit))
}

fn from_default(size: DefaultSize) -> SizeDict {
    match size {
        DefaultSize::HeightWidth(height, width) => {
            SizeDict::HeightWidth(ImageSize { height, width })
        }
        DefaultSize::ShortestEdge(s) => SizeDict::ShortestEdge(s),
    }
}

/// The resize a processor's `resize` method performs for `size`; pushes the
/// crop ConvNeXt does inside its resize.
fn resize_for(
    rule: ResizeRule,
    size: SizeDict,
    crop_pct: Option<f64>,
    crops: &mut Vec<ImageSize>,
) -> anyhow::Result<Resize> {
    let checked = |pct: f64| -> anyhow::Result<f64> {
        if !(pct.is_finite() && pct > 0.0) {
            bail!("crop_pct {pct} must be a positive number");
        }
        Ok(pct)
    };
    let side = |x: f64, what: &str| -> anyhow::Result<u32> {
        // Python's int() truncates.
        let s = x.trunc();
        if !(1.0..=f64::from(MAX_SIDE)).contains(&s) {
            bail!("{what} {s} is out of range (1..={MAX_SIDE})");
        }
        Ok(s as u32)
    };
    let shortest = match size {
        SizeDict::ShortestEdge(s) | SizeDict::ShortestLongest { shortest: s, .. } => Some(s),
        _ => None,
    };
    Ok(match rule {
        ResizeRule::Backend => match size {
            SizeDict::HeightWidth(s) => Resize::Exact(s),
            SizeDict::ShortestEdge(s) => Resize::ShortestEdge(s),
            SizeDict::ShortestLongest { shortest, longest } => {
                Resize::ShortestLongest { shortest, longest }
            }
            other => bail!(
                "size {} is not supported: Vitrine resizes to {{height, width}}, {{shortest_edge}} \
                 or {{shortest_edge, longest_edge}}",
                other.describe()
            ),
        },
        ResizeRule::ConvNext => {
            let Some(edge) = shortest else {
                bail!(
                    "ConvNextImageProcessor needs size {{shortest_edge: N}}, got {}",
                    size.describe()
                );
            };
            if edge < 384 {
                // Short side to shortest_edge / crop_pct, then a square crop.
                crops.push(ImageSize {
                    height: edge,
                    width: edge,
                });
                let pct = checked(crop_pct.context("crop_pct is null")?)?;
                Resize::ShortestEdge(side(f64::from(edge) / pct, "shortest_edge / crop_pct")?)
            } else {
                // Warped to a square, no crop, at 384 and above.
                Resize::Exact(ImageSize {
                    height: edge,
                    width: edge,
                })
            }
        }
        ResizeRule::Levit => match (shortest, size) {
            (Some(edge), _) => Resize::ShortestEdge(side(
                256.0 / 224.0 * f64::from(edge),
                "256 / 224 * shortest_edge",
            )?),
            (None, SizeDict::HeightWidth(s)) => Resize::Exact(s),
            (None, other) => bail!(
                "LevitImageProcessor needs size {{shortest_edge}} or {{height, width}}, got {}",
                other.describe()
            ),
        },
        // A null crop_pct makes PoolFormer resize as the backend does.
        ResizeRule::PoolFormer if crop_pct.is_none() => {
            return resize_for(ResizeRule::Backend, size, None, crops);
        }
        ResizeRule::PoolFormer => {
            let pct = checked(crop_pct.unwrap_or_default())?;
            match (shortest, size) {
                (Some(edge), _) => {
                    Resize::ShortestEdge(side(f64::from(edge) / pct, "size / crop_pct")?)
                }
                (None, SizeDict::HeightWidth(s)) if s.height == s.width => {
                    Resize::ShortestEdge(side(f64::from(s.height) / pct, "size / crop_pct")?)
                }
                (None, SizeDict::HeightWidth(s)) => Resize::Exact(ImageSize {
                    height: side(f64::from(s.height) / pct, "height / crop_pct")?,
                    width: side(f64::from(s.width) / pct, "width / crop_pct")?,
                }),
                (None, other) => bail!(
                    "PoolFormerImageProcessor needs size {{shortest_edge}} or {{height, width}}, got {}",
                    other.describe()
                ),
            }
        }
    })
}

/// The config's keys with transformers' meaning: an absent key takes the
/// class default, a `null` one is Python's `None` (false for flags).
struct Keys<'a>(&'a Map<String, Value>);

impl Keys<'_> {
    fn bool(&self, key: &str, default: bool) -> anyhow::Result<bool> {
        match self.0.get(key) {
            None => Ok(default),
            Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => bail!("{key} must be true or false, got {v}"),
        }
    }

    fn opt<T>(
        &self,
        key: &str,
        default: Option<T>,
        parse: impl FnOnce(&Value) -> anyhow::Result<T>,
    ) -> anyhow::Result<Option<T>> {
        match self.0.get(key) {
            None => Ok(default),
            Some(Value::Null) => Ok(None),
            Some(v) => parse(v).map(Some),
        }
    }
}

fn number(v: &Value, key: &str) -> anyhow::Result<f64> {
    v.as_f64()
        .with_context(|| format!("{key} must be a number, got {v}"))
}

/// `image_mean` / `image_std`: one value per RGB channel, or one for all.
fn stats(v: &Value, key: &str) -> anyhow::Result<[f64; 3]> {
    if let Some(x) = v.as_f64() {
        return Ok([x; 3]);
    }
    match v
        .as_array()
        .map(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
    {
        Some(Some(values)) if values.len() == 3 => Ok([values[0], values[1], values[2]]),
        _ => bail!("{key} must be 3 numbers (one per RGB channel) or a single number, got {v}"),
    }
}

/// numpy's `np.array(mean, dtype=float32)`.
fn f32s(values: [f64; 3], key: &str) -> anyhow::Result<[f32; 3]> {
    let out = values.map(|v| v as f32);
    if out.iter().any(|v| !v.is_finite()) {
        bail!("{key} {values:?} has a non-finite entry");
    }
    Ok(out)
}

fn stds(values: [f64; 3], key: &str) -> anyhow::Result<[f32; 3]> {
    let out = f32s(values, key)?;
    if out.contains(&0.0) {
        bail!("{key} {values:?} must be non-zero");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> PreprocessorConfig {
        PreprocessorConfig::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e:#}"))
    }

    fn square(side: u32) -> ImageSize {
        ImageSize {
            height: side,
            width: side,
        }
    }

    #[test]
    fn defaults_are_vit_base() {
        let cfg = parse("{}");
        assert_eq!(cfg, PreprocessorConfig::default());
        assert_eq!(cfg.processor, Processor::Vit);
        assert_eq!(cfg.resize, Some(Resize::Exact(square(224))));
        assert_eq!(cfg.resample, Resample::Bilinear);
        assert_eq!(cfg.rescale, Some(1.0 / 255.0));
        assert_eq!(cfg.normalize, Some(([0.5; 3], [0.5; 3])));
        assert!(cfg.crops.is_empty() && !cfg.flip_channel_order && !cfg.rescale_offset);
        assert_eq!(cfg.input_size, square(224));
    }

    #[test]
    fn reads_hf_json() {
        let cfg = parse(
            r#"{"do_normalize": true, "do_rescale": true, "do_resize": true,
                "image_mean": [0.485, 0.456, 0.406], "image_processor_type": "ViTImageProcessor",
                "image_std": [0.229, 0.224, 0.225], "resample": 3,
                "rescale_factor": 0.00392156862745098, "size": {"height": 384, "width": 320},
                "do_convert_rgb": true}"#,
        );
        assert_eq!(
            cfg.input_size,
            ImageSize {
                height: 384,
                width: 320
            }
        );
        assert_eq!(cfg.resample, Resample::Bicubic);
        assert_eq!(
            cfg.normalize,
            Some(([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
        );
        // The JSON's float64, not a float32 approximation.
        assert_eq!(cfg.rescale, Some(0.00392156862745098));
    }

    #[test]
    fn legacy_forms() {
        let cfg = parse(r#"{"size": 384, "image_mean": 0.5, "image_std": 0.25}"#);
        assert_eq!(cfg.input_size, square(384));
        assert_eq!(cfg.normalize, Some(([0.5; 3], [0.25; 3])));
        let cfg = parse(r#"{"size": [200, 100]}"#);
        assert_eq!(
            cfg.input_size,
            ImageSize {
                height: 200,
                width: 100
            }
        );
        // An int size is a shortest edge where the class does not default to squares.
        let cfg = parse(
            r#"{"feature_extractor_type": "MobileViTFeatureExtractor", "size": 288, "crop_size": 256}"#,
        );
        assert_eq!(cfg.processor, Processor::MobileVit);
        assert_eq!(cfg.resize, Some(Resize::ShortestEdge(288)));
        assert_eq!(cfg.crops, [square(256)]);
        assert!(cfg.flip_channel_order && cfg.normalize.is_none());
    }

    #[test]
    fn each_class_resizes_as_its_code_does() {
        let convnext = parse(
            r#"{"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 224}}"#,
        );
        assert_eq!(convnext.resize, Some(Resize::ShortestEdge(256)));
        assert_eq!(convnext.crops, [square(224)]);
        let convnext = parse(r#"{"image_processor_type": "ConvNextImageProcessor"}"#);
        assert_eq!(convnext.resize, Some(Resize::Exact(square(384))));
        assert!(convnext.crops.is_empty());
        let levit = parse(r#"{"image_processor_type": "LevitImageProcessor"}"#);
        // int(256 / 224 * 224) in float64.
        assert_eq!(
            levit.resize,
            Some(Resize::ShortestEdge((256.0f64 / 224.0 * 224.0) as u32))
        );
        let poolformer = parse(r#"{"image_processor_type": "PoolFormerImageProcessor"}"#);
        // int(224 / 0.9) = int(248.88...) = 248.
        assert_eq!(poolformer.resize, Some(Resize::ShortestEdge(248)));
        let poolformer = parse(
            r#"{"image_processor_type": "PoolFormerImageProcessor", "size": {"height": 224, "width": 200}, "crop_pct": 0.875, "crop_size": 200}"#,
        );
        assert_eq!(
            poolformer.resize,
            Some(Resize::Exact(ImageSize {
                height: 256,
                width: 228
            }))
        );
        let efficientnet = parse(
            r#"{"image_processor_type": "EfficientNetImageProcessor", "rescale_offset": true, "rescale_factor": 0.00784313725490196}"#,
        );
        assert!(efficientnet.rescale_offset);
        assert_eq!(efficientnet.include_top, Some([0.5; 3]));
        assert_eq!(efficientnet.input_size, square(346));
        let segformer = parse(
            r#"{"image_processor_type": "SegformerImageProcessor", "do_center_crop": true, "crop_size": 10}"#,
        );
        assert!(segformer.crops.is_empty());
        assert_eq!(segformer.input_size, square(512));
    }

    #[test]
    fn nulls_are_none_as_in_transformers() {
        let cfg =
            parse(r#"{"image_processor_type": "DeiTImageProcessor", "do_center_crop": null}"#);
        assert!(cfg.crops.is_empty());
        assert_eq!(cfg.input_size, square(256));
        for json in [
            r#"{"image_mean": null}"#,
            r#"{"size": null}"#,
            r#"{"resample": null}"#,
            r#"{"rescale_factor": null}"#,
        ] {
            assert!(
                PreprocessorConfig::from_json(json.as_bytes()).is_err(),
                "{json}"
            );
        }
    }

    #[test]
    fn rejects_what_it_cannot_honour() {
        for (json, names) in [
            (r#"{"size": {"shortest_edge": 224}}"#, "shortest_edge"),
            (r#"{"resample": 6}"#, "resample 6"),
            (r#"{"resample": "bilinear"}"#, "resample"),
            (r#"{"image_mean": [0.5, 0.5]}"#, "image_mean"),
            (r#"{"image_std": [0.5, 0.0, 0.5]}"#, "image_std"),
            (r#"{"size": 0}"#, "size"),
            (r#"{"do_pad": true}"#, "do_pad"),
            (r#"{"do_center_crop": true}"#, "crop_size"),
            (
                r#"{"image_processor_type": "DonutImageProcessor"}"#,
                "DonutImageProcessor",
            ),
            (r#"{"size": {"longest_edge": 224}}"#, "longest_edge"),
            ("not json", "expected"),
        ] {
            let err = PreprocessorConfig::from_json(json.as_bytes())
                .expect_err(&format!("{json} should be refused"));
            let text = format!("{err:#}");
            assert!(
                text.contains(names),
                "{json}: {text:?} does not name {names:?}"
            );
        }
    }

    #[test]
    fn model_type_picks_the_class_when_the_file_names_none() {
        let cfg = PreprocessorConfig::from_json_for_model(br#"{"crop_size": 224}"#, Some("dinov2"))
            .unwrap();
        assert_eq!(cfg.processor, Processor::Bit);
        assert_eq!(cfg.input_size, square(224));
        // The file's own type wins.
        let cfg = PreprocessorConfig::from_json_for_model(
            br#"{"image_processor_type": "ViTImageProcessor"}"#,
            Some("dinov2"),
        )
        .unwrap();
        assert_eq!(cfg.processor, Processor::Vit);
    }
}
