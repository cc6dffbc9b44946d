//! Configuration: what the operator says on the command line and in TF
//! Serving's config files.
//!
//! - [`cli`]: flags, in TF Serving's names.
//! - [`limits`]: limits on hostile input and slow clients, from the flags.
//! - [`textproto`]: protobuf's text format, for TF Serving's config files
//!   (prost-reflect against `host/proto`).

pub mod cli;
pub mod limits;
pub mod textproto;

/// The machine's cores: the default for every "0 = one per core" flag.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
