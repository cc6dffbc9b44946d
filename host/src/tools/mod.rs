//! Subcommands besides `serve`.
//!
//! - [`demo`]: the bundled demo model (`vitrine demo-model`, and the one
//!   `serve` writes when no model is given).
//! - [`bench`]: `vitrine bench-native`, the bare native engine on one model.

#[cfg(feature = "tract")]
pub mod bench;
pub mod demo;
