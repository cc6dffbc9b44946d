//! A version's `assets.extra/tf_serving_warmup_requests`: TFRecord framing
//! (lengths and CRCs hostile), then each record as a `PredictionLog`, read
//! as the host's warm-up does. Any file gives an error or at most
//! `MAX_RECORDS` records, each inside the file, whose images lie inside
//! their record. The input is also read as one record's data, as if its
//! CRCs matched: a hostile file computes them, and random mutations rarely
//! get past them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitrine_component::api::INPUT_NAME;
use vitrine_wire::tfrecord::{MAX_RECORDS, predict_log_images, records};

fn within(inner: &[u8], outer: &[u8]) -> bool {
    let (start, end) = (
        outer.as_ptr() as usize,
        outer.as_ptr() as usize + outer.len(),
    );
    let p = inner.as_ptr() as usize;
    p >= start && p + inner.len() <= end
}

fuzz_target!(|data: &[u8]| {
    if let Ok(images) = predict_log_images(data, INPUT_NAME) {
        assert!(!images.is_empty());
        assert!(images.iter().all(|i| within(i, data)));
    }
    let Ok(found) = records(data) else {
        return;
    };
    assert!(found.len() <= MAX_RECORDS);
    for record in found {
        assert!(within(record, data));
        if let Ok(images) = predict_log_images(record, INPUT_NAME) {
            assert!(!images.is_empty());
            assert!(images.iter().all(|i| within(i, record)));
        }
    }
});
