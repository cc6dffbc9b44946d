//! Places the model directory on disk so readers only ever see complete files.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, ensure};

use crate::onnx::OnnxModel;
use crate::{VitConfig, hf_config, imagenet_id2label};

/// Progress of [`write_model`], reported from the writing thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress<'a> {
    /// Parameter `index` of `total` (HF name `name`) is being generated.
    Tensor {
        name: &'a str,
        index: usize,
        total: usize,
    },
    /// model.onnx bytes written so far (sent after each parameter).
    Writing { bytes: u64 },
}

/// Writes `model.onnx`, `config.json` and `preprocessor_config.json` (optimum's
/// layout) for a `ViTForImageClassification` over ImageNet-1k labels with weights
/// drawn from `seed`. `dir` is created if missing.
///
/// Files are written under temporary names, flushed to disk, then renamed into
/// place with model.onnx last, so a reader that finds model.onnx finds all three
/// complete. Existing files are replaced.
pub fn write_model(
    dir: &Path,
    config: &VitConfig,
    seed: u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    config.validate()?;
    let labels = imagenet_id2label();
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    let mut staging = Staging::new(dir);
    let config_json = hf_config::model_config_json(config, &labels, seed);
    staging.write("config.json", |out| Ok(out.write_all(&config_json)?))?;
    let preprocessor_json = hf_config::preprocessor_config_json(config);
    staging.write("preprocessor_config.json", |out| {
        Ok(out.write_all(&preprocessor_json)?)
    })?;
    let model = OnnxModel::new(config, labels.len(), seed);
    staging.write("model.onnx", |out| {
        let written = model.write(out, progress)?;
        ensure!(
            written == model.encoded_len(),
            "model.onnx: wrote {written} bytes, planned {}",
            model.encoded_len()
        );
        Ok(())
    })?;
    staging.commit()
}

/// Temporary files awaiting rename; removed on drop unless committed.
struct Staging<'a> {
    dir: &'a Path,
    files: Vec<(PathBuf, PathBuf)>,
}

impl<'a> Staging<'a> {
    fn new(dir: &'a Path) -> Self {
        Self {
            dir,
            files: Vec::new(),
        }
    }

    fn write(&mut self, name: &str, body: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
        // Unique per process and call, so concurrent writers never share a temp file.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!(".{name}.{}-{unique}.tmp", std::process::id()));
        let target = self.dir.join(name);
        self.files.push((temp.clone(), target));

        let context = || format!("writing {}", temp.display());
        let file = File::create(&temp).with_context(context)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        body(&mut out).with_context(context)?;
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(context)?;
        file.sync_all().with_context(context)?;
        Ok(())
    }

    /// Renames in staging order; on failure, Drop removes the files not yet renamed.
    fn commit(mut self) -> Result<()> {
        while let Some((temp, target)) = self.files.first() {
            fs::rename(temp, target)
                .with_context(|| format!("renaming {} to {}", temp.display(), target.display()))?;
            self.files.remove(0);
        }
        // Persist the renames themselves; not every platform can open directories.
        if let Ok(dir) = File::open(self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        for (temp, _) in &self.files {
            let _ = fs::remove_file(temp);
        }
    }
}
