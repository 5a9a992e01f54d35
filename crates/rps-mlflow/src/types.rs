//! The MLflow wire types (proto3 JSON): every field defaults, because the server omits empty
//! and default-valued fields (`{}` for an empty search, no `next_page_token` on the last page).

use serde::{Deserialize, Deserializer, Serialize};

/// A key/value tag (runs, experiments, dataset inputs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tag {
    /// The tag's name.
    pub key: String,
    /// The tag's value (the server cuts values over 8000 characters).
    pub value: String,
}

impl Tag {
    /// A tag from a key and a value.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Tag {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A run parameter (write-once: logging a different value for a key is a 400).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Param {
    /// The parameter's name.
    pub key: String,
    /// The parameter's value (the server cuts values over 6000 characters).
    pub value: String,
}

impl Param {
    /// A parameter from a key and a value.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Param {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// One metric point. `timestamp_ms` is int64 epoch milliseconds (MLflow silently stores
/// seconds wrong and floats as 0, so the type makes both impossible).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metric {
    /// The metric's name.
    pub key: String,
    /// The server returns NaN as the string `"NaN"` (and accepts numeric strings), so this
    /// deserializes numbers and those strings alike.
    #[serde(deserialize_with = "de_metric_value")]
    pub value: f64,
    /// The step (epoch, fold…) the value belongs to; 0 when there is none.
    pub step: i64,
    /// When the value was recorded, ms since the epoch (UTC); `timestamp` on the wire.
    #[serde(rename = "timestamp")]
    pub timestamp_ms: i64,
}

impl Metric {
    /// A metric point; `timestamp_ms` is ms since the epoch.
    pub fn new(key: impl Into<String>, value: f64, step: i64, timestamp_ms: i64) -> Self {
        Metric {
            key: key.into(),
            value,
            step,
            timestamp_ms,
        }
    }
}

fn de_metric_value<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrString {
        Num(f64),
        Str(String),
    }
    match NumOrString::deserialize(d)? {
        NumOrString::Num(v) => Ok(v),
        NumOrString::Str(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse::<f64>().map_err(serde::de::Error::custom),
        },
    }
}

/// Lifecycle status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// The run is in progress.
    Running,
    /// The run is scheduled but has not started.
    Scheduled,
    /// The run ended successfully.
    Finished,
    /// The run ended with an error.
    Failed,
    /// The run was stopped before it ended.
    Killed,
}

impl RunStatus {
    /// The wire spelling (`FINISHED`, ...). MLflow silently ignores unknown strings, so only
    /// these are ever sent.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Scheduled => "SCHEDULED",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }

    /// Parses the wire spelling; `None` for anything else.
    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "RUNNING" => RunStatus::Running,
            "SCHEDULED" => RunStatus::Scheduled,
            "FINISHED" => RunStatus::Finished,
            "FAILED" => RunStatus::Failed,
            "KILLED" => RunStatus::Killed,
            _ => return None,
        })
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An MLflow experiment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Experiment {
    /// The server-assigned id (a string, e.g. `"1"`).
    pub experiment_id: String,
    /// The experiment's name (unique, kept by a deleted experiment too).
    pub name: String,
    /// Root URI of its runs' artifacts.
    pub artifact_location: String,
    /// `active` or `deleted`.
    pub lifecycle_stage: String,
    /// Last update, ms since the epoch (UTC).
    pub last_update_time: i64,
    /// Creation, ms since the epoch (UTC).
    pub creation_time: i64,
    /// The experiment's tags.
    pub tags: Vec<Tag>,
}

/// An MLflow run: metadata, logged data and dataset inputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Run {
    /// Ids, status, times and artifact location.
    pub info: RunInfo,
    /// Latest metrics, params and tags.
    pub data: RunData,
    /// Datasets logged as inputs.
    pub inputs: RunInputs,
}

/// A run's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunInfo {
    /// The run's id (32 hex characters).
    pub run_id: String,
    /// The same id under its deprecated wire name.
    pub run_uuid: String,
    /// The run's display name.
    pub run_name: String,
    /// The experiment the run belongs to.
    pub experiment_id: String,
    /// The user given at creation (empty if none was).
    pub user_id: String,
    /// Kept as the wire string so an unknown future status does not break decoding; see
    /// [`RunInfo::status`].
    #[serde(rename = "status")]
    pub status_str: String,
    /// Start, ms since the epoch (UTC); 0 when the creator gave none.
    pub start_time: i64,
    /// End, ms since the epoch (UTC); `None` while the run has not ended.
    pub end_time: Option<i64>,
    /// Root URI of the run's artifacts (`mlflow-artifacts:/<exp>/<run>/artifacts` when the
    /// server proxies artifacts).
    pub artifact_uri: String,
    /// `active` or `deleted`.
    pub lifecycle_stage: String,
}

