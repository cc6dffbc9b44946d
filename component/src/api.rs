//! TF Serving's REST API: URL routes, the predict request body, replies and errors.
//!
//! Both the component and the host parse routes with [`Route::parse`], so a
//! path means the same thing wherever it is answered.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Serialize;
use serde_json::Value;

/// The signature every Vitrine model serves, as in the blog's SavedModel.
pub const SIGNATURE_NAME: &str = "serving_default";
/// Name of the signature's single input: a batch of encoded images.
pub const INPUT_NAME: &str = "string_input";

/// Which version of a model a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSelector {
    Latest,
    Number(u64),
    Label(String),
}

impl VersionSelector {
    /// How TF Serving names the request in its "Servable not found" errors.
    pub fn describe(&self, model: &str) -> String {
        match self {
            VersionSelector::Latest => format!("Latest({model})"),
            VersionSelector::Number(v) => format!("Specific({model}, {v})"),
            VersionSelector::Label(l) => format!("Label({model}, {l})"),
        }
    }
}

/// What a `/v1/models/...` path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Status,
    Metadata,
    Predict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub model: String,
    pub version: VersionSelector,
    pub action: Action,
}

impl Route {
    /// Parses TF Serving's REST paths:
    /// `/v1/models/{m}[/versions/{v} | /labels/{l}][:predict | /metadata]`.
    pub fn parse(path: &str) -> Result<Route, ApiError> {
        let path = path.split('?').next().unwrap_or_default();
        let rest = path
            .strip_prefix("/v1/models/")
            .ok_or_else(|| ApiError::not_found(format!("no such endpoint: {path}")))?;
        let malformed = || {
            ApiError::not_found(format!(
                "malformed request path {path}: expected /v1/models/<name>[/versions/<n>][:predict|/metadata]"
            ))
        };
        let (rest, action) = match rest.strip_suffix(":predict") {
            Some(r) => (r, Action::Predict),
            None => match rest.strip_suffix("/metadata") {
                Some(r) => (r, Action::Metadata),
                None => (rest.trim_end_matches('/'), Action::Status),
            },
        };
        if rest.contains(':') {
            let verb = rest.rsplit(':').next().unwrap_or_default();
            return Err(ApiError::not_found(format!(
                "unsupported method :{verb}; this server answers :predict"
            )));
        }
        let segments: Vec<&str> = rest.split('/').collect();
        let (model, version) = match segments.as_slice() {
            [m] => (*m, VersionSelector::Latest),
            [m, "versions", v] => {
                let n = v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ApiError::invalid(format!("version must be a positive integer, got {v:?}"))
                })?;
                (*m, VersionSelector::Number(n))
            }
            [m, "labels", l] if !l.is_empty() => (*m, VersionSelector::Label((*l).to_string())),
            _ => return Err(malformed()),
        };
        if model.is_empty() {
            return Err(malformed());
        }
        Ok(Route {
            model: model.to_string(),
            version,
            action,
        })
    }
}

/// An error in the API's own shape: `{"error": "..."}` with an HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: 404,
            message: message.into(),
        }
    }
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self {
            status: 405,
            message: message.into(),
        }
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self {
            status: 413,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: 500,
            message: message.into(),
        }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: 503,
            message: message.into(),
        }
    }
    pub fn servable_not_found(model: &str, version: &VersionSelector) -> Self {
        Self::not_found(format!(
            "Servable not found for request: {}",
            version.describe(model)
        ))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "error": self.message }))
            .unwrap_or_else(|_| br#"{"error":"internal error"}"#.to_vec())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for ApiError {}

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

/// Bounds on what a predict body may contain.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    pub max_instances: usize,
    pub max_top_k: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_instances: 64,
            max_top_k: 1000,
        }
    }
}

