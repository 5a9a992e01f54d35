//! The model registry the stages use: MLflow over REST when `MLFLOW_TRACKING_URI` is set,
//! otherwise an embedded local directory with the same semantics (runs, numbered versions,
//! atomically moved aliases).

mod local;
mod mlflow;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use local::{LocalRegistry, LocalRun};
pub use mlflow::MlflowRegistry;

use crate::error::{Error, Result};
use crate::types::{DatasetInput, DatasetRecord, Metric, RunStatus, Tag};

/// Run tag naming the host a trainer ran on (`/proc/sys/kernel/hostname`).
pub const HOST_TAG: &str = "rps.host";
/// Run tag holding the trainer's process id on [`HOST_TAG`].
pub const PID_TAG: &str = "rps.pid";
/// Run tag saying why a run ended FAILED or KILLED without its trainer finishing it.
pub const ERROR_TAG: &str = "rps.error";

/// The pid of the trainer that left a run open on `host` and no longer runs: the run's
/// [`HOST_TAG`] is `host`, its [`PID_TAG`] a pid that is not ours and not alive
/// ([`rps_core::fs::process_alive`]). `None` for any other run, including runs without
/// those tags (started by something else) and runs of other hosts, whose pids say nothing
/// here.
pub(crate) fn dead_trainer<'a>(tag: impl Fn(&str) -> Option<&'a str>, host: &str) -> Option<u32> {
    if tag(HOST_TAG)? != host {
        return None;
    }
    let pid: u32 = tag(PID_TAG)?.trim().parse().ok()?;
    (pid != std::process::id() && !rps_core::fs::process_alive(pid)).then_some(pid)
}

/// The [`ERROR_TAG`] of a run closed by [`Registry::close_orphaned_runs`].
pub(crate) fn orphan_message(pid: u32, host: &str) -> String {
    format!("orphaned: trainer pid {pid} on {host} is gone")
}

/// A run started by [`Registry::start_run`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHandle {
    /// The run's id (32 hex characters).
    pub run_id: String,
    /// MLflow: the experiment id; local: the experiment name.
    pub experiment_id: String,
    /// The run's display name.
    pub run_name: String,
    /// MLflow: `mlflow-artifacts:/<exp>/<run>/artifacts`; local: the run's artifact directory.
    pub artifact_uri: String,
}

/// A dataset logged as a run input. `digest` is at most 36 characters (MLflow's limit; a
/// longer one is refused, not truncated). `context` (e.g. `training`) becomes the
/// `mlflow.data.context` tag; `schema` and `profile` are JSON strings and may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dataset {
    /// The dataset's name.
    pub name: String,
    /// A content digest, 1 to 36 characters.
    pub digest: String,
    /// The kind of source (`local`, `s3`…).
    pub source_type: String,
    /// Where the data is, as a JSON string (e.g. `{"uri": …}`).
    pub source: String,
    /// The dataset's schema as a JSON string; may be empty.
    pub schema: String,
    /// Summary figures as a JSON string; may be empty.
    pub profile: String,
    /// What the run used it for (`training`); empty = no `mlflow.data.context` tag.
    pub context: String,
}

impl Dataset {
    /// The MLflow wire form.
    pub fn to_input(&self) -> DatasetInput {
        let tags = if self.context.is_empty() {
            Vec::new()
        } else {
            vec![Tag::new("mlflow.data.context", &self.context)]
        };
        DatasetInput {
            tags,
            dataset: DatasetRecord {
                name: self.name.clone(),
                digest: self.digest.clone(),
                source_type: self.source_type.clone(),
                source: self.source.clone(),
                schema: self.schema.clone(),
                profile: self.profile.clone(),
            },
        }
    }
}

/// A registered model version. `version` is a decimal string (`"1"`, `"2"`, ...); `source`
/// is where the package lives (MLflow: an `mlflow-artifacts:` URI; local: the version
/// directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// The registered model's name.
    pub name: String,
    /// The version, a decimal string.
    pub version: String,
    /// The run that produced the version.
    pub run_id: String,
    /// Where the package lives (see above).
    pub source: String,
}

