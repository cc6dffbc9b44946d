//! Bad input gets a clear error in TF Serving's shape and never costs the
//! server its model.

use serde_json::{Value, json};

use crate::support::*;

#[test]
fn bad_requests_get_clear_errors_and_the_model_keeps_serving() {
    let base = tiny_repo();
    let server = Server::start("hf-vit", &base, &["--max_request_bytes=2000000"]);
    let (_, before) = server.predict(&blog_request(&coco_jpeg()));

    let jpeg = std::fs::read(coco_jpeg()).expect("image");
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let predict = "/v1/models/hf-vit:predict";
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "bad base64",
            predict,
            json!({"instances": ["not base64 at all!"]}).to_string(),
            400,
            "not valid base64",
        ),
        (
            "not an image",
            predict,
            json!({"instances": [b64(b"hello, world")]}).to_string(),
            400,
            "instance 0",
        ),
        (
            "truncated JPEG",
            predict,
            json!({"instances": [b64(&jpeg[..jpeg.len() / 3])]}).to_string(),
            400,
            "instance 0",
        ),
        (
            "not JSON",
            predict,
            "{\"instances\": [".to_string(),
            400,
            "not valid JSON",
        ),
        (
            "wrong JSON shape",
            predict,
            json!({"instances": {"b64": "x"}}).to_string(),
            400,
            "must be a list",
        ),
        (
            "no instances",
            predict,
            json!({"signature_name": "serving_default"}).to_string(),
            400,
            "needs \"instances\"",
        ),
        (
            "wrong signature",
            predict,
            json!({"signature_name": "classify", "instances": [b64(&jpeg)]}).to_string(),
            400,
            "not found in signature def",
        ),
        (
            "unknown model",
            "/v1/models/resnet:predict",
            blog_request(&coco_jpeg()).to_string(),
            404,
            "Servable not found for request: Latest(resnet)",
        ),
        (
            "unknown version",
            "/v1/models/hf-vit/versions/7:predict",
            blog_request(&coco_jpeg()).to_string(),
            404,
            "Specific(hf-vit, 7)",
        ),
        (
            "bad version",
            "/v1/models/hf-vit/versions/x:predict",
            blog_request(&coco_jpeg()).to_string(),
            400,
            "positive integer",
        ),
        (
            "unsupported verb",
            "/v1/models/hf-vit:regress",
            blog_request(&coco_jpeg()).to_string(),
            404,
            ":regress",
        ),
        (
            "deeply nested JSON",
            predict,
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            400,
            "more than 32 levels deep; the limit is 32 (--max_json_depth",
        ),
        (
            "huge instance count",
            predict,
            json!({"instances": vec!["aGk"; 100_000]}).to_string(),
            400,
            "the limit is 64",
        ),
        (
            "pixel bomb",
            predict,
            json!({"instances": [b64(&png_header(100_000, 100_000))]}).to_string(),
            400,
            "100000x100000",
        ),
    ];
    check_cases(&server, cases);
    // A body over --max_request_bytes is refused from its declared length,
    // before the server reads it.
    let (status, reply) = declared_length_only(&server, predict, 3_000_000);
    assert_eq!(status, 413, "{reply}");
    assert!(reply.contains("larger than 2000000 bytes"), "{reply}");

    // Wrong method on predict.
    let (status, reply) = server.get(predict);
    assert_eq!(status, 405, "{reply}");

    let mut server = server;
    assert!(server.alive(), "the server survived");
    let (status, reply) = server.get("/v1/models/hf-vit");
    assert_eq!(
        (status, &reply["model_version_status"][0]["state"]),
        (200, &Value::from("AVAILABLE"))
    );
    let (status, after) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(status, 200);
    assert_eq!(after, before, "the model answers exactly as before");
}

/// Every request limit is a flag: lowered, it refuses what the defaults
/// accept, with 400 and a message naming the flag, on REST v1 and KServe v2
/// alike; what stays within the limits is still served.
#[test]
fn request_limits_follow_their_flags() {
    let server = Server::start(
        "hf-vit",
        &tiny_repo(),
        &[
            "--max_instances_per_request=2",
            "--max_json_depth=4",
            // The shared photo is 640x480: 307200 pixels.
            "--max_image_pixels=400000",
            "--max_image_dimension=1000",
        ],
    );
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let photo = urlsafe_b64(&coco_jpeg());
    let predict = "/v1/models/hf-vit:predict";
    let infer = "/v2/models/hf-vit/infer";
    let v2 = |images: Vec<String>| {
        json!({"inputs": [{"name": "string_input", "datatype": "BYTES", "shape": [images.len()], "data": images}]})
            .to_string()
    };
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "two instances: at the limit",
            predict,
            json!({"instances": [photo, photo]}).to_string(),
            200,
            "",
        ),
        (
            "three instances",
            predict,
            json!({"instances": [photo, photo, photo]}).to_string(),
            400,
            "3 instances in one request; the limit is 2 (--max_instances_per_request",
        ),
        (
            "three images over v2",
            infer,
            v2(vec![photo.clone(); 3]),
            400,
            "the limit is 2 (--max_instances_per_request",
        ),
        (
            "four levels of JSON: at the limit",
            predict,
            json!({"instances": [{"string_input": {"b64": photo}}]}).to_string(),
            200,
            "",
        ),
        (
            "five levels of JSON",
            predict,
            json!({"instances": [[[[photo]]]]}).to_string(),
            400,
            "more than 4 levels deep; the limit is 4 (--max_json_depth",
        ),
        (
            "five levels of JSON over v2",
            infer,
            json!({"inputs": [{"name": "pixel_values", "datatype": "FP32", "shape": [1, 1, 1, 1], "data": [[[1.0]]]}]})
                .to_string(),
            400,
            "(--max_json_depth",
        ),
        (
            "more pixels than allowed",
            predict,
            json!({"instances": [b64(&png_header(700, 700))]}).to_string(),
            400,
            "700x700 pixels; the limit is 400000 pixels (--max_image_pixels",
        ),
        (
            "a side longer than allowed",
            predict,
            json!({"instances": [b64(&png_header(1200, 10))]}).to_string(),
            400,
            "the limit is 1000 pixels per side (--max_image_dimension",
        ),
        (
            "too large over v2",
            infer,
            v2(vec![b64(&png_header(700, 700))]),
            400,
            "(--max_image_pixels",
        ),
    ];
    check_cases(&server, cases);
    let (status, reply) = server.get("/v1/models/hf-vit");
    assert_eq!(status, 200);
    assert_eq!(reply["model_version_status"][0]["state"], "AVAILABLE");
}

/// A PNG that claims `width`x`height` pixels: signature, IHDR and nothing
/// else, as a decompression bomb's header would.
/// Posts each `(what, path, body, status, error text)` case and checks the
/// status, and for a refusal that its `{"error": ...}` holds the text.
fn check_cases(server: &Server, cases: Vec<(&str, &str, String, u16, &str)>) {
    for (what, path, body, want_status, want_text) in cases {
        let (status, reply) = server.post(path, body);
        assert_eq!(status, want_status, "{what}: {reply}");
        if want_status == 200 {
            continue;
        }
        let message = reply["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no \"error\" in {reply}"));
        assert!(
            message.contains(want_text),
            "{what}: {message:?} lacks {want_text:?}"
        );
    }
}

fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Sends only the headers of a POST declaring `length` body bytes and reads
/// the reply: the status and the raw body.
fn declared_length_only(server: &Server, path: &str, length: usize) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    .expect("write headers");
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the headers and the (small) JSON body have arrived.
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.ends_with(b"}") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&reply).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}
