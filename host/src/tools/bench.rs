//! `vitrine bench-native`: the bare model under tract, timed in-process, so
//! the benchmark can set the host path beside the engine it is built on.

use std::time::Instant;

use anyhow::Context;
use tract_onnx::prelude::Tensor;
use vitrine_component::inference::Engine;
use vitrine_component::service::LoadedModel;

use crate::config::cli::BenchNativeArgs;
use crate::engines::tract;

pub fn native(args: BenchNativeArgs) -> anyhow::Result<()> {
    let threads = tract::set_intra_op_threads(args.threads);
    let started = Instant::now();
    let loaded = LoadedModel::load(&args.model)
        .with_context(|| format!("cannot load {}", args.model.display()))?;
    let load_s = started.elapsed().as_secs_f64();
    let Engine::Tract(classifier) = loaded.engine;
    let [c, h, w] = loaded.image_shape;
    let input = || Tensor::zero::<f32>(&[args.batch, c, h, w]);
    for _ in 0..2 {
        classifier.run_tensor(input()?)?;
    }
    let mut times = Vec::with_capacity(args.iterations);
    for _ in 0..args.iterations.max(1) {
        let x = input()?;
        let t = Instant::now();
        classifier.run_tensor(x)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize] * 1e3;
    let total: f64 = times.iter().sum();
    let report = serde_json::json!({
        "engine": "tract native",
        "threads": threads,
        "batch": args.batch,
        "iterations": times.len(),
        "load_s": load_s,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "images_per_s": (times.len() * args.batch) as f64 / total,
        "peak_rss_mb": peak_rss_mb(),
    });
    println!("{report}");
    Ok(())
}

/// `VmHWM` from /proc: the process's peak resident memory.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