/// A parsed `models:/<name>@<alias>` or `models:/<name>/<version>` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUri {
    /// `models:/<name>@<alias>`.
    Alias {
        /// The registered model's name.
        name: String,
        /// The alias (`champion`).
        alias: String,
    },
    /// `models:/<name>/<version>`.
    Version {
        /// The registered model's name.
        name: String,
        /// The version, all digits.
        version: String,
    },
}

impl ModelUri {
    /// Parses a `models:/` URI (a trailing `/` is ignored); anything else is
    /// [`Error::BadModelUri`].
    pub fn parse(uri: &str) -> Result<ModelUri> {
        let bad = || Error::BadModelUri {
            uri: uri.to_string(),
        };
        let rest = uri.strip_prefix("models:/").ok_or_else(bad)?;
        let rest = rest.trim_end_matches('/');
        if let Some((name, alias)) = rest.rsplit_once('@') {
            if name.is_empty() || alias.is_empty() || name.contains('/') || alias.contains('/') {
                return Err(bad());
            }
            return Ok(ModelUri::Alias {
                name: name.into(),
                alias: alias.into(),
            });
        }
        match rest.rsplit_once('/') {
            Some((name, version))
                if !name.is_empty()
                    && !name.contains('/')
                    && !version.is_empty()
                    && version.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Ok(ModelUri::Version {
                    name: name.into(),
                    version: version.into(),
                })
            }
            _ => Err(bad()),
        }
    }

    /// The registered model's name.
    pub fn name(&self) -> &str {
        match self {
            ModelUri::Alias { name, .. } | ModelUri::Version { name, .. } => name,
        }
    }
}

impl std::fmt::Display for ModelUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelUri::Alias { name, alias } => write!(f, "models:/{name}@{alias}"),
            ModelUri::Version { name, version } => write!(f, "models:/{name}/{version}"),
        }
    }
}

/// Where runs and models go. Both variants have the same semantics; pick one with
/// [`Registry::from_env`].
#[derive(Debug, Clone)]
pub enum Registry {
    /// The embedded registry directory.
    Local(LocalRegistry),
    /// An MLflow tracking server.
    Mlflow(MlflowRegistry),
}

impl Registry {
    /// MLflow when `MLFLOW_TRACKING_URI` is set (retries tuned by the
    /// `MLFLOW_HTTP_REQUEST_*` variables), else the local registry in `local_dir`.
    pub fn from_env(local_dir: &Path) -> Result<Registry> {
        match crate::client::MlflowClient::from_env()? {
            Some(client) => Ok(Registry::Mlflow(MlflowRegistry::new(client))),
            None => Ok(Registry::Local(LocalRegistry::open(local_dir)?)),
        }
    }

    /// The local registry in `dir` (created if needed).
    pub fn local(dir: &Path) -> Result<Registry> {
        Ok(Registry::Local(LocalRegistry::open(dir)?))
    }

    /// MLflow at `tracking_uri` (retries tuned by the `MLFLOW_HTTP_REQUEST_*` variables).
    pub fn mlflow(tracking_uri: &str) -> Result<Registry> {
        Ok(Registry::Mlflow(MlflowRegistry::new(
            crate::client::MlflowClient::new(tracking_uri)?,
        )))
    }

    /// Starts a run (status RUNNING, start time now) in `experiment`, with `tags`. MLflow:
    /// the experiment is looked up by name and created if missing.
    pub async fn start_run(
        &self,
        experiment: &str,
        run_name: &str,
        tags: &[(String, String)],
    ) -> Result<RunHandle> {
        match self {
            Registry::Local(r) => r.start_run(experiment, run_name, tags),
            Registry::Mlflow(r) => r.start_run(experiment, run_name, tags).await,
        }
    }

    /// Params are write-once: the same value again is fine, a different one is an error.
    pub async fn log_params(&self, run: &RunHandle, params: &[(String, String)]) -> Result<()> {
        match self {
            Registry::Local(r) => r.log_params(run, params),
            Registry::Mlflow(r) => r.log_params(run, params).await,
        }
    }

    /// Logs metric points (batched to MLflow's limits). A non-finite value refuses the whole
    /// call before anything is stored.
    pub async fn log_metrics(&self, run: &RunHandle, metrics: &[Metric]) -> Result<()> {
        match self {
            Registry::Local(r) => r.log_metrics(run, metrics),
            Registry::Mlflow(r) => r.log_metrics(run, metrics).await,
        }
    }

