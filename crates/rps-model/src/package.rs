//! The model package: a directory with `model.safetensors` (the weights, written by the
//! model's kind; the LSTM's use PyTorch tensor names), `metadata.json` ([`ModelMetadata`],
//! which names the kind) and `MLmodel` (so MLflow's UI shows it as a model). `rps-serve`
//! loads exactly this; the registry stores and copies it as a unit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::drift::ReferenceHistogram;
use crate::intervals::{CalibrationState, CalibratorParams, VolatilityModel};
use crate::model::Model;
use crate::{ModelError, Result, kinds};

/// File names inside a package directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The [`ModelMetadata`] file (JSON).
pub const METADATA_FILE: &str = "metadata.json";
/// The MLflow model descriptor (YAML), so MLflow's UI shows the package as a model.
pub const MLMODEL_FILE: &str = "MLmodel";
/// The MLflow flavor name written to `MLmodel` for a model kind: `rps_<kind>` (`rps_lstm`).
pub fn flavor(kind: &str) -> String {
    format!("rps_{kind}")
}
/// The metadata layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
/// Longest lookback a package may declare: a year of hours, far beyond what a served window
/// or the store's tail holds for any model here.
pub const MAX_LOOKBACK: usize = 8_760;
/// Most hidden units a package may declare.
pub const MAX_HIDDEN: usize = 4_096;

/// Standardisation statistics, fitted on the training split only.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scaler {
    /// Per model input, in `inputs` order.
    pub mean: Vec<f64>,
    /// Sample standard deviation per model input, in `inputs` order (1 where the spread is 0).
    pub std: Vec<f64>,
    /// Of the next-hour log return.
    pub target_mean: f64,
    /// Sample standard deviation of the next-hour log return (1 where the spread is 0).
    pub target_std: f64,
}

impl Scaler {
    /// Mean and sample standard deviation per column (`columns[i]` = values of input i) and of
    /// the target; non-finite values are ignored and a zero spread becomes 1 (a constant
    /// input then standardises to 0 instead of dividing by zero).
    pub fn fit(columns: &[Vec<f64>], target: &[f64]) -> Scaler {
        let (mean, std): (Vec<f64>, Vec<f64>) = columns.iter().map(|c| mean_std(c)).unzip();
        let (target_mean, target_std) = mean_std(target);
        Scaler {
            mean,
            std,
            target_mean,
            target_std,
        }
    }

    /// Standardises one value of input `i`.
    pub fn x(&self, i: usize, v: f64) -> f64 {
        (v - self.mean[i]) / self.std[i]
    }

    /// Standardises a target value.
    pub fn y(&self, v: f64) -> f64 {
        (v - self.target_mean) / self.target_std
    }

    /// The standardised value of a zero log return: what "no change" predicts
    /// ([`crate::FitConfig::target_zero`]).
    pub fn zero(&self) -> f32 {
        self.y(0.0) as f32
    }

    /// Maps a standardised prediction back to a log return.
    pub fn y_inv(&self, v: f64) -> f64 {
        v * self.target_std + self.target_mean
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let finite = v.iter().copied().filter(|x| x.is_finite());
    let (n, sum) = finite
        .clone()
        .fold((0usize, 0f64), |(n, s), x| (n + 1, s + x));
    if n == 0 {
        return (0.0, 1.0);
    }
    let m = sum / n as f64;
    let var = if n > 1 {
        finite.map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let s = var.sqrt();
    (m, if s > 1e-12 && s.is_finite() { s } else { 1.0 })
}

/// A split-conformal quantile: `|log-return error| <= q` with probability `level`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConformalQuantile {
    /// The coverage level, as a fraction (`0.9` for 90%).
    pub level: f64,
    /// The quantile of the absolute log-return error (on calibration residuals) at that
    /// level; the interval is the predicted log return `± q`.
    pub q: f64,
}

/// The training data a model saw.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct DataInfo {
    /// sha256 (hex, 36 chars: MLflow's dataset digest limit) of the feature data used.
    pub digest: String,
    /// First and last feature-row hour used (ms UTC).
    pub start_ts: i64,
    /// Last feature-row hour used (ms since the epoch, UTC).
    pub end_ts: i64,
    /// Feature rows used.
    pub rows: usize,
    /// Coins trained on.
    pub coins: Vec<String>,
    /// Where the features came from (store location) and the bar source labels.
    pub source: String,
}

