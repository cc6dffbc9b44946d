//! Parity of Vitrine's preprocessing with transformers and Pillow.
//!
//! * `shared_images_match_transformers` runs `tests/reference/hf_preprocess.py`
//!   (transformers' `ViTImageProcessorPil`) on every image in `../shared/images`
//!   with the tiny model's `preprocessor_config.json` and with a 384x384
//!   bicubic variant, and compares the tensors with `preprocess_into`.
//! * `resize_matches_pil_for_every_filter` compares `resize` with Pillow's
//!   `Image.resize` byte for byte on random images and awkward sizes.
//! * `decoding_matches_pil_load_image` compares `decode_rgb` with
//!   transformers' `load_image` (PIL decode, EXIF transpose, RGB) on files
//!   Pillow writes in many modes.
//!
//! Python is `$VITRINE_PYTHON`, else `<workspace>/.venv/bin/python`. Figures
//! are printed; see them with `cargo test --release -p vitrine-component
//! --test preprocess_parity -- --nocapture`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
mod common;

use common::*;
use vitrine_component::config::{ImageSize, PreprocessorConfig, Resample};
use vitrine_component::preprocess::{DecodeLimits, decode_rgb, preprocess_into, resize};

/// The agreed bar for model input; the implementation aims at bit equality.
const MAX_ABS_BAR: f32 = 1e-2;
const MEAN_ABS_BAR: f64 = 1e-3;