    /// Sets (or overwrites) run tags.
    pub async fn set_tags(&self, run: &RunHandle, tags: &[(String, String)]) -> Result<()> {
        match self {
            Registry::Local(r) => r.set_tags(run, tags),
            Registry::Mlflow(r) => r.set_tags(run, tags).await,
        }
    }

    /// Logs a dataset as an input of the run. A (name, digest) pair logged again keeps its
    /// first record.
    pub async fn log_input(&self, run: &RunHandle, ds: &Dataset) -> Result<()> {
        match self {
            Registry::Local(r) => r.log_input(run, ds),
            Registry::Mlflow(r) => r.log_input(run, ds).await,
        }
    }

    /// Stores a file as `<artifact_path>/<file name>`, or a directory's contents
    /// (recursively) under `<artifact_path>/`. `artifact_path` may be empty (the root).
    pub async fn log_artifact(
        &self,
        run: &RunHandle,
        local: &Path,
        artifact_path: &str,
    ) -> Result<()> {
        match self {
            Registry::Local(r) => r.log_artifact(run, local, artifact_path),
            Registry::Mlflow(r) => r.log_artifact(run, local, artifact_path).await,
        }
    }

    /// Ends the run with `status` (FINISHED, FAILED or KILLED) and its end time.
    pub async fn end_run(&self, run: &RunHandle, status: RunStatus) -> Result<()> {
        match self {
            Registry::Local(r) => r.end_run(run, status),
            Registry::Mlflow(r) => r.end_run(run, status).await,
        }
    }

    /// Closes the runs a killed trainer left open: every run of `experiment` with status
    /// RUNNING whose [`HOST_TAG`] is `host` and whose [`PID_TAG`] names a process that is
    /// no longer alive (and is not this one) is marked FAILED with an end time and the tag
    /// [`ERROR_TAG`] = `orphaned: trainer pid <pid> on <host> is gone`. Returns the ids of
    /// the runs closed; an experiment that does not exist has none. Only runs of this host
    /// are judged, because a pid means nothing on another machine, so `host` must name
    /// this process's pid namespace (two containers sharing a hostname would judge each
    /// other's pids).
    pub async fn close_orphaned_runs(&self, experiment: &str, host: &str) -> Result<Vec<String>> {
        match self {
            Registry::Local(r) => r.close_orphaned_runs(experiment, host),
            Registry::Mlflow(r) => r.close_orphaned_runs(experiment, host).await,
        }
    }

    /// Registers the run's artifact directory `artifact_path` as the next version of
    /// `model_name` (created if needed). The directory must exist and hold files.
    pub async fn register(
        &self,
        run: &RunHandle,
        model_name: &str,
        artifact_path: &str,
    ) -> Result<ModelVersion> {
        check_model_name(model_name)?;
        match self {
            Registry::Local(r) => r.register(run, model_name, artifact_path),
            Registry::Mlflow(r) => r.register(run, model_name, artifact_path).await,
        }
    }

    /// Points `alias` at `version` (moving it atomically if it exists). The version must exist.
    pub async fn set_alias(&self, model: &str, alias: &str, version: &str) -> Result<()> {
        check_model_name(model)?;
        check_alias(alias)?;
        match self {
            Registry::Local(r) => r.set_alias(model, alias, version),
            Registry::Mlflow(r) => r.set_alias(model, alias, version).await,
        }
    }

    /// The version `alias` points at; `None` when the alias (or the whole model) does not exist.
    pub async fn get_alias(&self, model: &str, alias: &str) -> Result<Option<ModelVersion>> {
        check_model_name(model)?;
        check_alias(alias)?;
        match self {
            Registry::Local(r) => r.get_alias(model, alias),
            Registry::Mlflow(r) => r.get_alias(model, alias).await,
        }
    }

    /// Removes an alias; a missing one is fine.
    pub async fn delete_alias(&self, model: &str, alias: &str) -> Result<()> {
        check_model_name(model)?;
        check_alias(alias)?;
        match self {
            Registry::Local(r) => r.delete_alias(model, alias),
            Registry::Mlflow(r) => r.delete_alias(model, alias).await,
        }
    }

