//! What the handler answers: an HTTP status, body and content type.

use crate::api::ApiError;

/// An HTTP answer: status, body and what the body holds.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// `application/json`, or `application/octet-stream` when binary tensor
    /// data follows a JSON header.
    pub content_type: &'static str,
    /// The JSON header's length when binary tensor data follows it
    /// (KServe's `Inference-Header-Content-Length`).
    pub header_length: Option<usize>,
    /// Images this request ran through the model; the host's batch-size
    /// metric reads it from the `vitrine-batch-size` reply header.
    pub batch_size: Option<usize>,
}

impl Reply {
    pub fn json(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body,
            content_type: "application/json",
            header_length: None,
            batch_size: None,
        }
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        Reply::json(e.status, e.to_json())
    }
}

/// Reply header carrying [`Reply::batch_size`].
pub const BATCH_SIZE_HEADER: &str = "vitrine-batch-size";

pub(super) fn ok(body: Vec<u8>) -> Reply {
    Reply::json(200, body)
}
