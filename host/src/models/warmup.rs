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
//! file and the reply in its status. Before them, the pool runs one
//! synthetic image on its first instance (the component's `/vitrine/warmup`).

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;
use bytes::Bytes;
use vitrine_wire::tfrecord;

/// TF Serving reads at most this many warm-up records; so does Vitrine.
pub const MAX_REQUESTS: usize = tfrecord::MAX_RECORDS;

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
        for (i, record) in tfrecord::records(&bytes)
            .with_context(|| format!("{TFRECORD_FILE} is not a valid TFRecord file"))?
            .into_iter()
            .enumerate()
        {
            let images = tfrecord::predict_log_images(record, vitrine_component::api::INPUT_NAME)
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

fn instances_body<I: AsRef<[u8]>>(images: &[I]) -> Bytes {
    let instances: Vec<serde_json::Value> = images
        .iter()
        .map(|i| serde_json::json!({"b64": base64::engine::general_purpose::STANDARD.encode(i)}))
        .collect();
    Bytes::from(serde_json::json!({ "instances": instances }).to_string())
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
        tfrecord::frame(data)
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
