//! Parity of every image processor Vitrine reproduces with transformers'
//! own, `AutoImageProcessor.from_pretrained(folder, backend="pil")`
//! (`tests/reference/hf_processor.py`).
//!
//! * `fixtures_match_transformers`: every model folder (`../shared/models/zoo/*`,
//!   the shared tiny ViT export, `tests/fixtures/zoo/*`) on every image in
//!   `../shared/images` plus grey, palette, RGBA, CMYK, small and portrait
//!   images Pillow writes, so crops pad, every `convert("RGB")` path is
//!   taken, and Pillow 13 resizes some images vertical pass first.
//! * `config_variants_match_transformers`: configs that exercise each
//!   processor's defaults and each key's edge (crop_pct, the ConvNeXt 384
//!   switch, odd crops, crops larger than the image, legacy int sizes and
//!   `feature_extractor_type`, rescale_offset, include_top, BGR, nearest...).
//!   Where transformers refuses a config, Vitrine must refuse it too.
//!
//! The bar is max |diff| <= 1e-2 and mean <= 1e-3; the figures printed (see
//! them with `-- --nocapture`) show how many values are bit-identical.
//! Python is `$VITRINE_PYTHON`, else `<workspace>/.venv/bin/python`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
mod common;

use common::*;
use vitrine_component::config::PreprocessorConfig;
use vitrine_component::preprocess::{DecodeLimits, preprocess_into};

const MAX_ABS_BAR: f32 = 1e-2;
const MEAN_ABS_BAR: f64 = 1e-3;

