//! Integration tests of rps-mlflow: the REST client and the registry against the real
//! MLflow server (`RPS_TEST_MLFLOW_URI`, started by `.ci/services start`), and the local
//! registry on a temp directory.

// Test helpers (not only #[test] fns) panic on failure by design.
#![allow(clippy::unwrap_used)]

mod common;
mod local_registry;
mod mlflow_client;
mod mlflow_registry;
