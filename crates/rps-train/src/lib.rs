//! rps-train: trains the LSTM forecaster on stored features, evaluates it honestly against
//! baselines on a chronological test split, calibrates conformal intervals, writes the model
//! package and reports, tracks the run (MLflow over REST or the local registry), registers
//! the model and runs the promotion gate.
//!
//! ```text
//! $ rps-train --metrics reports/train_metrics.json --package-out models/latest --profile reports/profile.html
//! INFO epoch 1/30 train_loss=1.0113 val_loss=0.9451 1.23s (2333 windows/s) ETA ≤36s
//! ...
//! model rps-forecaster version 1 (run e61444e30aba411114df0567cfd57fe4)
//! test (410 hours): RMSE 274.49 USD, MAE 215.67, MAPE 0.491%, skill -0.0025 | persistence RMSE 273.82 | rolling-mean-5 RMSE 401.20
//! interval 90%: coverage 97.8%, mean width 1216.89 USD
//! gate: promoted to champion — new RMSE 274.495 vs champion RMSE none (champion version none, 410 rows): no champion yet: the first model is promoted
//! ```
//! (180 days of synthetic bars, the quickstart.) Outputs: `--package-out` (the package),
//! `--metrics` (DVC metrics), `<report-dir>/evaluation.{json,html}`, `learning_curve.svg`,
//! `predictions.svg`; the run, its artifacts, the registered version and the `challenger` /
//! `champion` aliases in the registry. Exit codes: 0 (also when the gate keeps the old
//! champion), 2 bad flags or missing features, 4 MLflow unreachable after retries, 1 bug,
//! 143 after SIGTERM and 130 after SIGINT (the run ends KILLED; [`signals`]).
//!
//! [`run`] is the list of steps in [`steps`] (prepare data → start the run → fit → calibrate
//! → evaluate → gate → package → track and register → publish); everything tracked goes
//! through the [`track::Tracker`] trait, which [`rps_mlflow::Registry`] implements.
//!
//! Order of side effects: nothing is written before the run starts; a failure after that
//! marks the run FAILED with an `error` tag; the model is registered (and aliases moved)
//! only after every artifact is logged, and `--package-out` is replaced only after that.
//! Every file is written to a temp file or staging directory and renamed into place.
//!
//! What a killed run leaves: every run is tagged `rps.host` and `rps.pid`, and each new run
//! closes the RUNNING runs of its experiment whose trainer on this host is gone (FAILED,
//! tag `rps.error` = `orphaned: trainer pid <pid> on <host> is gone`); staging directories
//! and the scratch directory carry the writer's pid and are removed by the next writer.

#![deny(missing_docs)]

pub mod data;
pub mod eval;
pub mod gate;
pub mod report;
pub mod signals;
pub mod steps;
pub mod track;
pub mod walk;

use std::path::{Path, PathBuf};

use rps_core::ExitCode;
use rps_core::storage::layout;
use rps_core::{CoreError, Store};
use rps_features::{FeatureFrame, read_frame, spec};
use rps_mlflow::{Registry, RunStatus};
use rps_model::{FitConfig, ModelError};
use tracing::{info, warn};

use crate::data::{Prepared, SplitFractions};
use crate::report::Evaluation;
use crate::steps::{StartedRun, TrainingData};
use crate::track::Tracker;

/// Alias a freshly registered model always gets.
pub const CHALLENGER: &str = "challenger";
/// Alias of the model that serves.
pub const CHAMPION: &str = "champion";

