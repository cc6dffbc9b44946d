//! A model folder's `config.json` and `preprocessor_config.json`, read as
//! the component loads a version (`preprocessor_config.json` with
//! `config.json`'s `model_type`). Any input gives an error or a config the
//! component can allocate for: a positive image size, at most 2^20 labels,
//! a tensor side within `config::size::MAX_SIDE` (16384).
//!
//! Input: `config.json`, a NUL byte, `preprocessor_config.json` (JSON holds
//! no raw NUL). Without a NUL, both files are the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitrine_component::config::{ModelConfig, PreprocessorConfig};

const MAX_SIDE: u32 = 16_384;
const MAX_LABELS: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let (config, preprocessor) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let model = ModelConfig::from_json(config).ok();
    if let Some(model) = &model {
        assert!(model.image_size > 0);
        assert!(model.id2label.len() <= MAX_LABELS);
    }
    let model_type = model.as_ref().and_then(|m| m.model_type.as_deref());
    if let Ok(cfg) = PreprocessorConfig::from_json_for_model(preprocessor, model_type) {
        let size = cfg.input_size;
        assert!((1..=MAX_SIDE).contains(&size.height), "{size:?}");
        assert!((1..=MAX_SIDE).contains(&size.width), "{size:?}");
        let _ = cfg.describe();
    }
});
