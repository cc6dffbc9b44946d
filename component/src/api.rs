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

/// Bounds on what a request body may contain. The `vitrine` host sets them
/// from its flags through the component's environment, so Spin's
/// `[component.environment]` and `wasmtime serve --env` set them the same way.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Images per request: `--max_instances_per_request`, [`MAX_INSTANCES_ENV`].
    pub max_instances: usize,
    pub max_top_k: usize,
    /// Nesting of JSON arrays and objects: `--max_json_depth`, [`MAX_JSON_DEPTH_ENV`].
    pub max_json_depth: usize,
}

pub const MAX_INSTANCES_ENV: &str = "VITRINE_MAX_INSTANCES";
pub const MAX_INSTANCES_FLAG: &str = "--max_instances_per_request";
pub const DEFAULT_MAX_INSTANCES: usize = 64;
pub const MAX_JSON_DEPTH_ENV: &str = "VITRINE_MAX_JSON_DEPTH";
pub const MAX_JSON_DEPTH_FLAG: &str = "--max_json_depth";
/// A predict body needs 4 levels, a KServe v2 body with pixel tensors 8.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 32;
/// serde_json refuses deeper nesting (its recursion limit) whatever the
/// limit says.
pub const MAX_JSON_DEPTH_CEILING: usize = 127;

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_instances: DEFAULT_MAX_INSTANCES,
            max_top_k: 1000,
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
        }
    }
}

impl RequestLimits {
    /// The limits in the process environment, defaults for those unset.
    pub fn from_env() -> RequestLimits {
        RequestLimits::from_vars(|name| std::env::var(name).ok())
    }

    /// The limits `var` gives by variable name.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> RequestLimits {
        let default = RequestLimits::default();
        RequestLimits {
            max_instances: env_limit(&var, MAX_INSTANCES_ENV, default.max_instances, usize::MAX),
            max_top_k: default.max_top_k,
            max_json_depth: env_limit(
                &var,
                MAX_JSON_DEPTH_ENV,
                default.max_json_depth,
                MAX_JSON_DEPTH_CEILING,
            ),
        }
    }
}

/// A positive integer limit from the variable `name`, at most `max`. An unset
/// variable gives `default`; an unusable one gives `default` too, with a
/// warning on stderr: a typo in a manifest must not take the model down.
pub fn env_limit<T>(var: &impl Fn(&str) -> Option<String>, name: &str, default: T, max: T) -> T
where
    T: std::str::FromStr + PartialOrd + From<u8> + Copy + std::fmt::Display,
{
    let Some(text) = var(name).filter(|v| !v.trim().is_empty()) else {
        return default;
    };
    match text.trim().parse::<T>() {
        Ok(n) if n >= T::from(1) && n <= max => n,
        Ok(n) if n > max => {
            eprintln!("{name}={text} is above the largest allowed, {max}; using {max}");
            max
        }
        _ => {
            eprintln!("{name}={text:?} is not a positive integer; using the default, {default}");
            default
        }
    }
}

/// Refuses more than `limit` images in one request, naming the flag.
pub fn check_instances(count: usize, limit: usize, what: &str) -> Result<(), ApiError> {
    if count <= limit {
        return Ok(());
    }
    Err(ApiError::invalid(format!(
        "{count} {what} in one request; the limit is {limit} ({MAX_INSTANCES_FLAG}, {MAX_INSTANCES_ENV}). Split the batch into several requests"
    )))
}

