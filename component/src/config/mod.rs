//! Hugging Face model and preprocessor configuration.
//!
//! - `preprocessor`: [`PreprocessorConfig`] reads `preprocessor_config.json`
//!   exactly as transformers does, for the class it names;
//! - `processors`: [`Processor`], the image processor classes reproduced,
//!   their defaults and where their code departs from the common path;
//! - `size`: `size` / `crop_size` and transformers' resize arithmetic;
//! - `resample`: [`Resample`], PIL's filters;
//! - `model`: [`ModelConfig`] reads the parts of `config.json` that serving needs.

mod model;
mod preprocessor;
mod processors;
mod resample;
mod size;

pub use self::model::ModelConfig;
pub use self::preprocessor::PreprocessorConfig;
pub use self::processors::{PROCESSORS, Processor};
pub use self::resample::Resample;
pub use self::size::{ImageSize, Resize};
