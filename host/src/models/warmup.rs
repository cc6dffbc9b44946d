//! Warm-up requests a version folder carries in `assets.extra/`, run on
//! every instance before the version is AVAILABLE, so the first real
//! requests find every lazy initialization done.
//!
//! Accepted, read in this order (at most [`MAX_REQUESTS`] in all):
//!
//! - `assets.extra/tf_serving_warmup_requests`: TF Serving's own format, a
//!   TFRecord file of `PredictionLog` protos with `predict_log`; each
//!   request's `string_val` images become one predict;
//! - `assets.extra/warmup/*.json` (by name): a REST predict body each, as a
//!   client would POST it;
//! - `assets.extra/warmup/*.jpg|jpeg|png|gif|webp` (by name): one image
//!   each, sent as `{"instances": [{"b64": ...}]}`.
//!
//! A warm-up request that does not answer 200 fails the version, with the
//! file and the reply in its status. Without any of these, the host warms up
//! with one synthetic image (the component's `/vitrine/warmup`).

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;
use bytes::Bytes;

/// TF Serving reads at most this many warm-up records; so does Vitrine.
pub const MAX_REQUESTS: usize = 1000;

pub const TFRECORD_FILE: &str = "assets.extra/tf_serving_warmup_requests";
pub const WARMUP_DIR: &str = "assets.extra/warmup";

const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "gif", "webp"];

/// One predict body to send, and where it came from (for error messages).
#[derive(Debug, Clone)]
pub struct WarmupRequest {
    pub source: String,
    pub body: Bytes,
}

/// The warm-up requests in `version_dir`, in the order they run; empty when
/// the folder has none.
pub fn requests(version_dir: &Path) -> anyhow::Result<Vec<WarmupRequest>> {
    let mut out = Vec::new();
    let tfrecord = version_dir.join(TFRECORD_FILE);
    if tfrecord.is_file() {
        let bytes =
            std::fs::read(&tfrecord).with_context(|| format!("cannot read {TFRECORD_FILE}"))?;
        for (i, record) in tfrecord_records(&bytes)
            .with_context(|| format!("{TFRECORD_FILE} is not a valid TFRecord file"))?
            .into_iter()
            .enumerate()
        {
            let images = predict_log_images(record)
                .with_context(|| format!("{TFRECORD_FILE}, record {i}"))?;
            out.push(WarmupRequest {
                source: format!("{TFRECORD_FILE} record {i}"),
                body: instances_body(&images),
            });
        }
    }
    let dir = version_dir.join(WARMUP_DIR);
    if dir.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {WARMUP_DIR}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for path in files {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            let source = format!("{WARMUP_DIR}/{name}");
            let read = || std::fs::read(&path).with_context(|| format!("cannot read {source}"));
            let body = if ext == "json" {
                Bytes::from(read()?)
            } else if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
                instances_body(&[read()?])
            } else {
                tracing::warn!(
                    "ignoring {source}: warm-up files are .json predict bodies or images"
                );
                continue;
            };
            out.push(WarmupRequest { source, body });
        }
    }
    if out.len() > MAX_REQUESTS {
        bail!(
            "{} warm-up requests in assets.extra; at most {MAX_REQUESTS} are allowed",
            out.len()
        );
    }
    Ok(out)
}

fn instances_body(images: &[Vec<u8>]) -> Bytes {
    let instances: Vec<serde_json::Value> = images
        .iter()
        .map(|i| serde_json::json!({"b64": base64::engine::general_purpose::STANDARD.encode(i)}))
        .collect();
    Bytes::from(serde_json::json!({ "instances": instances }).to_string())
}

/// Splits a TFRecord file: each record is a little-endian u64 length, the
/// masked CRC-32C of those 8 bytes, the data, and the masked CRC-32C of the
/// data.
fn tfrecord_records(mut bytes: &[u8]) -> anyhow::Result<Vec<&[u8]>> {
    let mut records = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 12 {
            bail!("truncated record header");
        }
        let (len_bytes, rest) = bytes.split_at(8);
        let len_crc = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if masked_crc32c(len_bytes) != len_crc {
            bail!("record length checksum mismatch");
        }
        let len = u64::from_le_bytes(len_bytes.try_into().context("record length")?);
        let rest = &rest[4..];
        let len = usize::try_from(len)
            .ok()
            .filter(|l| l.checked_add(4).is_some_and(|n| n <= rest.len()))
            .context("truncated record")?;
        let (data, rest) = rest.split_at(len);
        let data_crc = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if masked_crc32c(data) != data_crc {
            bail!("record data checksum mismatch");
        }
        records.push(data);
        bytes = &rest[4..];
        if records.len() > MAX_REQUESTS {
            bail!("more than {MAX_REQUESTS} records");
        }
    }
    Ok(records)
}

/// TFRecord's mask over CRC-32C, so a CRC over data holding CRCs stays
/// well distributed.
fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// A protobuf field as it appears on the wire.
enum Wire<'a> {
    Varint,
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterates over a protobuf message's `(field number, value)` pairs.
fn proto_fields(bytes: &[u8]) -> ProtoFields<'_> {
    ProtoFields { bytes }
}

struct ProtoFields<'a> {
    bytes: &'a [u8],
}

impl<'a> Iterator for ProtoFields<'a> {
    type Item = anyhow::Result<(u64, Wire<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.bytes.is_empty() {
            return None;
        }
        let result = self.field();
        if result.is_err() {
            self.bytes = &[];
        }
        Some(result)
    }
}

