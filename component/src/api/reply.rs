//! Predict and status replies in TF Serving's JSON shapes.

use serde::Serialize;
use serde_json::Value;

use super::request::Format;

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
    use crate::api::error::ApiError;

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
