//! Writes Vitrine's demo image classifier.
//!
//! No pretrained weights can be downloaded where Vitrine runs, so this crate
//! produces a model with exactly the architecture of Hugging Face's
//! `ViTForImageClassification` (default: `google/vit-base-patch16-224`), seeded
//! random weights initialised like `ViTPreTrainedModel._init_weights`, and the real
//! ImageNet-1k labels. The output directory has the layout `optimum-cli export
//! onnx` produces (`model.onnx`, `config.json`, `preprocessor_config.json`), so the
//! server loads it exactly like a genuine export. Every file says the weights are
//! random: the predictions are meaningless.

mod config;
mod graph;
mod hf_config;
mod init;
mod labels;
mod onnx;
mod write;

pub use config::VitConfig;
pub use labels::imagenet_id2label;
pub use write::{Progress, write_model};