impl PredictRequest {
    pub fn parse(body: &[u8], limits: &RequestLimits) -> Result<PredictRequest, ApiError> {
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
        if items.len() > limits.max_instances {
            return Err(ApiError::invalid(format!(
                "{} instances in one request; the limit is {}. Split the batch into several requests",
                items.len(),
                limits.max_instances
            )));
        }
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

/// One image's answer. `label`/`confidence` are scalars for top-1 (the blog's
/// shape) and lists for top-k.
#[derive(Debug, Serialize)]
pub struct Prediction {
    pub label: Value,
    pub confidence: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logits: Option<Vec<f32>>,
}

/// JSON number with f32's shortest decimal form (0.8966, not 0.89660000801).
fn f32_value(x: f32) -> Value {
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

impl Prediction {
    pub fn new(top: &[(String, f32)], logits: Option<Vec<f32>>) -> Prediction {
        let (label, confidence) = match top {
            [(l, c)] => (Value::from(l.as_str()), f32_value(*c)),
            _ => (
                top.iter().map(|(l, _)| Value::from(l.as_str())).collect(),
                top.iter().map(|(_, c)| f32_value(*c)).collect(),
            ),
        };
        Prediction {
            label,
            confidence,
            logits,
        }
    }
}

/// Serializes predictions in the request's format.
pub fn predict_reply(format: Format, predictions: Vec<Prediction>) -> Vec<u8> {
    let value = match format {
        Format::Row => serde_json::json!({ "predictions": predictions }),
        Format::Columnar => {
            let mut labels = Vec::with_capacity(predictions.len());
            let mut confidences = Vec::with_capacity(predictions.len());
            let mut logits = Vec::new();
            for p in predictions {
                labels.push(p.label);
                confidences.push(p.confidence);
                if let Some(l) = p.logits {
                    logits.push(l);
                }
            }
            let mut outputs = serde_json::json!({ "label": labels, "confidence": confidences });
            if !logits.is_empty() {
                outputs["logits"] = serde_json::json!(logits);
            }
            serde_json::json!({ "outputs": outputs })
        }
    };
    serde_json::to_vec(&value).unwrap_or_else(|_| b"{}".to_vec())
}

/// TF Serving's `GetModelStatus` reply for REST.
pub fn status_reply(versions: &[VersionStatus]) -> Vec<u8> {
    let list: Vec<Value> = versions
        .iter()
        .map(|v| {
            serde_json::json!({
                "version": v.version.to_string(),
                "state": v.state,
                "status": {
                    "error_code": if v.error.is_some() { "UNKNOWN" } else { "OK" },
                    "error_message": v.error.clone().unwrap_or_default(),
                }
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "model_version_status": list }))
        .unwrap_or_else(|_| b"{}".to_vec())
}

/// One version's entry in a status reply.
#[derive(Debug, Clone)]
pub struct VersionStatus {
    pub version: u64,
    /// TF Serving's states: START, LOADING, AVAILABLE, UNLOADING, END.
    pub state: &'static str,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(p: &str) -> Route {
        Route::parse(p).expect(p)
    }

    #[test]
    fn routes() {
        assert_eq!(
            route("/v1/models/hf-vit:predict"),
            Route {
                model: "hf-vit".into(),
                version: VersionSelector::Latest,
                action: Action::Predict
            }
        );
        assert_eq!(
            route("/v1/models/hf-vit/versions/3:predict").version,
            VersionSelector::Number(3)
        );
        assert_eq!(
            route("/v1/models/m/labels/stable:predict").version,
            VersionSelector::Label("stable".into())
        );
        assert_eq!(route("/v1/models/m/metadata").action, Action::Metadata);
        assert_eq!(
            route("/v1/models/m/versions/2/metadata").version,
            VersionSelector::Number(2)
        );
        assert_eq!(route("/v1/models/m").action, Action::Status);
        assert_eq!(route("/v1/models/m/versions/7").action, Action::Status);
        assert_eq!(
            Route::parse("/v1/models/m/versions/x:predict")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            Route::parse("/v1/models/m/versions/0:predict")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            Route::parse("/v1/models/m:classify").unwrap_err().status,
            404
        );
        assert_eq!(Route::parse("/v2/models/m").unwrap_err().status, 404);
        assert_eq!(Route::parse("/v1/models/:predict").unwrap_err().status, 404);
        assert_eq!(Route::parse("/v1/models/a/b/c/d").unwrap_err().status, 404);
    }

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
        assert!(parse(&many).unwrap_err().message.contains("limit is 64"));
    }

    #[test]
    fn reply_shapes() {
        let top1 = Prediction::new(&[("Egyptian cat".into(), 0.5)], None);
        let body = predict_reply(Format::Row, vec![top1]);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"predictions":[{"confidence":0.5,"label":"Egyptian cat"}]}"#
        );
        let top2 = Prediction::new(&[("a".into(), 0.5), ("b".into(), 0.25)], Some(vec![1.0]));
        let v: Value =
            serde_json::from_slice(&predict_reply(Format::Columnar, vec![top2])).unwrap();
        assert_eq!(v["outputs"]["label"], serde_json::json!([["a", "b"]]));
        assert_eq!(v["outputs"]["logits"], serde_json::json!([[1.0]]));
        assert_eq!(
            ApiError::invalid("x").to_json(),
            br#"{"error":"x"}"#.to_vec()
        );
    }
}
