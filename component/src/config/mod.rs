//! Hugging Face model and preprocessor configuration.
//!
//! - `preprocessor`: [`PreprocessorConfig`] reads `preprocessor_config.json`
//!   with the defaults of transformers' `ViTImageProcessor`;
//! - `model`: [`ModelConfig`] reads the parts of `config.json` that serving needs.

mod model;
mod preprocessor;

pub use self::model::ModelConfig;
pub use self::preprocessor::{ImageSize, PreprocessorConfig, Resample};
