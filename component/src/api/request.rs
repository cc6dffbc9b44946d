//! The predict request body: `instances` or `inputs`, base64 images in
//! their accepted forms, and Vitrine's options.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;

use super::error::ApiError;
use super::limits::{RequestLimits, check_instances, check_json_depth};

/// The signature every Vitrine model serves, as in the blog's SavedModel.
pub const SIGNATURE_NAME: &str = "serving_default";
/// Name of the signature's single input: a batch of encoded images.
pub const INPUT_NAME: &str = "string_input";

/// Row format (`instances`) answers `predictions`; columnar (`inputs`) answers `outputs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Row,
    Columnar,
}

/// A parsed predict request: decoded image bytes plus Vitrine's options.
#[derive(Debug)]
pub struct PredictRequest {
    pub images: Vec<Vec<u8>>,
    pub format: Format,
    /// How many classes to return per image; 1 gives the blog's scalar shape.
    pub top_k: usize,
    /// Also return the raw logits (for parity checks and clients that post-process).
    pub return_logits: bool,
}

impl PredictRequest {
    pub fn parse(body: &[u8], limits: &RequestLimits) -> Result<PredictRequest, ApiError> {
        check_json_depth(body, limits.max_json_depth)?;
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid(format!("request body is not valid JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(ApiError::invalid(
                "request body must be a JSON object with \"instances\" or \"inputs\"",
            ));
        };
        if let Some(sig) = obj.get("signature_name") {
            match sig.as_str() {
                Some(SIGNATURE_NAME) | Some("") => {}
                Some(other) => {
                    return Err(ApiError::invalid(format!(
                        "Serving signature name: \"{other}\" not found in signature def; this model serves \"{SIGNATURE_NAME}\""
                    )));
                }
                None => return Err(ApiError::invalid("\"signature_name\" must be a string")),
            }
        }
        let (format, items) = match (obj.get("instances"), obj.get("inputs")) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "request has both \"instances\" and \"inputs\"; send exactly one",
                ));
            }
            (Some(instances), None) => (Format::Row, instances_list(instances, "instances")?),
            (None, Some(inputs)) => (Format::Columnar, columnar_list(inputs)?),
            (None, None) => {
                return Err(ApiError::invalid(
                    "request body needs \"instances\" (a list of base64 images) or \"inputs\"",
                ));
            }
        };
        if items.is_empty() {
            return Err(ApiError::invalid(
                "\"instances\" is empty; send at least one image",
            ));
        }
        check_instances(items.len(), limits.max_instances, "instances")?;
        let images = items
            .iter()
            .enumerate()
            .map(|(i, item)| image_bytes(item).map_err(|e| prefix(i, e)))
            .collect::<Result<Vec<_>, _>>()?;

        let top_k = match obj.get("top_k") {
            None => default_top_k().min(limits.max_top_k),
            Some(v) => match v.as_u64() {
                Some(k) if k >= 1 && k as usize <= limits.max_top_k => k as usize,
                _ => {
                    return Err(ApiError::invalid(format!(
                        "\"top_k\" must be an integer from 1 to {}",
                        limits.max_top_k
                    )));
                }
            },
        };
        let return_logits = match obj.get("return_logits") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::invalid("\"return_logits\" must be true or false")),
        };
        Ok(PredictRequest {
            images,
            format,
            top_k,
            return_logits,
        })
    }
}

/// Classes per image when a request does not say: 1, the blog's scalar
/// shape, unless the component was built with `VITRINE_DEFAULT_TOP_K` set
/// (a build-time choice: a different default is a different component).
pub fn default_top_k() -> usize {
    option_env!("VITRINE_DEFAULT_TOP_K")
        .and_then(|k| k.parse().ok())
        .filter(|k| *k >= 1)
        .unwrap_or(1)
}

fn prefix(index: usize, e: ApiError) -> ApiError {
    ApiError {
        status: e.status,
        message: format!("instance {index}: {}", e.message),
    }
}

fn instances_list<'a>(v: &'a Value, field: &str) -> Result<&'a Vec<Value>, ApiError> {
    v.as_array()
        .ok_or_else(|| ApiError::invalid(format!("\"{field}\" must be a list of base64 images")))
}

/// Columnar `inputs` is either the list itself or `{"<input name>": [...]}`.
fn columnar_list(v: &Value) -> Result<&Vec<Value>, ApiError> {
    match v {
        Value::Array(a) => Ok(a),
        Value::Object(o) if o.len() == 1 => o
            .values()
            .next()
            .and_then(Value::as_array)
            .ok_or_else(|| ApiError::invalid("\"inputs\" must map the input name to a list")),
        _ => Err(ApiError::invalid(format!(
            "\"inputs\" must be a list of base64 images or {{\"{INPUT_NAME}\": [...]}}"
        ))),
    }
}

