//! How the JPEG decoder fails: unsupported features go to the `image` crate,
//! corrupt data is an error.

/// Why this decoder did not produce an image.
pub(in crate::preprocess) enum Failure {
    /// A valid JPEG feature this decoder does not implement.
    Unsupported,
    /// The data is malformed.
    Corrupt(&'static str),
}

pub(super) type Result<T> = std::result::Result<T, Failure>;