impl<'a> ProtoFields<'a> {
    fn field(&mut self) -> anyhow::Result<(u64, Wire<'a>)> {
        let key = varint(&mut self.bytes)?;
        let wire = match key & 7 {
            0 => {
                varint(&mut self.bytes)?;
                Wire::Varint
            }
            w @ (1 | 5) => {
                let n = if w == 1 { 8 } else { 4 };
                if self.bytes.len() < n {
                    bail!("truncated protobuf");
                }
                self.bytes = &self.bytes[n..];
                Wire::Fixed
            }
            2 => {
                let len = usize::try_from(varint(&mut self.bytes)?)
                    .ok()
                    .filter(|l| *l <= self.bytes.len())
                    .context("truncated protobuf")?;
                let (value, rest) = self.bytes.split_at(len);
                self.bytes = rest;
                Wire::Bytes(value)
            }
            w => bail!("unsupported protobuf wire type {w}"),
        };
        Ok((key >> 3, wire))
    }
}

fn varint(bytes: &mut &[u8]) -> anyhow::Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first().context("truncated protobuf")?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    bail!("varint longer than 64 bits")
}

/// The first length-delimited field `number` of a message.
fn sub_message(bytes: &[u8], number: u64) -> anyhow::Result<Option<&[u8]>> {
    for field in proto_fields(bytes) {
        if let (n, Wire::Bytes(b)) = field?
            && n == number
        {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

/// The images of a `PredictionLog { predict_log (6) { request (1) {
/// inputs (2): map<string, TensorProto { string_val (8) }> } } }`.
fn predict_log_images(record: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let log = sub_message(record, 6)?.context(
        "not a predict_log; Vitrine's warm-up runs PredictionLog records with predict_log only",
    )?;
    let request = sub_message(log, 1)?.context("predict_log has no request")?;
    let mut inputs = Vec::new();
    for field in proto_fields(request) {
        if let (2, Wire::Bytes(entry)) = field? {
            let key = sub_message(entry, 1)?
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            let tensor = sub_message(entry, 2)?.unwrap_or_default();
            let mut images = Vec::new();
            for f in proto_fields(tensor) {
                if let (8, Wire::Bytes(b)) = f? {
                    images.push(b.to_vec());
                }
            }
            inputs.push((key, images));
        }
    }
    // The model has one input; prefer it by name if the request names several.
    let pick = inputs
        .iter()
        .position(|(k, _)| k == vitrine_component::api::INPUT_NAME)
        .unwrap_or(0);
    match inputs.into_iter().nth(pick) {
        Some((_, images)) if !images.is_empty() => Ok(images),
        _ => bail!("the request has no string_val images in its inputs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |mut v: u64| loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        };
        put((number << 3) | 2);
        put(bytes.len() as u64);
        out.extend_from_slice(bytes);
        out
    }

    fn record(data: &[u8]) -> Vec<u8> {
        let len = (data.len() as u64).to_le_bytes();
        let mut out = len.to_vec();
        out.extend(masked_crc32c(&len).to_le_bytes());
        out.extend_from_slice(data);
        out.extend(masked_crc32c(data).to_le_bytes());
        out
    }

    fn prediction_log(images: &[&[u8]]) -> Vec<u8> {
        let mut tensor = vec![0x08, 0x07]; // dtype: DT_STRING
        for i in images {
            tensor.extend(field(8, i));
        }
        let mut entry = field(1, b"string_input");
        entry.extend(field(2, &tensor));
        let mut request = field(1, &field(1, b"hf-vit")); // model_spec { name }
        request.extend(field(2, &entry));
        field(6, &field(1, &request))
    }

    use crc32c::crc32c;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn reads_tf_serving_warmup_records_and_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join(WARMUP_DIR)).expect("mkdir");
        let mut file = record(&prediction_log(&[b"img-a", b"img-b"]));
        file.extend(record(&prediction_log(&[b"img-c"])));
        std::fs::write(dir.path().join(TFRECORD_FILE), &file).expect("write");
        std::fs::write(
            dir.path().join(WARMUP_DIR).join("b.json"),
            br#"{"instances":["aGk"]}"#,
        )
        .expect("write");
        std::fs::write(dir.path().join(WARMUP_DIR).join("a.JPG"), b"jpeg").expect("write");
        std::fs::write(dir.path().join(WARMUP_DIR).join("notes.txt"), b"x").expect("write");
        let found = requests(dir.path()).expect("valid");
        let sources: Vec<&str> = found.iter().map(|r| r.source.as_str()).collect();
        assert_eq!(
            sources,
            vec![
                "assets.extra/tf_serving_warmup_requests record 0",
                "assets.extra/tf_serving_warmup_requests record 1",
                "assets.extra/warmup/a.JPG",
                "assets.extra/warmup/b.json",
            ]
        );
        let first: serde_json::Value = serde_json::from_slice(&found[0].body).expect("json");
        assert_eq!(
            first,
            serde_json::json!({"instances": [{"b64": "aW1nLWE="}, {"b64": "aW1nLWI="}]})
        );
        assert_eq!(&found[3].body[..], br#"{"instances":["aGk"]}"#);

        // A flipped byte fails the checksum; a non-predict log is refused.
        let last = file.len() - 6;
        file[last] ^= 1;
        std::fs::write(dir.path().join(TFRECORD_FILE), &file).expect("write");
        let e = format!("{:#}", requests(dir.path()).unwrap_err());
        assert!(e.contains("checksum"), "{e}");
        std::fs::write(dir.path().join(TFRECORD_FILE), record(&field(2, b""))).expect("write");
        let e = format!("{:#}", requests(dir.path()).unwrap_err());
        assert!(e.contains("predict_log"), "{e}");
        assert!(
            requests(&dir.path().join("none"))
                .expect("empty")
                .is_empty()
        );
    }
}
