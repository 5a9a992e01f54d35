//! The registry backed by an MLflow server (runs, artifacts through the proxy, model
//! versions and aliases), on top of [`MlflowClient`].

use std::path::{Path, PathBuf};

use super::{Dataset, ModelVersion, RunHandle, pairs_to_tags};
use crate::client::{MlflowClient, clean_rel_path, now_ms};
use crate::error::{Error, Result};
use crate::types::{Metric, ModelVersionInfo, Param, RunStatus};

/// The registry on an MLflow tracking server.
#[derive(Debug, Clone)]
pub struct MlflowRegistry {
    client: MlflowClient,
}

fn to_version(v: ModelVersionInfo) -> ModelVersion {
    ModelVersion {
        name: v.name,
        version: v.version,
        run_id: v.run_id,
        source: v.source,
    }
}

impl MlflowRegistry {
    /// The registry on the server `client` talks to.
    pub fn new(client: MlflowClient) -> Self {
        MlflowRegistry { client }
    }

    /// The underlying REST client (for reads the registry does not wrap).
    pub fn client(&self) -> &MlflowClient {
        &self.client
    }

    /// `MLflow at <base URL>`, for messages and reports.
    pub fn describe(&self) -> String {
        format!(
            "MLflow at {}",
            rps_core::redact::url(self.client.base_url())
        )
    }

    pub(crate) async fn start_run(
        &self,
        experiment: &str,
        run_name: &str,
        tags: &[(String, String)],
    ) -> Result<RunHandle> {
        let exp = self.client.get_or_create_experiment(experiment).await?;
        let run = self
            .client
            .create_run(&exp, run_name, &pairs_to_tags(tags), now_ms())
            .await?;
        tracing::info!(run_id = %run.info.run_id, experiment, experiment_id = %exp, "MLflow run started");
        Ok(RunHandle {
            run_id: run.info.run_id,
            experiment_id: exp,
            run_name: run.info.run_name,
            artifact_uri: run.info.artifact_uri,
        })
    }

    pub(crate) async fn log_params(
        &self,
        run: &RunHandle,
        params: &[(String, String)],
    ) -> Result<()> {
        let params: Vec<Param> = params.iter().map(|(k, v)| Param::new(k, v)).collect();
        self.client
            .log_batch(&run.run_id, &[], &params, &[])
            .await?;
        Ok(())
    }

    pub(crate) async fn log_metrics(&self, run: &RunHandle, metrics: &[Metric]) -> Result<()> {
        self.client
            .log_batch(&run.run_id, metrics, &[], &[])
            .await?;
        Ok(())
    }

    pub(crate) async fn set_tags(&self, run: &RunHandle, tags: &[(String, String)]) -> Result<()> {
        self.client
            .log_batch(&run.run_id, &[], &[], &pairs_to_tags(tags))
            .await?;
        Ok(())
    }

    pub(crate) async fn log_input(&self, run: &RunHandle, ds: &Dataset) -> Result<()> {
        self.client.log_inputs(&run.run_id, &[ds.to_input()]).await
    }

    pub(crate) async fn log_artifact(
        &self,
        run: &RunHandle,
        local: &Path,
        artifact_path: &str,
    ) -> Result<()> {
        let files = self
            .client
            .log_artifact(&run.artifact_uri, local, artifact_path)
            .await?;
        tracing::debug!(run_id = %run.run_id, files = files.len(), artifact_path, "artifacts uploaded");
        Ok(())
    }

    pub(crate) async fn end_run(&self, run: &RunHandle, status: RunStatus) -> Result<()> {
        self.client
            .update_run(&run.run_id, status, Some(now_ms()))
            .await?;
        Ok(())
    }

    /// See [`super::Registry::close_orphaned_runs`]: `runs/search` for the experiment's
    /// RUNNING runs, then, for each of a dead trainer, `runs/set-tag` ([`super::ERROR_TAG`])
    /// and `runs/update` (FAILED, end time). The tag goes first, so a run whose update
    /// fails stays RUNNING and is closed by the next sweep rather than FAILED unexplained.
    pub(crate) async fn close_orphaned_runs(
        &self,
        experiment: &str,
        host: &str,
    ) -> Result<Vec<String>> {
        let Some(exp) = self.client.get_experiment_by_name(experiment).await? else {
            return Ok(Vec::new());
        };
        let runs = self
            .client
            .search_runs(&[exp.experiment_id], "attributes.status = 'RUNNING'")
            .await?;
        let mut closed = Vec::new();
        for run in runs {
            if run.info.status() != Some(RunStatus::Running) {
                continue;
            }
            let Some(pid) = super::dead_trainer(|k| run.data.tag(k), host) else {
                continue;
            };
            let id = &run.info.run_id;
            self.client
                .set_tag(id, super::ERROR_TAG, &super::orphan_message(pid, host))
                .await?;
            self.client
                .update_run(id, RunStatus::Failed, Some(now_ms()))
                .await?;
            closed.push(run.info.run_id);
        }
        closed.sort();
        Ok(closed)
    }

    pub(crate) async fn register(
        &self,
        run: &RunHandle,
        model_name: &str,
        artifact_path: &str,
    ) -> Result<ModelVersion> {
        let rel = clean_rel_path(artifact_path)?;
        // The server registers any path, even an empty one; refuse that here so a version
        // always has a package behind it.
        if self
            .client
            .list_artifacts(&run.run_id, Some(&rel))
            .await?
            .is_empty()
        {
            return Err(Error::NotFound {
                what: format!("artifact directory '{rel}' of run {}", run.run_id),
            });
        }
        self.client.create_registered_model(model_name).await?;
        let source = format!("{}/{rel}", run.artifact_uri.trim_end_matches('/'));
        let v = self
            .client
            .create_model_version(model_name, &source, &run.run_id)
            .await?;
        tracing::info!(model = model_name, version = %v.version, %source, "model version registered");
        Ok(to_version(v))
    }

    pub(crate) async fn set_alias(&self, model: &str, alias: &str, version: &str) -> Result<()> {
        self.client
            .set_alias(model, alias, version)
            .await
            .map_err(|e| {
                if e.is_not_found() {
                    Error::NotFound {
                        what: format!("version {version} of model '{model}'"),
                    }
                } else {
                    e
                }
            })
    }

    pub(crate) async fn get_alias(&self, model: &str, alias: &str) -> Result<Option<ModelVersion>> {
        match self.client.get_alias(model, alias).await {
            Ok(v) => Ok(v.map(to_version)),
            // No such model yet: no version carries the alias.
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn delete_alias(&self, model: &str, alias: &str) -> Result<()> {
        match self.client.delete_alias(model, alias).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    pub(crate) async fn get_version(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<ModelVersion>> {
        match self.client.get_model_version(model, version).await {
            Ok(v) => Ok(Some(to_version(v))),
            Err(e) if e.is_not_found() => Ok(None),
            // A non-numeric version is a 400, which for a lookup means "no such version".
            Err(e) if e.error_code() == Some("INVALID_PARAMETER_VALUE") => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn download(&self, mv: &ModelVersion, dest: &Path) -> Result<PathBuf> {
        let files = self.client.download_artifacts(&mv.source, dest).await?;
        tracing::info!(model = %mv.name, version = %mv.version, files = files.len(), dest = %dest.display(), "model downloaded");
        Ok(dest.to_path_buf())
    }
}
