//! TFRecord framing, and the `PredictionLog` records TF Serving's warm-up
//! files (`assets.extra/tf_serving_warmup_requests`) hold in it.
//!
//! A `PredictionLog` is read field by field off the wire rather than
//! through generated types: only `predict_log.request.inputs[*].string_val`
//! matters, and the rest of TF Serving's logging protos need not be
//! declared.

use anyhow::{Context, bail};

/// TF Serving reads at most this many warm-up records; so does Vitrine.
pub const MAX_RECORDS: usize = 1000;

/// Splits a TFRecord file: each record is a little-endian u64 length, the
/// masked CRC-32C of those 8 bytes, the data, and the masked CRC-32C of the
/// data. At most [`MAX_RECORDS`].
pub fn records(mut bytes: &[u8]) -> anyhow::Result<Vec<&[u8]>> {
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
        if records.len() > MAX_RECORDS {
            bail!("more than {MAX_RECORDS} records");
        }
    }
    Ok(records)
}

/// One record framed as [`records`] reads it (for writing warm-up files).
pub fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend(masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend(masked_crc32c(data).to_le_bytes());
    out
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
/// inputs (2): map<string, TensorProto { string_val (8) }> } } }`: those of
/// the input named `input_name` if the request has it, else of its first
/// input.
pub fn predict_log_images<'a>(record: &'a [u8], input_name: &str) -> anyhow::Result<Vec<&'a [u8]>> {
    let log = sub_message(record, 6)?.context(
        "not a predict_log; Vitrine's warm-up runs PredictionLog records with predict_log only",
    )?;
    let request = sub_message(log, 1)?.context("predict_log has no request")?;
    let mut inputs = Vec::new();
    for field in proto_fields(request) {
        if let (2, Wire::Bytes(entry)) = field? {
            let key = sub_message(entry, 1)?.unwrap_or_default();
            let tensor = sub_message(entry, 2)?.unwrap_or_default();
            let mut images = Vec::new();
            for f in proto_fields(tensor) {
                if let (8, Wire::Bytes(b)) = f? {
                    images.push(b);
                }
            }
            inputs.push((key, images));
        }
    }
    // The model has one input; prefer it by name if the request names several.
    let pick = inputs
        .iter()
        .position(|(k, _)| *k == input_name.as_bytes())
        .unwrap_or(0);
    match inputs.into_iter().nth(pick) {
        Some((_, images)) if !images.is_empty() => Ok(images),
        _ => bail!("the request has no string_val images in its inputs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::tensorflow::{DataType, TensorProto};
    use prost::Message;

    /// A `PredictionLog` as TF Serving writes one, by hand: its logging
    /// protos are not declared in this crate. `PredictionLog.predict_log`
    /// (6) and `PredictLog.request` (1) wrap a `PredictRequest`.
    pub(crate) fn prediction_log(images: &[&[u8]]) -> Vec<u8> {
        let request = crate::proto::tensorflow::serving::PredictRequest {
            model_spec: Some(crate::proto::tensorflow::serving::ModelSpec {
                name: "hf-vit".into(),
                ..Default::default()
            }),
            inputs: [(
                "string_input".to_string(),
                TensorProto {
                    dtype: DataType::DtString as i32,
                    tensor_shape: Some(crate::grpc::shape([images.len() as i64])),
                    string_val: images.iter().map(|i| i.to_vec()).collect(),
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        };
        field(6, &field(1, &request.encode_to_vec()))
    }

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_key(
            number as u32,
            prost::encoding::WireType::LengthDelimited,
            &mut out,
        );
        prost::encoding::encode_varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn reads_framed_prediction_logs() {
        let mut file = frame(&prediction_log(&[b"img-a", b"img-b"]));
        file.extend(frame(&prediction_log(&[b"img-c"])));
        let found = records(&file).expect("valid");
        assert_eq!(found.len(), 2);
        assert_eq!(
            predict_log_images(found[0], "string_input").expect("images"),
            [b"img-a", b"img-b"]
        );
        assert_eq!(
            predict_log_images(found[1], "other").expect("the only input"),
            [b"img-c"]
        );
        let e = predict_log_images(&field(2, b""), "string_input").unwrap_err();
        assert!(e.to_string().contains("predict_log"), "{e}");
    }

    #[test]
    fn refuses_hostile_framing() {
        let good = frame(b"data");
        for (bad, why) in [
            (good[..good.len() - 1].to_vec(), "truncated record"),
            (good[..5].to_vec(), "truncated record header"),
            (
                {
                    let mut b = good.clone();
                    b[0] ^= 1;
                    b
                },
                "length checksum",
            ),
            (
                {
                    let mut b = good.clone();
                    b[13] ^= 1;
                    b
                },
                "data checksum",
            ),
        ] {
            let e = records(&bad).unwrap_err().to_string();
            assert!(e.contains(why), "{e} lacks {why}");
        }
        // A length near u64::MAX with a valid CRC must not overflow.
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend(masked_crc32c(&huge).to_le_bytes());
        huge.extend([0; 8]);
        assert!(
            records(&huge)
                .unwrap_err()
                .to_string()
                .contains("truncated record")
        );
        let many: Vec<u8> = (0..=MAX_RECORDS).flat_map(|_| frame(b"")).collect();
        assert!(
            records(&many)
                .unwrap_err()
                .to_string()
                .contains("more than")
        );
    }

    #[test]
    fn refuses_hostile_protobuf() {
        for bad in [
            vec![0x32, 0x05, 0x0a], // predict_log longer than the record
            vec![
                0x32, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
            ],
            vec![0x33],       // wire type 3 (groups)
            vec![0x31, 0x00], // truncated fixed64
        ] {
            assert!(predict_log_images(&bad, "string_input").is_err(), "{bad:?}");
        }
    }
}
