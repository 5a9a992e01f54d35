//! rps-mlflow: a typed MLflow REST client ([`MlflowClient`]) and the model [`Registry`] the
//! stages use (MLflow when `MLFLOW_TRACKING_URI` is set, else an embedded local directory),
//! and [`source`]: where a model package comes from (a directory or a registry alias) for the
//! server and the drift check, probed and fetched to a directory.
//!
//! The wire contract and its traps are in `docs/MLFLOW.md` at the repository root. This crate does not
//! depend on `rps-core`; binaries classify its errors with [`Error::exit_code`] /
//! [`Error::is_external`] (exit code 4 = MLflow failed after retries).
//!
//! ```no_run
//! # async fn demo() -> rps_mlflow::Result<()> {
//! use rps_mlflow::{Metric, Registry, RunStatus, now_ms};
//! // MLFLOW_TRACKING_URI=http://127.0.0.1:5055 -> MLflow; unset -> ./registry on disk.
//! let reg = Registry::from_env(std::path::Path::new("./registry"))?;
//! let run = reg.start_run("rps", "train", &[("git_commit".into(), "abc123".into())]).await?;
//! reg.log_metrics(&run, &[Metric::new("val_rmse", 412.5, 0, now_ms())]).await?;
//! reg.log_artifact(&run, "models/latest".as_ref(), "model").await?;
//! let v = reg.register(&run, "rps-forecaster", "model").await?;
//! reg.end_run(&run, RunStatus::Finished).await?;
//! reg.set_alias("rps-forecaster", "champion", &v.version).await?;
//! let champion = reg.resolve("models:/rps-forecaster@champion").await?;
//! let dir = reg.download(&champion, "/tmp/champion".as_ref()).await?;
//! # let _ = dir; Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod client;
pub mod error;
pub mod registry;
pub mod source;
pub mod types;

pub use client::{MlflowClient, RetryPolicy, now_ms};
pub use error::{Error, Result};
pub use registry::{
    Dataset, ERROR_TAG, HOST_TAG, LocalRegistry, LocalRun, MlflowRegistry, ModelUri, ModelVersion,
    PID_TAG, Registry, RunHandle,
};
pub use types::{Metric, RunStatus};