/// Everything one training run needs (built from flags by `main`).
#[derive(Debug, Clone)]
pub struct Config {
    /// Store location (local directory or `s3://bucket/prefix`) holding the feature files.
    pub store: String,
    /// Coins to train on; each reads `features/<COIN>.parquet`.
    pub coins: Vec<String>,
    /// Local registry directory (used when `MLFLOW_TRACKING_URI` is unset).
    pub registry: PathBuf,
    /// Registered model name.
    pub model_name: String,
    /// Tracking experiment name (created if missing).
    pub experiment: String,
    /// Run name; `None` = `train-<coins>-<UTC time>`.
    pub run_name: Option<String>,
    /// The model kind to train (a name in `rps_model::kinds::KINDS`).
    pub model_kind: String,
    /// Maximum training epochs (early stopping may end sooner).
    pub epochs: usize,
    /// Hidden units of the network.
    pub hidden: usize,
    /// Hours of feature rows per input window.
    pub lookback: usize,
    /// Windows per optimiser step.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Epochs without a better validation loss before training stops.
    pub patience: usize,
    /// Seed of weight initialisation and shuffling (same data, params and seed: same model).
    pub seed: u64,
    /// Use at most this many of the most recent training windows; `None` = all.
    pub max_train_rows: Option<usize>,
    /// Chronological shares of the windows for training, validation and calibration.
    pub split: SplitFractions,
    /// Conformal interval levels, e.g. 0.8, 0.9, 0.95.
    pub levels: Vec<f64>,
    /// How the served intervals adapt online (window and ACI step).
    pub calibrator: rps_model::intervals::CalibratorParams,
    /// DVC metrics file.
    pub metrics: Option<PathBuf>,
    /// Where to write the model package (a directory).
    pub package_out: Option<PathBuf>,
    /// Directory for evaluation.{json,html} and the plots.
    pub report_dir: PathBuf,
    /// The transform's data profile, logged as an artifact.
    pub profile: Option<PathBuf>,
    /// Promote to champion even if the gate says no (`--force-promote`).
    pub force_promote: bool,
    /// Walk-forward folds to evaluate besides the main run (0 = none).
    pub walk_forward: usize,
    /// Fewest gate rows on which a new model may replace the champion.
    pub min_gate_rows: usize,
    /// When neither the new model nor the champion beats persistence, train the persistence
    /// kind in a second run and make it the champion (`--no-persistence-champion` turns it
    /// off: the registry then may have no champion, or keep one worse than no change).
    pub persistence_champion: bool,
}

/// What can go wrong in a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A flag value that cannot work.
    #[error("{0}")]
    Usage(String),
    /// The features of a coin are not in the store.
    #[error("no features for {coin} in {store}: '{key}' is missing (run rps-transform first)")]
    NoFeatures {
        /// The store's location.
        store: String,
        /// The coin asked for.
        coin: String,
        /// The missing feature file's key (`features/<COIN>.parquet`).
        key: String,
    },
    /// Not enough usable windows for a split.
    #[error(
        "too few windows for the {split} split: {got} (need {need}); {windows} windows of {lookback} consecutive hours with a known next hour in total (more data or a shorter --lookback)"
    )]
    TooFewWindows {
        /// The split that is too small (`training`, `validation`, `calibration` or `test`).
        split: String,
        /// Windows it got.
        got: usize,
        /// Windows it needs at least.
        need: usize,
        /// Usable windows in total, over all splits.
        windows: usize,
        /// The window length in hours (`--lookback`).
        lookback: usize,
    },
    // The wrapped errors are boxed: they are large and results travel through every function.
    /// The store or a feature file could not be read.
    #[error(transparent)]
    Store(Box<CoreError>),
    /// Training, saving, loading or running a model failed.
    #[error(transparent)]
    Model(Box<ModelError>),
    /// The tracking server or local registry failed.
    #[error("tracking/registry: {0}")]
    Registry(Box<rps_mlflow::Error>),
    /// A local file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A report or plot could not be rendered or written.
    #[error("report {}: {reason}", path.display())]
    Report {
        /// The report or plot file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The training thread panicked (a bug).
    #[error("training thread failed: {0}")]
    Join(String),
    /// The SIGTERM/SIGINT handlers could not be installed.
    #[error("cannot handle SIGTERM/SIGINT: {0}")]
    Signal(#[source] std::io::Error),
}

impl From<CoreError> for TrainError {
    fn from(e: CoreError) -> Self {
        TrainError::Store(Box::new(e))
    }
}

impl From<ModelError> for TrainError {
    fn from(e: ModelError) -> Self {
        TrainError::Model(Box::new(e))
    }
}

impl From<rps_mlflow::Error> for TrainError {
    fn from(e: rps_mlflow::Error) -> Self {
        TrainError::Registry(Box::new(e))
    }
}

impl TrainError {
    /// The process exit code (crates/rps-core/src/exit.rs).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            TrainError::Usage(_)
            | TrainError::NoFeatures { .. }
            | TrainError::TooFewWindows { .. }
            | TrainError::Io { .. } => ExitCode::BadInput,
            TrainError::Store(e) => e.exit_code(),
            TrainError::Model(e) => match **e {
                ModelError::Input { .. }
                | ModelError::SpecMismatch { .. }
                | ModelError::BadPackage { .. } => ExitCode::BadInput,
                _ => ExitCode::Internal,
            },
            // A report that cannot be written is a bad output path (as in every stage).
            TrainError::Report { .. } => ExitCode::BadInput,
            TrainError::Join(_) | TrainError::Signal(_) => ExitCode::Internal,
            TrainError::Registry(e) => e.exit_code(),
        }
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The result of a successful run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The tracking run's id.
    pub run_id: String,
    /// The registered model version.
    pub version: String,
    /// The evaluation report (as written to `evaluation.json`).
    pub evaluation: Evaluation,
    /// When this is the persistence run that replaced a candidate no better than
    /// persistence: that candidate's run (registered, not promoted).
    pub candidate: Option<Box<Summary>>,
}

