//! Integration tests of rps-train: the real binary on the real shared data, against the
//! local registry and a real MLflow server.

// Test helpers outside #[test] functions panic on failure too: that is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod evaluation;
mod failures;
mod interrupted;
mod local_registry;
mod mlflow;
mod support;
mod walk_forward;
