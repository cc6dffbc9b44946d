//! TF Serving's REST API: URL routes, the predict request body, replies and errors.
//!
//! Both the component and the host parse routes with [`Route::parse`], so a
//! path means the same thing wherever it is answered.
//!
//! - `route`: `/v1/models/...` paths, [`Route`];
//! - `version`: [`VersionSelector`], the version a request names;
//! - `request`: the predict body, [`PredictRequest`], and base64 images;
//! - `limits`: [`RequestLimits`] and the checks that bound a body before parsing;
//! - `reply`: predictions and status in TF Serving's JSON;
//! - `error`: [`ApiError`], the `{"error": ...}` every route answers with.

mod error;
mod limits;
mod reply;
mod request;
mod route;
mod version;

pub use self::error::ApiError;
pub use self::limits::{
    DEFAULT_MAX_INSTANCES, DEFAULT_MAX_JSON_DEPTH, MAX_INSTANCES_ENV, MAX_INSTANCES_FLAG,
    MAX_JSON_DEPTH_CEILING, MAX_JSON_DEPTH_ENV, MAX_JSON_DEPTH_FLAG, RequestLimits,
    check_instances, check_json_depth, env_limit,
};
pub use self::reply::{Prediction, VersionStatus, predict_reply, status_reply};
pub use self::request::{
    Format, INPUT_NAME, PredictRequest, SIGNATURE_NAME, decode_base64, default_top_k,
};
pub use self::route::{Action, Route};
pub use self::version::VersionSelector;
