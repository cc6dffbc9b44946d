//! REST request parsing: the route, then the JSON body (instances, inputs,
//! base64 forms). Any input must give `Ok` or a 4xx `ApiError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitrine_component::api::{PredictRequest, RequestLimits, Route};

fuzz_target!(|data: &[u8]| {
    // First line: a path to route; the rest: the body.
    let (path, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"/v1/models/hf-vit:predict"[..], data),
    };
    if let Ok(path) = std::str::from_utf8(path) {
        if let Err(e) = Route::parse(path) {
            assert!((400..500).contains(&e.status), "{e:?}");
        }
    }
    match PredictRequest::parse(body, &RequestLimits::default()) {
        Ok(req) => assert!(!req.images.is_empty()),
        Err(e) => assert!((400..500).contains(&e.status), "{e:?}"),
    }
});