/// Everything a server, a drift check or a person needs to know about a model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelMetadata {
    /// The metadata layout version ([`FORMAT_VERSION`] when written by this build).
    pub format_version: u32,
    /// Registered model name.
    pub name: String,
    /// Registry version; empty until registered (the registry's record is authoritative).
    #[serde(default)]
    pub version: String,
    /// The tracking run (MLflow or local registry) that trained the model.
    pub run_id: String,
    /// The model kind (a name in [`kinds::KINDS`]); metadata without one is an LSTM's.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// Hash of the feature spec the model was trained on; must equal this build's to load.
    pub feature_spec_hash: String,
    /// Version of that feature spec.
    pub feature_spec_version: u32,
    /// Model inputs by feature name, in the order the network reads them.
    pub inputs: Vec<String>,
    /// Feature rows (consecutive hours) per prediction window.
    pub lookback: usize,
    /// Hidden units of the network.
    pub hidden: usize,
    /// Standardisation of the inputs and the target, fitted on the training split.
    pub scaler: Scaler,
    /// The static split-conformal quantiles of the calibration split, sorted by level: the
    /// baseline the online intervals are judged against (not what is served).
    pub conformal: Vec<ConformalQuantile>,
    /// The volatility model σ̂ of the served intervals.
    pub volatility: VolatilityModel,
    /// How the served intervals adapt online.
    pub calibrator: CalibratorParams,
    /// The calibrator's trained state: the calibration split's scores, oldest first.
    pub calibration: CalibrationState,
    /// The training data.
    pub data: DataInfo,
    /// Evaluation figures (finite values only).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Training parameters, as logged to the tracking server.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// The commit (`git rev-parse HEAD`) training ran at, or `unknown`.
    pub git_commit: String,
    /// Training-split histograms of each input, for drift detection.
    #[serde(default)]
    pub reference: Vec<ReferenceHistogram>,
    /// sha256 (hex) of `model.safetensors`, recorded by [`ModelPackage::save`] (whatever this
    /// field held before) and verified by [`ModelPackage::load`]: damaged or swapped weights
    /// are refused instead of served under the same version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
}

/// The sha256 (hex) of a file.
pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(ModelError::io(path))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

fn default_kind() -> String {
    kinds::DEFAULT.to_string()
}

/// A model in memory: metadata plus weights (of the kind the metadata names).
#[derive(Debug, Clone)]
pub struct ModelPackage {
    /// The contents of `metadata.json`.
    pub metadata: ModelMetadata,
    /// The weights (`model.safetensors`), of the kind `metadata.kind` names.
    pub weights: Model,
}