impl Config {
    /// Whether the configured kind learns (is not persistence, the gate's floor itself).
    fn learnable(&self) -> bool {
        self.model_kind != rps_model::kinds::persistence::NAME
    }

    fn check(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Usage(m));
        let s = self.split;
        if !(s.train > 0.0 && s.val > 0.0 && s.calib > 0.0 && s.test() > 0.0) {
            return bad(format!(
                "split fractions must be positive and leave a test split: train {} val {} calibration {}",
                s.train, s.val, s.calib
            ));
        }
        if self.lookback < 2 || self.hidden == 0 || self.epochs == 0 || self.batch_size == 0 {
            return bad("--lookback must be >= 2 and --hidden, --epochs, --batch-size > 0".into());
        }
        if let Err(reason) = rps_model::kinds::get(&self.model_kind) {
            return bad(format!("--model-kind: {reason}"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("--lr {} must be a positive number", self.lr));
        }
        if self.levels.iter().any(|l| !(*l > 0.0 && *l < 1.0)) || self.levels.is_empty() {
            return bad(format!(
                "interval levels {:?} must be in (0, 1)",
                self.levels
            ));
        }
        if let Some(reason) = self.calibrator.check() {
            return bad(format!("--calibration-window/--aci-gamma: {reason}"));
        }
        if let Some(p) = self.profile.as_ref().filter(|p| !p.is_file()) {
            return bad(format!(
                "--profile {}: no such file (run rps-transform first)",
                p.display()
            ));
        }
        Ok(())
    }

    fn fit_config(&self) -> FitConfig {
        FitConfig {
            kind: self.model_kind.clone(),
            hidden: self.hidden,
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            weight_decay: self.weight_decay,
            patience: self.patience,
            seed: self.seed,
            ..FitConfig::default()
        }
    }

