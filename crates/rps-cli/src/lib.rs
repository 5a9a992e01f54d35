//! rps-cli: what the stage binaries share and libraries must not pull in — the common flags
//! (`--store`, `--log-format`), the one `--coins` argument type, the tracing subscriber, and
//! the mapping of an error chain to a one-line message and an exit code (crates/rps-core/src/exit.rs).
//!
//! Only `main.rs` files depend on this crate (clap, anyhow and tracing-subscriber stay out
//! of the libraries).

#![deny(missing_docs)]

pub mod args;
pub mod exit;
#[cfg(feature = "model")]
pub mod model;
pub mod telemetry;

pub use args::{CoinList, CommonArgs};
pub use exit::{finish, say};
#[cfg(feature = "model")]
pub use model::ModelArgs;
pub use telemetry::LogFormat;