/// An instance is a base64 string, `{"b64": "..."}`, or `{"<input name>": either}`.
fn image_bytes(item: &Value) -> Result<Vec<u8>, ApiError> {
    match item {
        Value::String(s) => decode_base64(s),
        Value::Object(o) => {
            if let Some(b) = o.get("b64") {
                return match b.as_str() {
                    Some(s) => decode_base64(s),
                    None => Err(ApiError::invalid("\"b64\" must be a string")),
                };
            }
            match (o.len(), o.values().next()) {
                (1, Some(inner @ (Value::String(_) | Value::Object(_)))) => image_bytes(inner),
                _ => Err(ApiError::invalid(format!(
                    "an instance object must be {{\"b64\": \"...\"}} or {{\"{INPUT_NAME}\": \"...\"}}"
                ))),
            }
        }
        other => Err(ApiError::invalid(format!(
            "an instance must be a base64 string or {{\"b64\": \"...\"}}, got {}",
            kind(other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);

/// Accepts URL-safe base64 (the blog's `urlsafe_b64encode`) and standard base64,
/// padded or not.
pub fn decode_base64(s: &str) -> Result<Vec<u8>, ApiError> {
    let s = s.trim();
    let engine = if s.contains(['-', '_']) {
        &URL_SAFE
    } else {
        &STANDARD
    };
    engine.decode(s).map_err(|e| {
        ApiError::invalid(format!(
            "image is not valid base64 ({e}); send the encoded image bytes as standard or URL-safe base64"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::limits::MAX_INSTANCES_FLAG;

    fn parse(body: &str) -> Result<PredictRequest, ApiError> {
        PredictRequest::parse(body.as_bytes(), &RequestLimits::default())
    }

    #[test]
    fn instance_forms() {
        // "hi?" is aGk/ in standard base64 and aGk_ in URL-safe base64;
        // "hi" is aGk= padded and aGk unpadded.
        let r =
            parse(r#"{"signature_name":"serving_default","instances":["aGk_","aGk/"," aGk/\n"]}"#);
        let r = r.expect("valid");
        assert_eq!(r.format, Format::Row);
        assert_eq!(r.images, vec![b"hi?".to_vec(); 3]);
        let r = parse(r#"{"instances":["aGk=","aGk"]}"#).expect("valid");
        assert_eq!(r.images, vec![b"hi".to_vec(); 2]);
        let r =
            parse(r#"{"instances":[{"b64":"aGk_"},{"string_input":{"b64":"aGk/"}},{"x":"aGk_"}]}"#)
                .expect("valid");
        assert_eq!(r.images, vec![b"hi?".to_vec(); 3]);
        let r = parse(r#"{"inputs":{"string_input":["aGk_"]},"top_k":5,"return_logits":true}"#)
            .expect("valid");
        assert_eq!(
            (r.format, r.top_k, r.return_logits),
            (Format::Columnar, 5, true)
        );
    }

    #[test]
    fn bad_requests() {
        let cases = [
            ("not json", "not valid JSON"),
            ("[1]", "JSON object"),
            (r#"{"instances":"abc"}"#, "must be a list"),
            (r#"{"instances":[]}"#, "empty"),
            (r#"{"instances":[1]}"#, "got a number"),
            (
                r#"{"instances":["!!!"]}"#,
                "instance 0: image is not valid base64",
            ),
            (r#"{"instances":["aGk-","aGk/+"]}"#, "instance 1"),
            (
                r#"{"signature_name":"other","instances":["aGk"]}"#,
                "not found in signature def",
            ),
            (r#"{"inputs":["aGk"],"instances":["aGk"]}"#, "exactly one"),
            (r#"{"instances":["aGk"],"top_k":0}"#, "top_k"),
            (r#"{"instances":["aGk"],"top_k":"3"}"#, "top_k"),
            (r#"{}"#, "needs \"instances\""),
        ];
        for (body, want) in cases {
            let e = parse(body).expect_err(body);
            assert_eq!(e.status, 400, "{body}");
            assert!(e.message.contains(want), "{body}: {}", e.message);
        }
        let many = format!(r#"{{"instances":[{}]}}"#, vec!["\"aGk\""; 65].join(","));
        let e = parse(&many).unwrap_err();
        assert!(e.message.contains("limit is 64"), "{}", e.message);
        assert!(e.message.contains(MAX_INSTANCES_FLAG), "{}", e.message);
    }
}