impl RunInfo {
    /// The status, or `None` for a status string this client does not know.
    pub fn status(&self) -> Option<RunStatus> {
        RunStatus::parse(&self.status_str)
    }
}

/// What was logged to a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunData {
    /// Only the latest value per key (highest step); use metric history for series.
    pub metrics: Vec<Metric>,
    /// The run's parameters.
    pub params: Vec<Param>,
    /// The run's tags (including MLflow's own `mlflow.*` tags).
    pub tags: Vec<Tag>,
}

impl RunData {
    /// The value of parameter `key`, if logged.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }
    /// The value of tag `key`, if set.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }
    /// The latest value of metric `key`, if logged.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.key == key).map(|m| m.value)
    }
}

/// A run's inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunInputs {
    /// The datasets logged as inputs of the run.
    pub dataset_inputs: Vec<DatasetInput>,
}

/// A dataset as MLflow stores it. `digest` is at most 36 characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatasetRecord {
    /// The dataset's name.
    pub name: String,
    /// A content digest (at most 36 characters); with `name`, what identifies the dataset.
    pub digest: String,
    /// The kind of source (`local`, `s3`…).
    pub source_type: String,
    /// Where the data is, as a JSON string (e.g. `{"uri": …}`).
    pub source: String,
    /// The dataset's schema as a JSON string; empty = none (not sent).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub schema: String,
    /// Summary figures as a JSON string (rows, time range…); empty = none (not sent).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub profile: String,
}

/// A dataset logged as a run input, with its tags (`mlflow.data.context`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatasetInput {
    /// The input's tags (`mlflow.data.context`: `training`…).
    pub tags: Vec<Tag>,
    /// The dataset.
    pub dataset: DatasetRecord,
}

/// An entry of an artifact listing. `path` is relative to the run's artifact root for the
/// tracking API listing ([`crate::MlflowClient::list_artifacts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileInfo {
    /// The entry's path (`/`-separated).
    pub path: String,
    /// Whether the entry is a directory.
    pub is_dir: bool,
    /// Size in bytes; `None` for a directory.
    pub file_size: Option<i64>,
}

/// A registered model of the MLflow model registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegisteredModel {
    /// The model's name.
    pub name: String,
    /// Creation, ms since the epoch (UTC).
    pub creation_timestamp: i64,
    /// Last update, ms since the epoch (UTC).
    pub last_updated_timestamp: i64,
    /// Free-text description (empty if none).
    pub description: String,
    /// The model's tags.
    pub tags: Vec<Tag>,
    /// The model's aliases and the versions they point to.
    pub aliases: Vec<RegisteredModelAlias>,
}

/// An alias of a registered model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegisteredModelAlias {
    /// The alias (`champion`); case-sensitive.
    pub alias: String,
    /// The version it points to (a string: `"1"`).
    pub version: String,
}

/// A model version as the MLflow registry returns it (versions are strings: `"1"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelVersionInfo {
    /// The registered model's name.
    pub name: String,
    /// The version (a string: `"1"`).
    pub version: String,
    /// Where the version's files are (`<run artifact_uri>/<artifact path>`).
    pub source: String,
    /// The run that produced the version.
    pub run_id: String,
    /// The registry's status string (`READY` once registered).
    pub status: String,
    /// The legacy registry stage (`None`, `Staging`, `Production`, `Archived`).
    pub current_stage: String,
    /// Creation, ms since the epoch (UTC).
    pub creation_timestamp: i64,
    /// Last update, ms since the epoch (UTC).
    pub last_updated_timestamp: i64,
    /// The version's tags.
    pub tags: Vec<Tag>,
    /// The aliases pointing to this version.
    pub aliases: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_value_returned_as_the_string_nan_decodes() {
        let m: Metric =
            serde_json::from_str(r#"{"key":"loss","value":"NaN","timestamp":5,"step":1}"#).unwrap();
        assert!(m.value.is_nan());
        assert_eq!(m.timestamp_ms, 5);
        let m: Metric =
            serde_json::from_str(r#"{"key":"loss","value":0.5,"timestamp":5}"#).unwrap();
        assert_eq!((m.value, m.step), (0.5, 0));
    }

    #[test]
    fn a_metric_serializes_its_timestamp_as_an_integer_named_timestamp() {
        let j = serde_json::to_value(Metric::new("k", 1.5, 2, 1_795_711_274_570)).unwrap();
        assert_eq!(j["timestamp"], serde_json::json!(1_795_711_274_570_i64));
        assert!(j["timestamp"].is_i64());
    }

    #[test]
    fn an_empty_proto3_object_decodes_to_defaults() {
        let r: Run = serde_json::from_str("{}").unwrap();
        assert!(
            r.data.metrics.is_empty() && r.info.end_time.is_none() && r.info.status().is_none()
        );
    }
}
