//! Writes a demo model directory and reports how long it took.
//!
//! `cargo run --release -p vitrine-modelgen --example write_model -- DIR [base|tiny] [SEED]`

use std::time::Instant;

use anyhow::{Context, Result, bail};
use vitrine_modelgen::{Progress, VitConfig, write_model};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .context("usage: write_model DIR [base|tiny] [SEED]")?;
    let config = match args.next().as_deref() {
        None | Some("base") => VitConfig::base(),
        Some("tiny") => VitConfig::tiny(),
        Some(other) => bail!("unknown size {other:?}: expected base or tiny"),
    };
    let seed = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0);

    let start = Instant::now();
    let mut bytes = 0;
    write_model(dir.as_ref(), &config, seed, &mut |p| {
        if let Progress::Writing { bytes: b } = p {
            bytes = b;
        }
    })?;
    println!(
        "wrote {dir} ({} parameters, {:.1} MB) in {:.2?}",
        config.parameter_count(1000),
        bytes as f64 / 1e6,
        start.elapsed()
    );
    Ok(())
}