/// Refuses JSON that nests arrays and objects deeper than `max`, in one pass
/// over the bytes before anything is parsed: the parser's time and stack
/// grow with the nesting, and no valid request nests deeply. Strings are
/// skipped; malformed JSON is left for the parser to describe.
pub fn check_json_depth(body: &[u8], max: usize) -> Result<(), ApiError> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                // Skip to the closing quote; a backslash escapes the next byte.
                i += 1;
                loop {
                    let next = body
                        .get(i..)
                        .and_then(|rest| rest.iter().position(|b| *b == b'"' || *b == b'\\'));
                    match next {
                        Some(offset) if body[i + offset] == b'\\' => i += offset + 2,
                        Some(offset) => {
                            i += offset;
                            break;
                        }
                        // Unterminated: the parser will say so.
                        None => return Ok(()),
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(ApiError::invalid(format!(
                        "request JSON nests arrays and objects more than {max} levels deep; the limit is {max} ({MAX_JSON_DEPTH_FLAG}, {MAX_JSON_DEPTH_ENV})"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
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
        let e = parse(&many).unwrap_err();
        assert!(e.message.contains("limit is 64"), "{}", e.message);
        assert!(e.message.contains(MAX_INSTANCES_FLAG), "{}", e.message);
    }

    #[test]
    fn limits_come_from_the_environment() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let limits = RequestLimits::from_vars(vars(&[]));
        assert_eq!((limits.max_instances, limits.max_json_depth), (64, 32));
        let limits = RequestLimits::from_vars(vars(&[
            (MAX_INSTANCES_ENV, "2"),
            (MAX_JSON_DEPTH_ENV, " 5 "),
        ]));
        assert_eq!((limits.max_instances, limits.max_json_depth), (2, 5));
        // Unusable values fall back to the default; too large ones to the ceiling.
        let limits = RequestLimits::from_vars(vars(&[
            (MAX_INSTANCES_ENV, "0"),
            (MAX_JSON_DEPTH_ENV, "1000"),
        ]));
        assert_eq!((limits.max_instances, limits.max_json_depth), (64, 127));
        let limits = RequestLimits::from_vars(vars(&[(MAX_INSTANCES_ENV, "many")]));
        assert_eq!(limits.max_instances, 64);

        let two = RequestLimits {
            max_instances: 2,
            ..RequestLimits::default()
        };
        let body = br#"{"instances":["aGk","aGk","aGk"]}"#;
        let e = PredictRequest::parse(body, &two).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.message.contains("3 instances") && e.message.contains("limit is 2"),
            "{}",
            e.message
        );
        assert!(PredictRequest::parse(br#"{"instances":["aGk","aGk"]}"#, &two).is_ok());
    }

    #[test]
    fn json_depth_is_checked_before_parsing() {
        let ok = |body: &str, max| check_json_depth(body.as_bytes(), max).is_ok();
        assert!(ok(r#"{"instances":[{"b64":"aGk"}]}"#, 3));
        assert!(!ok(r#"{"instances":[{"b64":"aGk"}]}"#, 2));
        assert!(ok("[[]][[]]", 2), "siblings do not add up");
        // Brackets inside strings, escaped quotes included, are not nesting.
        assert!(ok(r#"["[[[{{{", "\"[[[", "\\"]"#, 1));
        assert!(
            !ok(r#"["\\", [[]]]"#, 2),
            "an escaped backslash ends before the quote"
        );
        // Unterminated strings and stray closers are the parser's to report.
        assert!(ok(r#"["[[[["#, 1));
        assert!(ok("]]]]{", 1));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = parse(&deep).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.message.contains("more than 32 levels deep")
                && e.message.contains(MAX_JSON_DEPTH_FLAG),
            "{}",
            e.message
        );
        // At the ceiling the parser still accepts what the check lets through.
        let at_ceiling = format!(
            r#"{{"instances":["aGk"],"x":{}{}}}"#,
            "[".repeat(MAX_JSON_DEPTH_CEILING - 1),
            "]".repeat(MAX_JSON_DEPTH_CEILING - 1)
        );
        let ceiling = RequestLimits {
            max_json_depth: MAX_JSON_DEPTH_CEILING,
            ..RequestLimits::default()
        };
        assert!(PredictRequest::parse(at_ceiling.as_bytes(), &ceiling).is_ok());
        let past_ceiling = format!(
            r#"{{"instances":["aGk"],"x":{}{}}}"#,
            "[".repeat(MAX_JSON_DEPTH_CEILING),
            "]".repeat(MAX_JSON_DEPTH_CEILING)
        );
        assert!(PredictRequest::parse(past_ceiling.as_bytes(), &ceiling).is_err());
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