impl ModelPackage {
    /// Writes the package to `dir` atomically for readers: the files are written to a
    /// sibling staging directory which then replaces `dir` (a previous package there is
    /// removed only after the new one is in place).
    ///
    /// The staging and backup siblings carry the writer's pid (`.<name>.staging-<pid>`,
    /// `.<name>.old-<pid>`), so what a killed save left is recognisable: this save removes
    /// the staging directories of dead writers first, and their backups once the new
    /// package is in place (before that, a backup may be the only copy of the previous
    /// package, when a save was killed between its two renames).
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.check(dir)?;
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(ModelError::io(parent))?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        rps_core::fs::remove_dead_writers(parent, &format!(".{name}.staging-"));
        let staging = parent.join(format!(".{name}.staging-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(ModelError::io(&staging))?;
        }
        std::fs::create_dir_all(&staging).map_err(ModelError::io(&staging))?;
        let written = self.write_files(&staging);
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        if dir.exists() {
            std::fs::rename(dir, &old).map_err(ModelError::io(dir))?;
        }
        if let Err(e) = std::fs::rename(&staging, dir) {
            // Put the previous package back: a failed save never loses it.
            if old.exists() {
                let _ = std::fs::rename(&old, dir);
            }
            return Err(ModelError::Io {
                path: dir.to_path_buf(),
                source: e,
            });
        }
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(ModelError::io(&old))?;
        }
        rps_core::fs::remove_dead_writers(parent, &format!(".{name}.old-"));
        Ok(())
    }

    fn write_files(&self, dir: &Path) -> Result<()> {
        let wp = dir.join(WEIGHTS_FILE);
        self.weights.save(&wp)?;
        let metadata = ModelMetadata {
            weights_sha256: Some(file_sha256(&wp)?),
            ..self.metadata.clone()
        };
        let meta = serde_json::to_vec_pretty(&metadata).map_err(|e| ModelError::BadPackage {
            path: dir.join(METADATA_FILE),
            reason: format!("metadata does not serialise: {e}"),
        })?;
        let p = dir.join(METADATA_FILE);
        std::fs::write(&p, meta).map_err(ModelError::io(&p))?;
        let p = dir.join(MLMODEL_FILE);
        std::fs::write(&p, self.mlmodel()).map_err(ModelError::io(&p))?;
        Ok(())
    }

    /// Reads and checks a package directory (does not check the feature spec; the
    /// [`crate::Forecaster`] does).
    pub fn load(dir: &Path) -> Result<ModelPackage> {
        let mp = dir.join(METADATA_FILE);
        let text = std::fs::read(&mp).map_err(ModelError::io(&mp))?;
        let metadata: ModelMetadata =
            serde_json::from_slice(&text).map_err(|e| ModelError::BadPackage {
                path: mp.clone(),
                reason: format!("not a model metadata file: {e}"),
            })?;
        if metadata.format_version != FORMAT_VERSION {
            return Err(ModelError::BadPackage {
                path: mp,
                reason: format!(
                    "format version {} is not supported (this build reads {FORMAT_VERSION})",
                    metadata.format_version
                ),
            });
        }
        let kind = kinds::get(&metadata.kind).map_err(|reason| ModelError::BadPackage {
            path: mp.clone(),
            reason,
        })?;
        let wp = dir.join(WEIGHTS_FILE);
        let Some(recorded) = metadata.weights_sha256.as_deref() else {
            return Err(ModelError::BadPackage {
                path: mp,
                reason: "no weights_sha256: the weights cannot be checked (a package written \
                         before checksums; retrain it)"
                    .into(),
            });
        };
        let actual = file_sha256(&wp)?;
        if !actual.eq_ignore_ascii_case(recorded) {
            return Err(ModelError::BadPackage {
                path: wp,
                reason: format!(
                    "sha256 {actual} differs from the {recorded} recorded at training: the \
                     weights were damaged or replaced"
                ),
            });
        }
        let weights = kind.load(&wp, &metadata)?;
        let pkg = ModelPackage { metadata, weights };
        pkg.check(dir)?;
        Ok(pkg)
    }

    fn check(&self, dir: &Path) -> Result<()> {
        let m = &self.metadata;
        let bad = |reason: String| {
            Err(ModelError::BadPackage {
                path: dir.to_path_buf(),
                reason,
            })
        };
        if m.kind != self.weights.kind() {
            return bad(format!(
                "model kind '{}' does not match its weights, which are '{}'",
                m.kind,
                self.weights.kind()
            ));
        }
        if m.lookback == 0 || m.inputs.is_empty() {
            return bad("lookback and inputs must be non-empty".into());
        }
        if m.lookback > MAX_LOOKBACK || m.hidden > MAX_HIDDEN {
            return bad(format!(
                "lookback {} / hidden {} exceed what this build serves ({MAX_LOOKBACK} rows, \
                 {MAX_HIDDEN} units): every forecast would need more history than exists",
                m.lookback, m.hidden
            ));
        }
        let n = m.inputs.len();
        if m.scaler.mean.len() != n || m.scaler.std.len() != n {
            return bad(format!(
                "scaler has {} means for {n} inputs",
                m.scaler.mean.len()
            ));
        }
        if m.scaler
            .std
            .iter()
            .chain([&m.scaler.target_std])
            .any(|s| !(s.is_finite() && *s > 0.0))
        {
            return bad("scaler has a non-positive standard deviation".into());
        }
        match self.weights.check(m) {
            Some(reason) => bad(reason),
            None => Ok(()),
        }
    }

    /// The MLflow `MLmodel` file (YAML). The flavor lists the files and the facts a reader
    /// needs without parsing the metadata; the model UUID is derived from the run and time,
    /// so re-saving the same package writes the same file.
    pub fn mlmodel(&self) -> String {
        let m = &self.metadata;
        let uuid = {
            let d = Sha256::digest(format!("{}|{}|{}", m.name, m.run_id, m.created_at).as_bytes());
            hex::encode(&d[..16])
        };
        // MLflow writes `utc_time_created` as "YYYY-MM-DD HH:MM:SS.ffffff".
        let created = m.created_at.trim_end_matches('Z').replacen('T', " ", 1);
        let inputs = m
            .inputs
            .iter()
            .map(|i| format!("      - {i}\n"))
            .collect::<String>();
        format!(
            "artifact_path: model\n\
             flavors:\n  {flavor}:\n    code: null\n    data: {WEIGHTS_FILE}\n    metadata: {METADATA_FILE}\n    \
             model_kind: {kind}\n    rps_version: {ver}\n    feature_spec_hash: '{hash}'\n    \
             feature_spec_version: {spec_ver}\n    lookback: {lookback}\n    hidden: {hidden}\n    inputs:\n{inputs}\
             model_uuid: {uuid}\n\
             run_id: '{run}'\n\
             utc_time_created: '{created}'\n",
            flavor = flavor(&m.kind),
            kind = m.kind,
            ver = env!("CARGO_PKG_VERSION"),
            hash = m.feature_spec_hash,
            spec_ver = m.feature_spec_version,
            lookback = m.lookback,
            hidden = m.hidden,
            run = m.run_id,
        )
    }
}

/// The files a complete package directory holds.
pub fn package_files(dir: &Path) -> [PathBuf; 3] {
    [
        dir.join(WEIGHTS_FILE),
        dir.join(METADATA_FILE),
        dir.join(MLMODEL_FILE),
    ]
}
