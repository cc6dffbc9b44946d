//! The bare model under the guest's own tract, with no server around it.
//!
//! Built for `wasm32-wasip2` this is a WASI command that `vitrine bench-wasm`
//! runs in the host's wasmtime engine, so the benchmark can set the served
//! guest path beside the same inference with nothing else: the difference is
//! what serving costs (HTTP, decoding, preprocessing, instance hand-offs).
//! It loads the version folder with the component's own loader
//! ([`LoadedModel::load`]), runs two untimed batch-1 inferences of a zero
//! tensor, times `--iterations` more, and prints one JSON line shaped like
//! `vitrine bench-native`'s. Built natively (the workspace's default) it
//! does the same on the host, single-threaded, and says so in `engine`.
//!
//! Given an image it also times the component's decoding and preprocessing
//! of it (`decode_p50_ms`, `preprocess_p50_ms`: decode, resize, crop and
//! normalise into the tensor), the guest's share of a request served on the
//! host path, where the model runs natively.
//!
//! Usage: `vitrine-bench-wasm MODEL_DIR [ITERATIONS [IMAGE]]`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use tract_onnx::prelude::Tensor;
use vitrine_component::inference::Engine;
use vitrine_component::preprocess::{DecodeLimits, decode_rgb, preprocess_into};
use vitrine_component::service::LoadedModel;

/// What ran the model, as the benchmark's tables name it.
const ENGINE: &str = if cfg!(target_arch = "wasm32") {
    "tract in wasm"
} else {
    "tract native, bench-wasm program"
};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vitrine-bench-wasm: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        bail!(
            "usage: vitrine-bench-wasm MODEL_DIR [ITERATIONS [IMAGE]] (or run it with `vitrine bench-wasm --model DIR`)"
        );
    };
    let iterations: usize = match args.next() {
        Some(n) => n
            .parse()
            .with_context(|| format!("ITERATIONS must be a whole number, not {n:?}"))?,
        None => 20,
    };
    let image = args.next().map(PathBuf::from);
    let started = Instant::now();
    let loaded =
        LoadedModel::load(&dir).with_context(|| format!("cannot load {}", dir.display()))?;
    let load_s = started.elapsed().as_secs_f64();
    let Engine::Tract(classifier) = loaded.engine;
    let [c, h, w] = loaded.image_shape;
    let input = || Tensor::zero::<f32>(&[1, c, h, w]);
    for _ in 0..2 {
        classifier.run_tensor(input()?)?;
    }
    let mut times = Vec::with_capacity(iterations.max(1));
    for _ in 0..iterations.max(1) {
        let x = input()?;
        let t = Instant::now();
        classifier.run_tensor(x)?;
        times.push(t.elapsed().as_secs_f64());
    }
    let (runs, total) = (times.len(), times.iter().sum::<f64>());
    let pct = percentiles(times);
    let mut report = serde_json::json!({
        "engine": ENGINE,
        "threads": 1,
        "batch": 1,
        "iterations": runs,
        "load_s": load_s,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "images_per_s": runs as f64 / total,
    });
    if let Some(image) = image {
        let bytes =
            std::fs::read(&image).with_context(|| format!("cannot read {}", image.display()))?;
        let limits = DecodeLimits::default();
        let mut tensor = vec![0f32; c * h * w];
        let (mut decode, mut preprocess) = (Vec::new(), Vec::new());
        // Preprocessing is milliseconds: ten times the inference's runs.
        for _ in 0..10 * iterations.max(1) {
            let t = Instant::now();
            decode_rgb(&bytes, &limits)?;
            decode.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            preprocess_into(&bytes, &loaded.preprocessor, &limits, &mut tensor)?;
            preprocess.push(t.elapsed().as_secs_f64());
        }
        let preprocess = percentiles(preprocess);
        report["decode_p50_ms"] = percentiles(decode)(0.5).into();
        report["preprocess_p50_ms"] = preprocess(0.5).into();
        report["preprocess_p99_ms"] = preprocess(0.99).into();
    }
    println!("{report}");
    Ok(())
}

/// Percentiles in milliseconds of run times in seconds.
fn percentiles(mut times: Vec<f64>) -> impl Fn(f64) -> f64 {
    times.sort_by(f64::total_cmp);
    move |p| times[((times.len() as f64 - 1.0) * p).round() as usize] * 1e3
}
