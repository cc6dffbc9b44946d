//! An error in the API's own shape, `{"error": "..."}` with an HTTP status,
//! shared by every route the component answers.

use super::version::VersionSelector;

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