    fn params(&self, prep: &Prepared) -> Vec<(String, String)> {
        let s = &prep.splits;
        let mut p: Vec<(&str, String)> = vec![
            ("model_kind", self.model_kind.clone()),
            ("coins", self.coins.join(",")),
            ("epochs", self.epochs.to_string()),
            ("hidden", self.hidden.to_string()),
            ("lookback", self.lookback.to_string()),
            ("batch_size", self.batch_size.to_string()),
            ("lr", self.lr.to_string()),
            ("weight_decay", self.weight_decay.to_string()),
            ("patience", self.patience.to_string()),
            ("seed", self.seed.to_string()),
            ("clip_norm", FitConfig::default().clip_norm.to_string()),
            (
                "max_train_rows",
                self.max_train_rows
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "all".into()),
            ),
            ("split_train", self.split.train.to_string()),
            ("split_val", self.split.val.to_string()),
            ("split_calibration", self.split.calib.to_string()),
            (
                "interval_levels",
                self.levels
                    .iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("calibration_window", self.calibrator.window.to_string()),
            ("aci_gamma", self.calibrator.gamma.to_string()),
            ("n_inputs", prep.n_inputs().to_string()),
            ("feature_spec_hash", spec().hash.clone()),
            ("feature_spec_version", spec().version.to_string()),
            ("train_windows", s.train.len().to_string()),
            ("val_windows", s.val.len().to_string()),
            ("calibration_windows", s.calib.len().to_string()),
            ("test_windows", s.test.len().to_string()),
            ("walk_forward", self.walk_forward.to_string()),
        ];
        p.sort_by(|a, b| a.0.cmp(b.0));
        p.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

/// The current git commit, or "unknown" outside a repository.
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Reads the feature frames of the configured coins.
pub async fn load_frames(store: &Store, coins: &[String]) -> Result<Vec<FeatureFrame>, TrainError> {
    let mut frames = Vec::with_capacity(coins.len());
    for coin in coins {
        let frame = read_frame(store, coin)
            .await?
            .ok_or_else(|| TrainError::NoFeatures {
                store: store.location().to_string(),
                coin: coin.clone(),
                key: layout::features(coin),
            })?;
        info!(coin = %coin, rows = frame.len(), "features read");
        frames.push(frame);
    }
    Ok(frames)
}

/// The host name runs are tagged with ([`rps_mlflow::HOST_TAG`]): the kernel's
/// (`/proc/sys/kernel/hostname`, per UTS namespace, so a container's own), else `$HOSTNAME`,
/// else `unknown`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.trim().is_empty())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Runs the whole stage: data, tracking, training, evaluation, package, gate, registration.
/// Signals keep their default action here; [`signals::run`] is the same with SIGTERM and
/// SIGINT ending the run KILLED (what the binary uses).
///
/// When neither the new model nor the champion beats persistence on the gate rows
/// ([`gate::GateDecision::persistence_champion`]), a second run trains the persistence kind
/// on the same data and it becomes the champion: the system serves the best forecaster it
/// can honestly show. That run's summary is returned, with the first in
/// [`Summary::candidate`].
pub async fn run(cfg: &Config) -> Result<Summary, TrainError> {
    run_in(cfg, &signals::OpenRun::default()).await
}

/// [`run`], publishing each run in `open` while it is open, for the signal watcher.
pub(crate) async fn run_in(cfg: &Config, open: &signals::OpenRun) -> Result<Summary, TrainError> {
    let first = run_once(cfg, open).await?;
    if !first.evaluation.gate.persistence_champion {
        return Ok(first);
    }
    info!(
        reason = %first.evaluation.gate.reason,
        "no model beats persistence: training the persistence kind to be the champion"
    );
    let persistence = Config {
        model_kind: rps_model::kinds::persistence::NAME.into(),
        ..cfg.clone()
    };
    let mut second = run_once(&persistence, open).await?;
    second.candidate = Some(Box::new(first));
    Ok(second)
}

/// One tracked run: data, training, evaluation, package, gate, registration.
async fn run_once(cfg: &Config, open: &signals::OpenRun) -> Result<Summary, TrainError> {
    cfg.check()?;
    let store = Store::open(&cfg.store)?;
    let data = steps::prepare_data(cfg, &store).await?;

    let registry = Registry::from_env(&cfg.registry)?;
    info!(registry = %registry.describe(), "tracking");
    // Nothing has been written anywhere yet: an unreachable server fails here with exit 4.
    let started = steps::start_run(cfg, &registry, &store).await?;
    let run = &started.run;
    open.set(&registry, run).await;
    // After start_run rather than before: the server has just answered, so an unreachable
    // one still fails fast (one round of retries, exit 4), and our own run is spared
    // because its pid is ours.
    steps::close_orphans(&registry, &cfg.experiment, &started.host).await;
    let result = tracked(cfg, &registry, &started, data).await;
    // Whoever claims the run ends it. `None`: a signal came and the watcher is ending it
    // KILLED and then exits the process, so wait for that. Holding the claim until the end
    // makes a signal from here on wait until the run has ended.
    let Some(_claim) = open.claim().await else {
        return std::future::pending().await;
    };
    match result {
        Ok(summary) => {
            registry.end_run(run, RunStatus::Finished).await?;
            Ok(summary)
        }
        Err(e) => {
            // Best effort: the server may be the thing that failed.
            let msg: String = e.to_string().chars().take(4000).collect();
            if let Err(e2) = registry.set_tags(run, &[("error".into(), msg)]).await {
                warn!(error = %e2, "could not record the error on the run");
            }
            if let Err(e2) = registry.end_run(run, RunStatus::Failed).await {
                warn!(error = %e2, "could not mark the run FAILED");
            }
            Err(e)
        }
    }
}

/// The steps that run inside the open run; an error here ends it FAILED ([`run_in`]).
async fn tracked<T: Tracker>(
    cfg: &Config,
    tracker: &T,
    started: &StartedRun,
    mut data: TrainingData,
) -> Result<Summary, TrainError> {
    let run = &started.run;
    steps::log_inputs(tracker, run, &data).await?;
    let fitted = steps::fit(cfg, tracker, run, &mut data.prep).await?;
    let calibrated = steps::calibrate(cfg, &data, &fitted, started)?;
    let evaluated = steps::evaluate(cfg, &data, &fitted, calibrated)?;
    let scratch = steps::scratch_dir()?;
    let gate = steps::gate(cfg, tracker, &data.prep, &evaluated, scratch.path()).await?;
    let packaged = steps::package(
        cfg,
        &data,
        &fitted,
        evaluated,
        gate,
        tracker.describe(),
        scratch.path(),
    )?;
    let version = steps::track_and_register(cfg, tracker, run, &packaged).await?;
    steps::publish(cfg, packaged, version)
}
