//! Integration tests of rps-monitor: the `rps-monitor` binary on a real store of features
//! computed from the shared real data, against a model package trained on them.

// Fixtures and helpers outside #[test] functions panic on setup failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backtest;
mod cli;
mod drift;
mod helpers;
