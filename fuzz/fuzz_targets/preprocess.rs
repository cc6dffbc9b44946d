//! Image decode and preprocessing on arbitrary bytes: an error or a tensor,
//! never a panic, and never an allocation past the decode limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitrine_component::config::PreprocessorConfig;
use vitrine_component::preprocess::{DecodeLimits, preprocess_into};

fuzz_target!(|data: &[u8]| {
    let cfg = PreprocessorConfig::default();
    // Smaller than the server's limits, so the fuzzer explores instead of
    // spending its time decoding large images.
    let limits = DecodeLimits {
        max_pixels: 4_000_000,
        max_dimension: 4096,
    };
    let mut out = vec![0f32; 3 * cfg.input_size.height as usize * cfg.input_size.width as usize];
    if preprocess_into(data, &cfg, &limits, &mut out).is_ok() {
        assert!(out.iter().all(|x| x.is_finite()));
    }
});
