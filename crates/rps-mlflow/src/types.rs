//! The MLflow wire types (proto3 JSON): every field defaults, because the server omits empty
//! and default-valued fields (`{}` for an empty search, no `next_page_token` on the last page).

use serde::{Deserialize, Deserializer, Serialize};

/// A key/value tag (runs, experiments, dataset inputs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

impl Tag {
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
    pub key: String,
    pub value: String,
}

impl Param {
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
    pub key: String,
    /// The server returns NaN as the string `"NaN"` (and accepts numeric strings), so this
    /// deserializes numbers and those strings alike.
    #[serde(deserialize_with = "de_metric_value")]
    pub value: f64,
    pub step: i64,
    #[serde(rename = "timestamp")]
    pub timestamp_ms: i64,
}

impl Metric {
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
    Running,
    Scheduled,
    Finished,
    Failed,
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: String,
    pub last_update_time: i64,
    pub creation_time: i64,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Run {
    pub info: RunInfo,
    pub data: RunData,
    pub inputs: RunInputs,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunInfo {
    pub run_id: String,
    pub run_uuid: String,
    pub run_name: String,
    pub experiment_id: String,
    pub user_id: String,
    /// Kept as the wire string so an unknown future status does not break decoding; see
    /// [`RunInfo::status`].
    #[serde(rename = "status")]
    pub status_str: String,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub artifact_uri: String,
    pub lifecycle_stage: String,
}

impl RunInfo {
    pub fn status(&self) -> Option<RunStatus> {
        RunStatus::parse(&self.status_str)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunData {
    /// Only the latest value per key (highest step); use metric history for series.
    pub metrics: Vec<Metric>,
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
}

impl RunData {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.key == key).map(|m| m.value)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunInputs {
    pub dataset_inputs: Vec<DatasetInput>,
}

/// A dataset as MLflow stores it. `digest` is at most 36 characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatasetRecord {
    pub name: String,
    pub digest: String,
    pub source_type: String,
    pub source: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub schema: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub profile: String,
}

/// A dataset logged as a run input, with its tags (`mlflow.data.context`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatasetInput {
    pub tags: Vec<Tag>,
    pub dataset: DatasetRecord,
}

/// An entry of an artifact listing. `path` is relative to the run's artifact root for the
/// tracking API listing ([`crate::MlflowClient::list_artifacts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileInfo {
    pub path: String,
    pub is_dir: bool,
    pub file_size: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub description: String,
    pub tags: Vec<Tag>,
    pub aliases: Vec<RegisteredModelAlias>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegisteredModelAlias {
    pub alias: String,
    pub version: String,
}

/// A model version as the MLflow registry returns it (versions are strings: `"1"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelVersionInfo {
    pub name: String,
    pub version: String,
    pub source: String,
    pub run_id: String,
    pub status: String,
    pub current_stage: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub tags: Vec<Tag>,
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
