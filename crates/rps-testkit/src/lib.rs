//! rps-testkit: what the workspace's tests share, and nothing production code may use (it is
//! only ever a dev-dependency).
//!
//! - [`fixture`]: the one reader of the real hourly BTC file committed under `tests/data/`;
//! - [`bars`]: builders for small synthetic hourly series;
//! - `model` (cargo feature `model`): a small model package trained on the fixture by
//!   rps-train's library, once per test process;
//! - [`process`]: a guard that kills and reaps a spawned binary when dropped, on a panic too;
//! - [`service`]: the one way a test requires a real service (S3, MLflow, promtool). Such
//!   tests are `#[ignore = "needs …; scripts/test starts it"]`, so `cargo test` on a fresh
//!   clone passes and lists them as ignored, and `scripts/test` runs them with
//!   `--include-ignored` after starting the services. A required service that is missing is
//!   a failure, never a silent pass.

#![deny(missing_docs)]
#![allow(clippy::unwrap_used)]

pub mod bars;
pub mod fixture;
#[cfg(feature = "model")]
pub mod model;
pub mod process;
pub mod service;

pub use process::ChildGuard;
