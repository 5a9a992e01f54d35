//! The tracking side of a training run behind one trait: starting and ending the run, its
//! params, metrics, tags, inputs and artifacts, registering the model and moving aliases.
//! [`rps_mlflow::Registry`] implements it for both backends (MLflow over REST and the local
//! registry); the steps in [`crate::steps`] only see a [`Tracker`], so a test can record
//! what they log without a server.

use std::future::Future;
use std::path::{Path, PathBuf};

use rps_mlflow::{Dataset, Metric, ModelVersion, Registry, Result, RunHandle, RunStatus};

/// Where a training run is tracked and its model registered. The futures are `Send`, so a
/// step can run on any tokio worker.
pub trait Tracker {
    /// One line for logs: which backend and where.
    fn describe(&self) -> String;

    /// Starts a run (RUNNING) in `experiment` (created if missing) with `tags`.
    fn start_run(
        &self,
        experiment: &str,
        run_name: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<RunHandle>> + Send;

    /// Closes the RUNNING runs of `experiment` whose trainer on `host` is gone; their ids.
    fn close_orphaned_runs(
        &self,
        experiment: &str,
        host: &str,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Logs write-once params.
    fn log_params(
        &self,
        run: &RunHandle,
        params: &[(String, String)],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Logs metric points.
    fn log_metrics(
        &self,
        run: &RunHandle,
        metrics: &[Metric],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Sets (or overwrites) run tags.
    fn set_tags(
        &self,
        run: &RunHandle,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Logs a dataset as an input of the run.
    fn log_input(&self, run: &RunHandle, ds: &Dataset) -> impl Future<Output = Result<()>> + Send;

    /// Stores a file or a directory's contents under `artifact_path`.
    fn log_artifact(
        &self,
        run: &RunHandle,
        local: &Path,
        artifact_path: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Ends the run with `status`.
    fn end_run(
        &self,
        run: &RunHandle,
        status: RunStatus,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Registers the run's `artifact_path` as the next version of `model_name`.
    fn register(
        &self,
        run: &RunHandle,
        model_name: &str,
        artifact_path: &str,
    ) -> impl Future<Output = Result<ModelVersion>> + Send;

    /// Points `alias` of `model` at `version`.
    fn set_alias(
        &self,
        model: &str,
        alias: &str,
        version: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The version `alias` of `model` points at, if any.
    fn get_alias(
        &self,
        model: &str,
        alias: &str,
    ) -> impl Future<Output = Result<Option<ModelVersion>>> + Send;

    /// Copies a version's package files into `dest` and returns it.
    fn download(
        &self,
        mv: &ModelVersion,
        dest: &Path,
    ) -> impl Future<Output = Result<PathBuf>> + Send;
}

impl Tracker for Registry {
    fn describe(&self) -> String {
        Registry::describe(self)
    }

    async fn start_run(
        &self,
        experiment: &str,
        run_name: &str,
        tags: &[(String, String)],
    ) -> Result<RunHandle> {
        Registry::start_run(self, experiment, run_name, tags).await
    }

    async fn close_orphaned_runs(&self, experiment: &str, host: &str) -> Result<Vec<String>> {
        Registry::close_orphaned_runs(self, experiment, host).await
    }

    async fn log_params(&self, run: &RunHandle, params: &[(String, String)]) -> Result<()> {
        Registry::log_params(self, run, params).await
    }

    async fn log_metrics(&self, run: &RunHandle, metrics: &[Metric]) -> Result<()> {
        Registry::log_metrics(self, run, metrics).await
    }

    async fn set_tags(&self, run: &RunHandle, tags: &[(String, String)]) -> Result<()> {
        Registry::set_tags(self, run, tags).await
    }

    async fn log_input(&self, run: &RunHandle, ds: &Dataset) -> Result<()> {
        Registry::log_input(self, run, ds).await
    }

    async fn log_artifact(&self, run: &RunHandle, local: &Path, artifact_path: &str) -> Result<()> {
        Registry::log_artifact(self, run, local, artifact_path).await
    }

    async fn end_run(&self, run: &RunHandle, status: RunStatus) -> Result<()> {
        Registry::end_run(self, run, status).await
    }

    async fn register(
        &self,
        run: &RunHandle,
        model_name: &str,
        artifact_path: &str,
    ) -> Result<ModelVersion> {
        Registry::register(self, run, model_name, artifact_path).await
    }

    async fn set_alias(&self, model: &str, alias: &str, version: &str) -> Result<()> {
        Registry::set_alias(self, model, alias, version).await
    }

    async fn get_alias(&self, model: &str, alias: &str) -> Result<Option<ModelVersion>> {
        Registry::get_alias(self, model, alias).await
    }

    async fn download(&self, mv: &ModelVersion, dest: &Path) -> Result<PathBuf> {
        Registry::download(self, mv, dest).await
    }
}
