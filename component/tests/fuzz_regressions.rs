//! Inputs the fuzzers found (`fuzz/run.sh`), kept so they stay fixed. Each
//! must be refused with a clear error, without allocating for it.

use vitrine_component::config::PreprocessorConfig;
use vitrine_component::preprocess::{DecodeLimits, preprocess_into};

fn preprocess(name: &str) -> Result<(), String> {
    let path = manifest_dir().join("tests/fuzz_regressions").join(name);
    let bytes = std::fs::read(&path).expect("regression input");
    let cfg = PreprocessorConfig::default();
    let mut out = vec![0f32; 3 * cfg.input_size.height as usize * cfg.input_size.width as usize];
    preprocess_into(&bytes, &cfg, &DecodeLimits::default(), &mut out).map_err(|e| e.to_string())
}

/// A 24x16 GIF whose first frame declares 65304x65535: the decoder used to
/// allocate 17 GB for it (out of memory natively, a trapped instance in wasm).
#[test]
fn a_gif_frame_larger_than_its_screen_is_refused_before_decoding() {
    let e = preprocess("gif-frame-larger-than-screen.gif").expect_err("refused");
    assert!(e.contains("65304x65535"), "{e}");
}

/// This package's folder: as cargo says when it runs the test, else as it
/// said at build time. A build cache shared between checkouts may hold a
/// test binary compiled in another checkout.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .into()
}
