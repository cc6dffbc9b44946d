//! The demo model: a ViT with seeded random weights, written on first use so
//! `vitrine serve` works offline with no model repository.

use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use vitrine_modelgen::{Progress, VitConfig};

use crate::config::cli::DemoSize;

fn config(size: DemoSize) -> VitConfig {
    match size {
        DemoSize::Base => VitConfig::base(),
        DemoSize::Tiny => VitConfig::tiny(),
    }
}

/// Writes a demo model version folder, showing progress.
pub fn write(out: &Path, size: DemoSize, seed: u64) -> anyhow::Result<()> {
    let config = config(size);
    let params = config.parameter_count(1000);
    tracing::info!(
        "writing a demo ViT ({params} parameters, seed {seed}) to {}; its weights are RANDOM, so its predictions are meaningless",
        out.display()
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} tensors")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("generating weights");
    vitrine_modelgen::write_model(out, &config, seed, &mut |p| match p {
        Progress::Tensor { index, total, .. } => {
            bar.set_length(total as u64);
            bar.set_position(index as u64 + 1);
        }
        Progress::Writing { bytes } => {
            bar.set_message(format!("writing model.onnx ({} MB)", bytes >> 20));
        }
    })
    .with_context(|| format!("cannot write the demo model to {}", out.display()))?;
    bar.finish_and_clear();
    tracing::info!("demo model written to {}", out.display());
    Ok(())
}

/// The repository serving the demo model: `<cache>/models/<name>/1/`,
/// written the first time it is needed.
pub fn ensure(cache_dir: &Path, name: &str, size: DemoSize) -> anyhow::Result<PathBuf> {
    let folder = match size {
        DemoSize::Base => "demo-vit-base",
        DemoSize::Tiny => "demo-vit-tiny",
    };
    let base = cache_dir.join(folder).join(name);
    let version = base.join("1");
    if !version.join("model.onnx").is_file() {
        write(&version, size, 0)?;
    }
    Ok(base)
}
