//! Why an inference gave no logits, and the prefix the host marks overload with.

/// Starts the `wasi:nn` error data of a host whose batch queue is full; the
/// component answers it with 503 (see `wit/README.md`). Shared by both sides.
pub const OVERLOADED_PREFIX: &str = "resource exhausted:";

/// Why an inference gave no logits.
#[derive(Debug)]
pub enum InferenceError {
    /// The host's batch queue is full: try again shortly.
    Overloaded(String),
    Failed(String),
}
