//! Integration tests of rps-serve: the real server on port 0 over HTTP, with a model package
//! trained on the shared real data, a real store, a real local registry, and the real
//! Prometheus/promtool binaries from Debian's `prometheus` package.

// Fixtures and helpers outside #[test] functions panic on setup failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod calibration;
mod cli;
mod drift;
mod helpers;
mod hostile;
mod monitoring;
mod prometheus;
mod protocols;
mod reload;
mod routes;