    /// A version by number; `None` when it (or the model) does not exist.
    pub async fn get_version(&self, model: &str, version: &str) -> Result<Option<ModelVersion>> {
        check_model_name(model)?;
        match self {
            Registry::Local(r) => r.get_version(model, version),
            Registry::Mlflow(r) => r.get_version(model, version).await,
        }
    }

    /// Resolves `models:/<name>@<alias>` or `models:/<name>/<version>`; a missing alias or
    /// version is [`Error::NotFound`].
    pub async fn resolve(&self, uri: &str) -> Result<ModelVersion> {
        let parsed = ModelUri::parse(uri)?;
        let found = match &parsed {
            ModelUri::Alias { name, alias } => self.get_alias(name, alias).await?,
            ModelUri::Version { name, version } => self.get_version(name, version).await?,
        };
        found.ok_or_else(|| Error::NotFound {
            what: format!("model {parsed}"),
        })
    }

    /// Copies the version's package files into the directory `dest` (created if needed;
    /// it should be empty) and returns `dest`. The registry's own copy is never handed out,
    /// so a caller cleaning up cannot damage it.
    pub async fn download(&self, mv: &ModelVersion, dest: &Path) -> Result<PathBuf> {
        match self {
            Registry::Local(r) => r.download(mv, dest),
            Registry::Mlflow(r) => r.download(mv, dest).await,
        }
    }

    /// One line for logs: which backend and where.
    pub fn describe(&self) -> String {
        match self {
            Registry::Local(r) => r.describe(),
            Registry::Mlflow(r) => r.describe(),
        }
    }
}

/// Model names become directory names locally: keep them path-safe everywhere, so a name
/// that works with the local registry also works with MLflow and vice versa.
pub(crate) fn check_model_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("model name '{name}'"),
            "use letters, digits, '_', '-' and '.' (not leading)",
        ))
    }
}

/// MLflow's alias rules: `[A-Za-z0-9_-]+`, and `latest` / `v<digits>` are reserved.
pub(crate) fn check_alias(alias: &str) -> Result<()> {
    let charset = !alias.is_empty()
        && alias.len() <= 255
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    let lower = alias.to_ascii_lowercase();
    let reserved = lower == "latest"
        || (lower.len() > 1
            && lower.starts_with('v')
            && lower[1..].bytes().all(|b| b.is_ascii_digit()));
    if !charset {
        return Err(Error::invalid(
            format!("alias '{alias}'"),
            "use letters, digits, '_' and '-'",
        ));
    }
    if reserved {
        return Err(Error::invalid(
            format!("alias '{alias}'"),
            "'latest' and 'v<number>' are reserved",
        ));
    }
    Ok(())
}

pub(crate) fn pairs_to_tags(pairs: &[(String, String)]) -> Vec<Tag> {
    pairs.iter().map(|(k, v)| Tag::new(k, v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_uris_parse_aliases_and_versions() {
        assert_eq!(
            ModelUri::parse("models:/rps-forecaster@champion").unwrap(),
            ModelUri::Alias {
                name: "rps-forecaster".into(),
                alias: "champion".into()
            }
        );
        assert_eq!(
            ModelUri::parse("models:/rps-forecaster/12").unwrap(),
            ModelUri::Version {
                name: "rps-forecaster".into(),
                version: "12".into()
            }
        );
        for bad in [
            "models:/x",
            "models:/x/abc",
            "runs:/a/b",
            "models:/@a",
            "models:/x@",
            "models:/a/b/3",
        ] {
            assert!(
                matches!(ModelUri::parse(bad), Err(Error::BadModelUri { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            ModelUri::parse("models:/m@c").unwrap().to_string(),
            "models:/m@c"
        );
    }

    #[test]
    fn reserved_or_path_like_aliases_and_names_are_refused() {
        for a in ["latest", "v3", "V12", "a/b", "", "x y"] {
            assert!(check_alias(a).is_err(), "{a}");
        }
        for a in ["champion", "challenger", "v", "v1x", "Champion-2"] {
            assert!(check_alias(a).is_ok(), "{a}");
        }
        for n in ["../x", ".hidden", "a/b", ""] {
            assert!(check_model_name(n).is_err(), "{n}");
        }
        assert!(check_model_name("rps-forecaster.v2_x").is_ok());
    }
}