fn wait_ok(child: Child, what: &str) {
    let output = child.wait_with_output().expect("wait for python");
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn run_python(script: &str, dir: &Path, what: &str) {
    let child = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    wait_ok(child, what);
}

struct Diff {
    max: f32,
    mean: f64,
    equal: usize,
    len: usize,
}

fn diff(ours: &[f32], reference: &[f32]) -> Diff {
    assert_eq!(ours.len(), reference.len(), "tensor lengths differ");
    let mut max = 0.0f32;
    let mut sum = 0.0f64;
    let mut equal = 0;
    for (a, b) in ours.iter().zip(reference) {
        let d = (a - b).abs();
        max = max.max(d);
        sum += f64::from(d);
        equal += usize::from(a.to_bits() == b.to_bits());
    }
    Diff {
        max,
        mean: sum / ours.len().max(1) as f64,
        equal,
        len: ours.len(),
    }
}

#[test]
fn shared_images_match_transformers() {
    let images_dir = shared_dir().join("images");
    if !images_dir.is_dir() {
        println!(
            "skipping: {} does not exist (shared/ is optional)",
            images_dir.display()
        );
        return;
    }
    let mut images: Vec<PathBuf> = std::fs::read_dir(&images_dir)
        .expect("list shared images")
        .map(|entry| entry.expect("read shared images").path())
        .filter(|path| {
            let ext = path
                .extension()
                .unwrap_or_default()
                .to_string_lossy()
                .to_lowercase();
            path.is_file() && ["jpg", "jpeg", "png", "webp", "gif"].contains(&ext.as_str())
        })
        .collect();
    images.sort();
    assert!(
        !images.is_empty(),
        "{} holds no images",
        images_dir.display()
    );

    let model_config =
        shared_dir().join("models/vit-tiny-random-torch-export/preprocessor_config.json");
    let base =
        std::fs::read(&model_config).expect("read the tiny model's preprocessor_config.json");

    // Same model config with another size, filter and per-channel statistics.
    let scratch = ScratchDir::new("hf-parity");
    let mut variant: Value = serde_json::from_slice(&base).expect("parse preprocessor_config.json");
    variant["size"] = json!({"height": 384, "width": 384});
    variant["resample"] = json!(3);
    variant["image_mean"] = json!([0.485, 0.456, 0.406]);
    variant["image_std"] = json!([0.229, 0.224, 0.225]);
    let variant_path = scratch.0.join("bicubic384.json");
    std::fs::write(
        &variant_path,
        serde_json::to_vec_pretty(&variant).expect("serialise"),
    )
    .expect("write variant");

    let configs = [
        ("tiny-model 224 bilinear", model_config.clone()),
        ("384 bicubic", variant_path),
    ];
    let script = workspace_root().join("tests/reference/hf_preprocess.py");
    let python = python();

    // Start every reference run at once; each spends most of its time importing.
    let mut runs = Vec::new();
    for (config_index, (config_name, config_path)) in configs.iter().enumerate() {
        for (image_index, image) in images.iter().enumerate() {
            let out = scratch.0.join(format!("{config_index}-{image_index}.f32"));
            let child = Command::new(&python)
                .arg(&script)
                .arg(image)
                .arg(config_path)
                .arg(&out)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start hf_preprocess.py");
            runs.push((*config_name, config_path.clone(), image.clone(), out, child));
        }
    }

    let limits = DecodeLimits::default();
    let mut failures = Vec::new();
    for (config_name, config_path, image, out, child) in runs {
        let name = image
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        wait_ok(child, &format!("hf_preprocess.py {name} ({config_name})"));
        let reference = read_f32(&out);

        let cfg = PreprocessorConfig::from_json(&std::fs::read(&config_path).expect("read config"))
            .expect("parse config");
        if config_name == "384 bicubic" {
            assert_eq!(
                cfg.input_size,
                ImageSize {
                    height: 384,
                    width: 384
                }
            );
            assert_eq!(cfg.resample, Resample::Bicubic);
        }
        let ImageSize { height, width } = cfg.input_size;
        let mut ours = vec![f32::NAN; 3 * height as usize * width as usize];
        let bytes = std::fs::read(&image).expect("read image");
        preprocess_into(&bytes, &cfg, &limits, &mut ours).expect("preprocess_into");

        let d = diff(&ours, &reference);
        println!(
            "{name:<24} {config_name:<24} max abs diff {:.3e}  mean abs diff {:.3e}  bit-identical {}/{} ({:.4}%)",
            d.max,
            d.mean,
            d.equal,
            d.len,
            100.0 * d.equal as f64 / d.len as f64
        );
        if !(d.max <= MAX_ABS_BAR && d.mean <= MEAN_ABS_BAR) {
            failures.push(format!(
                "{name} ({config_name}): max {:e}, mean {:e}",
                d.max, d.mean
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "over the bar (max {MAX_ABS_BAR:e}, mean {MEAN_ABS_BAR:e}): {failures:#?}"
    );
}

/// Writes `cases.json` and, per case, the random source and Pillow's result for every filter.
const PIL_RESIZE_SCRIPT: &str = r#"
import json, sys
import numpy as np
from PIL import Image

out = sys.argv[1]
sizes = [
    (640, 480, 224, 224), (451, 300, 224, 224), (640, 427, 384, 384), (37, 23, 224, 224),
    (300, 200, 17, 350), (2000, 50, 224, 224), (1, 1, 5, 3), (5, 1, 1, 1), (224, 224, 224, 100),
    (224, 224, 100, 224), (1000, 20, 3, 20), (6, 6, 9, 9), (3, 3, 9, 9), (10, 10, 3, 3),
    (7, 7, 21, 21), (97, 61, 384, 384), (255, 255, 254, 256), (16, 9, 224, 224),
]
rng = np.random.default_rng(0)
cases = []
for i, (w, h, ow, oh) in enumerate(sizes):
    # Smooth gradients plus noise: both rounding and clipping paths get exercised.
    yy, xx = np.mgrid[0:h, 0:w]
    base = (xx * 255 // max(w - 1, 1) + yy * 97) % 256
    noise = rng.integers(0, 256, size=(h, w, 3))
    src = np.where(rng.random((h, w, 1)) < 0.5, base[..., None], noise).astype(np.uint8)
    src.tofile(f"{out}/{i}.src")
    for f in range(6):
        np.asarray(Image.fromarray(src, "RGB").resize((ow, oh), resample=f)).tofile(f"{out}/{i}.{f}")
    cases.append([w, h, ow, oh])
json.dump(cases, open(f"{out}/cases.json", "w"))
"#;

#[test]
fn resize_matches_pil_for_every_filter() {
    let scratch = ScratchDir::new("pil-resize");
    run_python(PIL_RESIZE_SCRIPT, &scratch.0, "Pillow resize reference");
    let cases: Vec<[u32; 4]> =
        serde_json::from_slice(&std::fs::read(scratch.0.join("cases.json")).expect("read cases"))
            .expect("parse cases");

    let filters = [
        Resample::Nearest,
        Resample::Lanczos,
        Resample::Bilinear,
        Resample::Bicubic,
        Resample::Box,
        Resample::Hamming,
    ];
    let mut mismatches = Vec::new();
    for (i, [w, h, ow, oh]) in cases.iter().copied().enumerate() {
        let src = std::fs::read(scratch.0.join(format!("{i}.src"))).expect("read source");
        let src = image::RgbImage::from_raw(w, h, src).expect("source size");
        for filter in filters {
            let pil = std::fs::read(scratch.0.join(format!("{i}.{}", filter.pil_code())))
                .expect("read result");
            let ours = resize(&src, ow, oh, filter);
            let differing = ours
                .as_raw()
                .iter()
                .zip(&pil)
                .filter(|(a, b)| a != b)
                .count();
            if ours.as_raw().len() != pil.len() || differing > 0 {
                mismatches.push(format!(
                    "{w}x{h} -> {ow}x{oh} {filter}: {differing} bytes differ"
                ));
            }
        }
    }
    println!(
        "resize: {} size pairs x {} filters compared with Pillow, {} mismatches",
        cases.len(),
        filters.len(),
        mismatches.len()
    );
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

/// Writes files in many modes plus `load_image`'s RGB result for each, and `files.json`.
const PIL_DECODE_SCRIPT: &str = r#"
import io, json, struct, sys, zlib
import numpy as np
from PIL import Image
from transformers.image_utils import load_image

out = sys.argv[1]
rng = np.random.default_rng(1)
h, w = 37, 53
yy, xx = np.mgrid[0:h, 0:w]
rgb = np.stack([xx * 4 % 256, yy * 6 % 256, (xx * yy) % 256], -1).astype(np.uint8)
rgb[rng.random((h, w)) < 0.2] = rng.integers(0, 256, size=3, dtype=np.uint8)
rgba = np.concatenate([rgb, rng.integers(0, 256, size=(h, w, 1), dtype=np.uint8)], -1)
grey = rgb[..., 0]
files = []

def add(name, lossy=False):
    # `lossy`: decoded by a different codebase than Pillow's (libwebp); see the test.
    files.append({"name": name, "lossy": lossy})
    return f"{out}/{name}"

def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

def raw_png(path, samples, bit_depth, colour_type):
    # Pillow cannot write 16-bit RGB or 2/4-bit grey PNGs, so write them by hand.
    rows = b""
    for row in samples:
        if bit_depth == 16:
            data = row.astype(">u2").tobytes()
        else:
            bits = "".join(format(int(v), f"0{bit_depth}b") for v in row.reshape(-1))
            bits += "0" * (-len(bits) % 8)
            data = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))
        rows += b"\x00" + data
    ihdr = struct.pack(">IIBBBBB", samples.shape[1], samples.shape[0], bit_depth, colour_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b""))

Image.fromarray(rgb).save(add("rgb.png"))
Image.fromarray(rgba).save(add("rgba.png"))
Image.fromarray(grey).save(add("grey.png"))
Image.fromarray(rgba[..., [0, 3]], "LA").save(add("grey-alpha.png"))
Image.fromarray(grey > 127).save(add("bilevel.png"))
Image.fromarray(rgb).quantize(64).save(add("palette.png"))
Image.fromarray(rgb).quantize(64).save(add("palette-transparent.png"), transparency=5)
Image.fromarray((grey.astype(np.uint16) * 300 // 7)).save(add("grey16.png"))
raw_png(add("rgb16.png"), np.stack([xx * 1237, yy * 1771, xx * yy * 37], -1) % 65536, 16, 2)
raw_png(add("grey2.png"), grey % 4, 2, 0)
raw_png(add("grey4.png"), grey % 16, 4, 0)
Image.fromarray(rgb).quantize(200).save(add("palette.gif"))
Image.fromarray(rgb).quantize(200).save(add("palette-transparent.gif"), transparency=3)
first, second = Image.fromarray(rgb).quantize(100), Image.fromarray(rgb[::-1]).quantize(100)
first.save(add("animated.gif"), save_all=True, append_images=[second], duration=100, loop=0)
Image.fromarray(rgb).save(add("lossless.webp"), lossless=True)
Image.fromarray(rgba).save(add("lossless-alpha.webp"), lossless=True)
Image.fromarray(rgb).save(add("lossy.webp", lossy=True), quality=80)
Image.fromarray(rgba).save(add("lossy-alpha.webp", lossy=True), quality=80)
Image.fromarray(rgb).save(add("q92-420.jpg"), quality=92)
Image.fromarray(rgb).save(add("q92-444.jpg"), quality=92, subsampling=0)
Image.fromarray(rgb).save(add("q75-422.jpg"), quality=75, subsampling=1)
Image.fromarray(rgb).save(add("q100-444.jpg"), quality=100, subsampling=0)
Image.fromarray(rgb).save(add("q5-420.jpg"), quality=5)
Image.fromarray(rgb).save(add("optimized.jpg"), quality=90, optimize=True)
Image.fromarray(rgb).save(add("restarts.jpg"), quality=90, restart_marker_blocks=3)
Image.fromarray(rgb).save(add("progressive.jpg"), quality=85, progressive=True)
Image.fromarray(rgb).save(add("progressive-restarts.jpg"), quality=85, progressive=True, restart_marker_rows=1)
Image.fromarray(grey).save(add("grey.jpg"), quality=90)
Image.fromarray(grey).save(add("grey-progressive.jpg"), quality=90, progressive=True)
Image.fromarray(rgb).convert("CMYK").save(add("cmyk.jpg"), quality=95)
noise = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
Image.fromarray(noise).save(add("noise.jpg"), quality=97)
Image.fromarray(noise).save(add("noise-progressive.jpg"), quality=97, progressive=True, optimize=True)
big = np.asarray(Image.fromarray(rgb).resize((301, 207), Image.Resampling.BICUBIC))
Image.fromarray(big).save(add("big-progressive.jpg"), quality=80, progressive=True)
for w, h, sub in [(1, 1, 2), (2, 2, 2), (3, 1, 2), (5, 5, 2), (17, 3, 1), (9, 16, 2)]:
    Image.fromarray(rgb[:h, :w]).save(add(f"tiny-{w}x{h}-{sub}.jpg"), quality=90, subsampling=sub)
Image.fromarray(rgb[:1, :1]).save(add("tiny-1x1.png"))
Image.fromarray(rgb[:1, :1]).save(add("tiny-1x1.webp"), lossless=True)
Image.fromarray(rgb[:1, :2]).quantize(2).save(add("tiny-2x1.gif"))
for orientation in range(1, 9):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(add(f"exif-{orientation}.jpg"), quality=95, exif=exif)
exif = Image.Exif()
exif[0x0112] = 6
Image.fromarray(rgb).save(add("exif-6.png"), exif=exif)
exif[0x0112] = 7
Image.fromarray(rgb).save(add("exif-7.webp"), lossless=True, exif=exif)
xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="8"/></rdf:RDF></x:xmpmeta>'
Image.fromarray(rgb).save(add("xmp-8.jpg"), quality=95, xmp=xmp)

for entry in files:
    image = np.asarray(load_image(f"{out}/{entry['name']}"))
    entry["height"], entry["width"] = image.shape[:2]
    image.tofile(f"{out}/{entry['name']}.rgb")
json.dump(files, open(f"{out}/files.json", "w"))
"#;

#[test]
fn decoding_matches_pil_load_image() {
    let scratch = ScratchDir::new("pil-decode");
    run_python(PIL_DECODE_SCRIPT, &scratch.0, "Pillow decoding reference");
    let files: Vec<Value> =
        serde_json::from_slice(&std::fs::read(scratch.0.join("files.json")).expect("read files"))
            .expect("parse files");

    let limits = DecodeLimits::default();
    let mut failures = Vec::new();
    for file in &files {
        let name = file["name"].as_str().expect("name");
        let lossy = file["lossy"].as_bool().expect("lossy");
        let size = (
            file["width"].as_u64().expect("width") as u32,
            file["height"].as_u64().expect("height") as u32,
        );
        let pil = std::fs::read(scratch.0.join(format!("{name}.rgb"))).expect("read PIL pixels");
        let bytes = std::fs::read(scratch.0.join(name)).expect("read file");
        let ours = match decode_rgb(&bytes, &limits) {
            Ok(ours) => ours,
            Err(err) => {
                failures.push(format!("{name}: {err}"));
                continue;
            }
        };
        if ours.dimensions() != size {
            failures.push(format!(
                "{name}: {:?} but PIL gives {size:?}",
                ours.dimensions()
            ));
            continue;
        }
        let deltas: Vec<u8> = ours
            .as_raw()
            .iter()
            .zip(&pil)
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let max = deltas.iter().copied().max().unwrap_or(0);
        let mean = deltas.iter().map(|&d| f64::from(d)).sum::<f64>() / deltas.len() as f64;
        let differing = deltas.iter().filter(|&&d| d > 0).count();
        println!(
            "{name:<26} {}x{}  max |diff| {max:>3}  mean |diff| {mean:.4}  differing samples {differing}/{}",
            size.0,
            size.1,
            deltas.len()
        );
        // JPEG goes through a libjpeg-exact decoder and everything else
        // through lossless codecs, so all must be identical. Lossy WebP uses
        // image-webp, not libwebp: allow rounding differences (none seen so far).
        let tolerated = if lossy {
            max <= 3 && mean <= 0.1
        } else {
            max == 0
        };
        if !tolerated {
            failures.push(format!("{name}: max {max}, mean {mean:.4}"));
        }
        if name.ends_with(".jpg") {
            let survived = std::panic::catch_unwind(|| decode_damaged_copies(&bytes));
            assert!(
                survived.is_ok(),
                "decoding damaged copies of {name} panicked"
            );
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Flips, zeroes and cuts out bytes across the file; decoding may fail but must not panic.
fn decode_damaged_copies(bytes: &[u8]) {
    let limits = DecodeLimits::default();
    let step = (bytes.len() / 97).max(1);
    for at in (2..bytes.len()).step_by(step) {
        for damage in [0x01u8, 0x80, 0xFF] {
            let mut damaged = bytes.to_vec();
            damaged[at] ^= damage;
            let _ = decode_rgb(&damaged, &limits);
        }
        let mut zeroed = bytes.to_vec();
        zeroed[at..(at + 16).min(bytes.len())].fill(0);
        let _ = decode_rgb(&zeroed, &limits);
        // Keep the end marker so the damage reaches the entropy decoder.
        let spliced = [&bytes[..at], &bytes[bytes.len() - 2..]].concat();
        let _ = decode_rgb(&spliced, &limits);
    }
}
