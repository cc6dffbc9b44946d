//! Configuration: what the operator says on the command line and in TF
//! Serving's config files.
//!
//! - [`cli`]: flags, in TF Serving's names.
//! - [`limits`]: limits on hostile input and slow clients, from the flags.
//!
//! The config files' text format is read by `vitrine_wire::textproto`.

pub mod cli;
pub mod limits;

/// The machine's cores: the default for every "0 = one per core" flag.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
