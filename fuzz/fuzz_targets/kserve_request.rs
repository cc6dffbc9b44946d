//! KServe v2 infer requests, JSON and the binary tensor extension, through
//! `InferRequest::parse` as the component's v2 service calls it. Any input
//! gives a 4xx `ApiError` or a request within the limits: at least one and
//! at most `max_instances` images, a pixel tensor whose data matches its
//! shape, at least one output.
//!
//! Input: byte 0 bit 0 set means binary, with the JSON header's length
//! (what `inference-header-content-length` says) in bytes 1..3, little
//! endian; the body follows. Bit 0 clear: the rest is a JSON body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitrine_component::api::RequestLimits;
use vitrine_component::kserve::{InferRequest, Input};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (header_length, body) = if mode & 1 == 1 {
        if rest.len() < 2 {
            return;
        }
        let (len, body) = rest.split_at(2);
        (
            Some(usize::from(u16::from_le_bytes([len[0], len[1]]))),
            body,
        )
    } else {
        (None, rest)
    };
    // A small instance limit, so the fuzzer reaches it.
    let limits = RequestLimits {
        max_instances: 4,
        ..RequestLimits::default()
    };
    match InferRequest::parse(body, header_length, &limits) {
        Ok(req) => {
            match &req.input {
                Input::Images(images) => {
                    assert!((1..=limits.max_instances).contains(&images.len()));
                    // Images are slices of the body or decoded base64: none
                    // can be larger than the body.
                    assert!(images.iter().all(|i| i.len() <= body.len()));
                }
                Input::Pixels { shape, data } => {
                    let batch = shape.first().copied().unwrap_or(0);
                    assert!((1..=limits.max_instances).contains(&batch), "{shape:?}");
                    assert_eq!(shape.iter().product::<usize>(), data.len());
                    // Each value takes at least one byte of the body.
                    assert!(data.len() <= body.len());
                }
            }
            assert!(!req.outputs.is_empty());
            assert!(req.outputs.iter().all(|o| o.classification != Some(0)));
        }
        Err(e) => assert!((400..500).contains(&e.status), "{e:?}"),
    }
});