fn run_python(args: &[&Path], what: &str) {
    let output = Command::new(python())
        .args(args)
        .output()
        .expect("start python");
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The shared photos, or `None` (with a loud SKIPPED) when ../shared is absent.
fn shared_images() -> Option<Vec<PathBuf>> {
    let dir = shared_dir().join("images");
    if !dir.is_dir() {
        println!(
            "SKIPPED: {} does not exist (../shared is optional)",
            dir.display()
        );
        return None;
    }
    let mut images: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("list shared images")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    images.sort();
    assert!(!images.is_empty(), "{} holds no images", dir.display());
    Some(images)
}

/// Writes images in the modes `convert("RGB")` treats differently, and sizes
/// that make crops pad, with Pillow.
const EXTRA_IMAGES_SCRIPT: &str = r#"
import sys
import numpy as np
from PIL import Image
out = sys.argv[1]
rng = np.random.default_rng(3)
h, w = 181, 243
yy, xx = np.mgrid[0:h, 0:w]
rgb = np.stack([xx * 255 // w, yy * 255 // h, (xx * 3 + yy * 5) % 256], -1).astype(np.uint8)
rgb[rng.random((h, w)) < 0.1] = 255
alpha = (xx * 255 // w).astype(np.uint8)
Image.fromarray(rgb[..., 0]).save(f"{out}/grey.png")
Image.fromarray(rgb).quantize(48).save(f"{out}/palette.png")
Image.fromarray(np.dstack([rgb, alpha])).save(f"{out}/rgba.png")
Image.fromarray(rgb).convert("CMYK").save(f"{out}/cmyk.jpg", quality=95)
Image.fromarray(rgb[:97, :61]).save(f"{out}/small-61x97.png")
Image.fromarray(rgb).save(f"{out}/q90-243x181.jpg", quality=90)
portrait = np.ascontiguousarray(rgb.transpose(1, 0, 2))
Image.fromarray(portrait).save(f"{out}/portrait-181x243.png")
Image.fromarray(portrait).save(f"{out}/portrait-q90-181x243.jpg", quality=90)
# A photo held upright: the shared COCO image turned a quarter.
photo = Image.open(sys.argv[2]).convert("RGB").transpose(Image.Transpose.ROTATE_90)
photo.save(f"{out}/portrait-coco-480x640.jpg", quality=92)
"#;

fn extra_images(scratch: &Path) -> Vec<PathBuf> {
    let script = scratch.join("extra_images.py");
    std::fs::write(&script, EXTRA_IMAGES_SCRIPT).expect("write script");
    let dir = scratch.join("images");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let photo = shared_dir().join("images/coco_000000039769.jpg");
    run_python(&[&script, &dir, &photo], "writing the extra images");
    [
        "grey.png",
        "palette.png",
        "rgba.png",
        "cmyk.jpg",
        "small-61x97.png",
        "q90-243x181.jpg",
        "portrait-181x243.png",
        "portrait-q90-181x243.jpg",
        "portrait-coco-480x640.jpg",
    ]
    .iter()
    .map(|n| dir.join(n))
    .collect()
}

/// Every model folder the project has: shared zoo, the shared tiny ViT, ours.
fn model_folders() -> Vec<PathBuf> {
    let mut folders = vec![shared_dir().join("models/vit-tiny-random-torch-export")];
    for root in [
        shared_dir().join("models/zoo"),
        workspace_root().join("tests/fixtures/zoo"),
    ] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("list {}: {e}", root.display()))
            .map(|e| e.expect("entry").path())
            .filter(|p| p.join("preprocessor_config.json").is_file())
            .collect();
        found.sort();
        folders.extend(found);
    }
    folders
}

fn model_type(folder: &Path) -> Option<String> {
    let bytes = std::fs::read(folder.join("config.json")).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v["model_type"].as_str().map(str::to_string)
}

struct Job {
    folder: PathBuf,
    image: PathBuf,
    out: PathBuf,
}

/// Runs the reference on every (folder, image) and compares; returns failures.
fn compare_all(scratch: &Path, folders: &[PathBuf], images: &[PathBuf]) -> Vec<String> {
    let mut jobs = Vec::new();
    for (f, folder) in folders.iter().enumerate() {
        for (i, image) in images.iter().enumerate() {
            jobs.push(Job {
                folder: folder.clone(),
                image: image.clone(),
                out: scratch.join(format!("{f}-{i}.f32")),
            });
        }
    }
    let list: Vec<Value> = jobs
        .iter()
        .map(|j| json!({"model": j.folder, "image": j.image, "pixels_out": j.out}))
        .collect();
    let jobs_file = scratch.join("jobs.json");
    let out_file = scratch.join("reference.json");
    std::fs::write(&jobs_file, serde_json::to_vec(&list).expect("json")).expect("write jobs");
    run_python(
        &[
            &workspace_root().join("tests/reference/hf_processor.py"),
            &jobs_file,
            &out_file,
        ],
        "hf_processor.py",
    );
    let reference: Value =
        serde_json::from_slice(&std::fs::read(&out_file).expect("read reference")).expect("json");

    let limits = DecodeLimits::default();
    let mut failures = Vec::new();
    let mut summary: Vec<(String, f32, f64, usize, usize)> = Vec::new();
    for job in &jobs {
        let name = format!(
            "{} / {}",
            job.folder.file_name().unwrap_or_default().to_string_lossy(),
            job.image.file_name().unwrap_or_default().to_string_lossy()
        );
        let entry = &reference[job.out.to_str().expect("utf-8")];
        let config = std::fs::read(job.folder.join("preprocessor_config.json")).expect("config");
        let ours =
            PreprocessorConfig::from_json_for_model(&config, model_type(&job.folder).as_deref());
        if let Some(error) = entry["error"].as_str() {
            if let Ok(cfg) = ours {
                failures.push(format!(
                    "{name}: transformers refuses ({error}) but Vitrine accepts it as {}",
                    cfg.describe()
                ));
            }
            continue;
        }
        let cfg = match ours {
            Ok(cfg) => cfg,
            Err(e) => {
                failures.push(format!(
                    "{name}: Vitrine refuses what transformers accepts: {e:#}"
                ));
                continue;
            }
        };
        let processor = entry["processor"].as_str().unwrap_or_default();
        if processor.trim_end_matches("Pil") != cfg.processor.class_name() {
            failures.push(format!(
                "{name}: transformers runs {processor}, Vitrine {}",
                cfg.processor.class_name()
            ));
        }
        let shape: Vec<u64> = entry["shape"]
            .as_array()
            .expect("shape")
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        let size = cfg.input_size;
        if shape != [3, u64::from(size.height), u64::from(size.width)] {
            failures.push(format!(
                "{name}: transformers gives {shape:?}, Vitrine {size:?}"
            ));
            continue;
        }
        let reference = read_f32(&job.out);
        let mut pixels = vec![f32::NAN; reference.len()];
        let bytes = std::fs::read(&job.image).expect("image");
        if let Err(e) = preprocess_into(&bytes, &cfg, &limits, &mut pixels) {
            failures.push(format!("{name}: {e}"));
            continue;
        }
        let (max, mean, equal) = diff(&pixels, &reference);
        println!(
            "{name:<48} {:<52} max |diff| {max:.3e}  mean {mean:.3e}  bit-identical {equal}/{}",
            cfg.describe(),
            pixels.len()
        );
        if !(max <= MAX_ABS_BAR && mean <= MEAN_ABS_BAR) {
            failures.push(format!("{name}: max {max:e}, mean {mean:e}"));
        }
        summary.push((name, max, mean, equal, pixels.len()));
    }
    let exact = summary.iter().filter(|s| s.3 == s.4).count();
    println!(
        "{} comparisons, {exact} bit-identical, worst max |diff| {:.3e}, worst mean {:.3e}",
        summary.len(),
        summary.iter().map(|s| s.1).fold(0.0, f32::max),
        summary.iter().map(|s| s.2).fold(0.0, f64::max)
    );
    assert!(!summary.is_empty(), "nothing was compared");
    failures
}

fn diff(ours: &[f32], reference: &[f32]) -> (f32, f64, usize) {
    let mut max = 0.0f32;
    let mut sum = 0.0f64;
    let mut equal = 0;
    for (a, b) in ours.iter().zip(reference) {
        let d = (a - b).abs();
        // NaN (a value never written) must fail the bar.
        max = if d.is_nan() {
            f32::INFINITY
        } else {
            max.max(d)
        };
        sum += f64::from(d);
        equal += usize::from(a.to_bits() == b.to_bits());
    }
    (max, sum / ours.len().max(1) as f64, equal)
}

#[test]
fn fixtures_match_transformers() {
    let Some(mut images) = shared_images() else {
        return;
    };
    let scratch = ScratchDir::new("processor-fixtures");
    images.extend(extra_images(&scratch.0));
    let folders = model_folders();
    let failures = compare_all(&scratch.0, &folders, &images);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Configs beyond the fixtures', each in a folder of its own.
fn variants() -> Vec<(&'static str, Value)> {
    let t = |name: &str| json!({ "image_processor_type": name });
    let mut v: Vec<(&'static str, Value)> = vec![
        // Each class's defaults (only the type named).
        ("vit-defaults", t("ViTImageProcessor")),
        ("deit-defaults", t("DeiTImageProcessor")),
        ("beit-defaults", t("BeitImageProcessor")),
        ("bit-defaults", t("BitImageProcessor")),
        ("clip-defaults", t("CLIPImageProcessor")),
        ("convnext-defaults", t("ConvNextImageProcessor")),
        ("levit-defaults", t("LevitImageProcessor")),
        ("poolformer-defaults", t("PoolFormerImageProcessor")),
        ("mobilevit-defaults", t("MobileViTImageProcessor")),
        ("efficientnet-defaults", t("EfficientNetImageProcessor")),
        ("mobilenet-v1-defaults", t("MobileNetV1ImageProcessor")),
        ("mobilenet-v2-defaults", t("MobileNetV2ImageProcessor")),
        ("pvt-defaults", t("PvtImageProcessor")),
        ("siglip-defaults", t("SiglipImageProcessor")),
        ("segformer-defaults", t("SegformerImageProcessor")),
    ];
    v.extend([
        // Legacy spellings: feature_extractor_type and int sizes.
        (
            "legacy-vit",
            json!({"feature_extractor_type": "ViTFeatureExtractor", "size": 224, "resample": 2}),
        ),
        (
            "legacy-mobilevit",
            json!({"feature_extractor_type": "MobileViTFeatureExtractor", "size": 288,
                   "crop_size": 256, "do_center_crop": true, "resample": 2}),
        ),
        (
            "legacy-convnext-fast",
            json!({"image_processor_type": "ConvNextImageProcessorFast", "size": 224, "crop_pct": 0.95}),
        ),
        // ConvNeXt at 384: warped to a square, no crop.
        (
            "convnext-384",
            json!({"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 384}}),
        ),
        // ConvNeXt's own crop, then crop_size's.
        (
            "convnext-two-crops",
            json!({"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 224},
                   "do_center_crop": true, "crop_size": {"height": 199, "width": 173}}),
        ),
        // Odd crops larger than the resized image: offsets and padding.
        (
            "deit-odd-padding-crop",
            json!({"image_processor_type": "DeiTImageProcessor", "size": {"height": 101, "width": 150},
                   "crop_size": {"height": 131, "width": 177}}),
        ),
        (
            "bit-no-resize-crop",
            json!({"image_processor_type": "BitImageProcessor", "do_resize": false,
                   "crop_size": {"height": 127, "width": 255}}),
        ),
        (
            "bit-shortest-longest",
            json!({"image_processor_type": "BitImageProcessor",
                   "size": {"shortest_edge": 300, "longest_edge": 320}, "crop_size": 224}),
        ),
        (
            "levit-height-width",
            json!({"image_processor_type": "LevitImageProcessor", "size": {"height": 240, "width": 200},
                   "crop_size": {"height": 224, "width": 224}}),
        ),
        (
            "poolformer-non-square",
            json!({"image_processor_type": "PoolFormerImageProcessor", "size": {"height": 224, "width": 200},
                   "crop_pct": 0.875, "crop_size": {"height": 224, "width": 200}}),
        ),
        (
            "poolformer-square",
            json!({"image_processor_type": "PoolFormerImageProcessor", "size": {"height": 224, "width": 224}}),
        ),
        (
            "efficientnet-b0",
            json!({"image_processor_type": "EfficientNetImageProcessor", "size": {"height": 224, "width": 224},
                   "resample": 0, "image_mean": [0.485, 0.456, 0.406],
                   "image_std": [0.47853944, 0.4732864, 0.47434163], "include_top": true}),
        ),
        (
            "efficientnet-offset-no-top",
            json!({"image_processor_type": "EfficientNetImageProcessor", "rescale_offset": true,
                   "rescale_factor": 0.00784313725490196, "include_top": false, "do_normalize": false,
                   "do_center_crop": true}),
        ),
        (
            "mobilevit-rgb-normalize-ignored",
            json!({"image_processor_type": "MobileViTImageProcessor", "do_flip_channel_order": false,
                   "do_normalize": true, "image_mean": [0.1, 0.2, 0.3]}),
        ),
        (
            "vit-lanczos-box-scalar-stats",
            json!({"image_processor_type": "ViTImageProcessor", "resample": 1, "image_mean": 0.4,
                   "image_std": 0.3, "size": [160, 96]}),
        ),
        (
            "vit-hamming-no-rescale",
            json!({"image_processor_type": "ViTImageProcessor", "resample": 5, "do_rescale": false}),
        ),
        (
            "beit-crop-box",
            json!({"image_processor_type": "BeitImageProcessor", "do_center_crop": true, "resample": 4,
                   "size": {"height": 240, "width": 240}, "do_reduce_labels": true}),
        ),
        (
            "segformer-crop-ignored",
            json!({"image_processor_type": "SegformerImageProcessor", "do_center_crop": true,
                   "crop_size": 100, "size": {"height": 128, "width": 128}}),
        ),
        // null is Python's None, not the class default: refused here...
        (
            "null-mean-is-none",
            json!({"image_processor_type": "DeiTImageProcessor", "image_mean": null}),
        ),
        (
            "null-size-is-none",
            json!({"image_processor_type": "ViTImageProcessor", "size": null}),
        ),
        // ...and a null flag is false: no crop, so DeiT's 256x256.
        (
            "null-crop-flag-is-false",
            json!({"image_processor_type": "DeiTImageProcessor", "do_center_crop": null, "crop_size": null}),
        ),
        // PoolFormer without crop_pct resizes as the backend does.
        (
            "poolformer-null-crop-pct",
            json!({"image_processor_type": "PoolFormerImageProcessor", "crop_pct": null}),
        ),
        // No type: transformers falls back to config.json's model_type.
        ("model-type-dinov2", json!({"size": {"shortest_edge": 256}, "crop_size": 224})),
    ]);
    v
}

#[test]
fn config_variants_match_transformers() {
    let Some(mut images) = shared_images() else {
        return;
    };
    let scratch = ScratchDir::new("processor-variants");
    images.extend(extra_images(&scratch.0));
    let mut folders = Vec::new();
    for (name, config) in variants() {
        let folder = scratch.0.join("configs").join(name);
        std::fs::create_dir_all(&folder).expect("mkdir");
        std::fs::write(
            folder.join("preprocessor_config.json"),
            serde_json::to_vec_pretty(&config).expect("json"),
        )
        .expect("write config");
        if name == "model-type-dinov2" {
            std::fs::write(folder.join("config.json"), br#"{"model_type": "dinov2"}"#)
                .expect("write config.json");
        }
        folders.push(folder);
    }
    let failures = compare_all(&scratch.0, &folders, &images);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// What transformers would do but Vitrine cannot is refused, naming the key.
#[test]
fn unsupported_configs_are_refused_naming_the_key() {
    for (config, key) in [
        (
            json!({"image_processor_type": "ViTImageProcessor", "do_pad": true}),
            "do_pad",
        ),
        (
            json!({"image_processor_type": "BitImageProcessor", "do_center_crop": false}),
            "shortest_edge",
        ),
        (
            json!({"image_processor_type": "ViTImageProcessor", "size": {"longest_edge": 224}}),
            "longest_edge",
        ),
        (
            json!({"image_processor_type": "DonutImageProcessor"}),
            "DonutImageProcessor",
        ),
        (
            json!({"image_processor_type": "ConvNextImageProcessor", "size": {"height": 224, "width": 224}}),
            "shortest_edge",
        ),
        (
            json!({"image_processor_type": "DeiTImageProcessor", "crop_size": {"shortest_edge": 3}}),
            "crop_size",
        ),
        (
            json!({"image_processor_type": "PoolFormerImageProcessor", "crop_pct": 0}),
            "crop_pct",
        ),
        (
            json!({"image_processor_type": "ViTImageProcessor", "do_resize": "yes"}),
            "do_resize",
        ),
    ] {
        let err = PreprocessorConfig::from_json(config.to_string().as_bytes())
            .expect_err(&format!("{config} should be refused"));
        let text = format!("{err:#}");
        assert!(
            text.contains(key),
            "{config}: {text:?} does not name {key:?}"
        );
    }
    // Processors whose own code never pads ignore do_pad, as transformers does.
    let cfg = PreprocessorConfig::from_json(
        br#"{"image_processor_type": "BeitImageProcessor", "do_pad": true}"#,
    )
    .expect("BeitImageProcessor ignores do_pad");
    assert_eq!(cfg.input_size.height, 224);
}
