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
pub mod walk;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rps_core::ExitCode;
use rps_core::storage::layout;
use rps_core::time::fmt_ms;
use rps_core::{CoreError, Store};
use rps_features::{FeatureFrame, read_frame, spec};
use rps_mlflow::{Dataset, HOST_TAG, Metric, PID_TAG, Registry, RunHandle, RunStatus, now_ms};
use rps_model::package::FORMAT_VERSION;
use rps_model::{
    ConformalQuantile, DataInfo, EpochStats, FitConfig, FitOutcome, Forecaster, MODEL_INPUTS,
    ModelError, ModelMetadata, ModelPackage, Windows,
};
use tracing::{info, warn};

use crate::data::{Prepared, SplitFractions, prepare};
use crate::eval::{IntervalMetrics, conformal_quantile, interval_metrics, point_metrics, rmse};
use crate::gate::GateDecision;
use crate::report::{Evaluation, PlotRow, SplitInfo, TestMetrics, TrainingInfo};

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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
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
}

impl Config {
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

/// Prefix of the scratch directory a run stages its package and the champion in, in the
/// system temp directory: `rps-train-<pid>-<random>`. A killed run cannot remove its own;
/// the next run removes those of dead pids.
const SCRATCH_PREFIX: &str = "rps-train-";

/// Closes the runs earlier trainers of this host left RUNNING when they were killed
/// ([`Registry::close_orphaned_runs`]). A failure only warns: it must not stop training.
async fn close_orphans(registry: &Registry, experiment: &str, host: &str) {
    match registry.close_orphaned_runs(experiment, host).await {
        Ok(closed) => {
            for id in closed {
                warn!(run_id = %id, experiment, host, "closed a run whose trainer is gone: FAILED (orphaned)");
            }
        }
        Err(e) => warn!(error = %e, experiment, "could not close the runs of killed trainers"),
    }
}

/// Runs the whole stage: data, tracking, training, evaluation, package, gate, registration.
/// Signals keep their default action here; [`signals::run`] is the same with SIGTERM and
/// SIGINT ending the run KILLED (what the binary uses).
pub async fn run(cfg: &Config) -> Result<Summary, TrainError> {
    run_in(cfg, &signals::OpenRun::default()).await
}

/// [`run`], publishing the run in `open` while it is open, for the signal watcher.
pub(crate) async fn run_in(cfg: &Config, open: &signals::OpenRun) -> Result<Summary, TrainError> {
    cfg.check()?;
    let store = Store::open(&cfg.store)?;
    let frames = load_frames(&store, &cfg.coins).await?;
    let prep = prepare(frames, cfg.lookback, cfg.split, cfg.max_train_rows)?;
    info!(
        windows = prep.windows.len(),
        train = prep.splits.train.len(),
        val = prep.splits.val.len(),
        calibration = prep.splits.calib.len(),
        test = prep.splits.test.len(),
        dropped_oldest_train = prep.train_dropped,
        "chronological splits"
    );

    let registry = Registry::from_env(&cfg.registry)?;
    info!(registry = %registry.describe(), "tracking");
    let commit = git_commit();
    let run_name = cfg.run_name.clone().unwrap_or_else(|| {
        format!(
            "train-{}-{}",
            cfg.coins.join("-"),
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        )
    });
    let host = hostname();
    let tags = vec![
        ("mlflow.source.git.commit".to_string(), commit.clone()),
        ("mlflow.source.name".into(), "rps-train".into()),
        ("mlflow.source.type".into(), "LOCAL".into()),
        ("git_commit".into(), commit.clone()),
        ("source".into(), "rps-train".into()),
        ("data_source".into(), store.location().to_string()),
        ("feature_spec_hash".into(), spec().hash.clone()),
        ("coins".into(), cfg.coins.join(",")),
        // Who runs it: the next trainer on this host closes the run if this pid dies
        // without ending it (kill -9, OOM killer).
        (HOST_TAG.into(), host.clone()),
        (PID_TAG.into(), std::process::id().to_string()),
    ];
    // Nothing has been written anywhere yet: an unreachable server fails here with exit 4.
    let run = registry
        .start_run(&cfg.experiment, &run_name, &tags)
        .await?;
    open.set(&registry, &run).await;
    info!(run_id = %run.run_id, run_name = %run_name, host = %host, pid = std::process::id(), "run started");
    // After start_run rather than before: the server has just answered, so an unreachable
    // one still fails fast (one round of retries, exit 4), and our own run is spared
    // because its pid is ours.
    close_orphans(&registry, &cfg.experiment, &host).await;
    let result = tracked(cfg, &registry, &run, &store, prep, commit).await;
    // Whoever claims the run ends it. `None`: a signal came and the watcher is ending it
    // KILLED and then exits the process, so wait for that. Holding the claim until the end
    // makes a signal from here on wait until the run has ended.
    let Some(_claim) = open.claim().await else {
        return std::future::pending().await;
    };
    match result {
        Ok(summary) => {
            registry.end_run(&run, RunStatus::Finished).await?;
            Ok(summary)
        }
        Err(e) => {
            // Best effort: the server may be the thing that failed.
            let msg: String = e.to_string().chars().take(4000).collect();
            if let Err(e2) = registry.set_tags(&run, &[("error".into(), msg)]).await {
                warn!(error = %e2, "could not record the error on the run");
            }
            if let Err(e2) = registry.end_run(&run, RunStatus::Failed).await {
                warn!(error = %e2, "could not mark the run FAILED");
            }
            Err(e)
        }
    }
}

async fn tracked(
    cfg: &Config,
    registry: &Registry,
    run: &RunHandle,
    store: &Store,
    mut prep: Prepared,
    commit: String,
) -> Result<Summary, TrainError> {
    let params = cfg.params(&prep);
    registry.log_params(run, &params).await?;
    let (start, end, rows) = prep.span();
    let digest36: String = prep.digest.chars().take(36).collect();
    let source_type = if store.location().starts_with("s3://") {
        "s3"
    } else {
        "local"
    };
    let uris: Vec<String> = cfg
        .coins
        .iter()
        .map(|c| format!("{}/{}", store.location(), layout::features(c)))
        .collect();
    let dataset = Dataset {
        name: format!("features-{}", cfg.coins.join("-")),
        digest: digest36.clone(),
        source_type: source_type.into(),
        source: serde_json::json!({ "uri": uris.join(",") }).to_string(),
        schema: serde_json::json!({
            "mlflow_colspec": MODEL_INPUTS.iter().map(|n| serde_json::json!({"type": "double", "name": n})).collect::<Vec<_>>()
        })
        .to_string(),
        profile: serde_json::json!({
            "num_rows": rows, "start": fmt_ms(start), "end": fmt_ms(end), "feature_spec_hash": spec().hash,
        })
        .to_string(),
        context: "training".into(),
    };
    registry.log_input(run, &dataset).await?;

    // Training on a blocking thread; epochs stream back for progress logs and tracking.
    let started = Instant::now();
    let outcome = train(cfg, registry, run, &mut prep).await?;
    let train_seconds = started.elapsed().as_secs_f64();
    let walk_forward = if cfg.walk_forward > 0 {
        info!(folds = cfg.walk_forward, "walk-forward evaluation");
        let fit_cfg = cfg.fit_config();
        let go = || {
            walk::run(
                &prep,
                &fit_cfg,
                cfg.walk_forward,
                cfg.lookback,
                cfg.max_train_rows,
            )
        };
        // CPU-bound for minutes: keep it off the async workers when the runtime allows.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        Some(if multi_thread {
            tokio::task::block_in_place(go)?
        } else {
            go()?
        })
    } else {
        None
    };

    // The package (conformal quantiles added after calibration) and the serving path.
    let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut metadata = ModelMetadata {
        format_version: FORMAT_VERSION,
        name: cfg.model_name.clone(),
        version: String::new(),
        run_id: run.run_id.clone(),
        kind: cfg.model_kind.clone(),
        created_at: created_at.clone(),
        feature_spec_hash: spec().hash.clone(),
        feature_spec_version: spec().version,
        inputs: MODEL_INPUTS.iter().map(|s| s.to_string()).collect(),
        lookback: cfg.lookback,
        hidden: cfg.hidden,
        scaler: prep.scaler.clone(),
        conformal: Vec::new(),
        data: DataInfo {
            digest: digest36.clone(),
            start_ts: start,
            end_ts: end,
            rows,
            coins: cfg.coins.clone(),
            source: uris.join(","),
        },
        metrics: BTreeMap::new(),
        params: params.iter().cloned().collect(),
        git_commit: commit,
        reference: prep.reference.clone(),
        weights_sha256: None,
    };
    let draft = ModelPackage {
        metadata: metadata.clone(),
        weights: outcome.weights.clone(),
    };
    let fc = Forecaster::from_package(draft, Path::new("(new model)"))?;

    // Calibration: conformal quantiles of |log-return error|.
    let calib_pred = predict(&fc, &prep, &prep.splits.calib)?;
    let calib_res: Vec<f64> = prep
        .splits
        .calib
        .iter()
        .zip(&calib_pred)
        .map(|(&i, p)| {
            let w = prep.windows[i];
            (prep.frames[w.coin].target_logret_1h[w.row] - p).abs()
        })
        .collect();
    let mut levels = cfg.levels.clone();
    levels.sort_by(f64::total_cmp);
    metadata.conformal = levels
        .iter()
        .map(|&level| ConformalQuantile {
            level,
            q: conformal_quantile(&calib_res, level),
        })
        .collect();

    // Test: the model and the baselines on the same rows, prices in USD.
    let test = &prep.splits.test;
    let test_pred = predict(&fc, &prep, test)?;
    let sp = spec();
    let roll5 = sp
        .index("rolling_mean_5")
        .ok_or_else(|| TrainError::Usage("feature rolling_mean_5 is missing".into()))?;
    let (mut last, mut actual, mut model, mut roll) = (vec![], vec![], vec![], vec![]);
    for (&i, p) in test.iter().zip(&test_pred) {
        let w = prep.windows[i];
        let f = &prep.frames[w.coin];
        last.push(f.close[w.row]);
        actual.push(f.target_close_1h[w.row]);
        model.push(f.close[w.row] * p.exp());
        roll.push(f.row(w.row)[roll5]);
    }
    let rmse_p = rmse(&last, &actual);
    let test_metrics = TestMetrics {
        model: point_metrics(&last, &actual, &model, rmse_p),
        persistence: point_metrics(&last, &actual, &last, rmse_p),
        rolling_mean_5: point_metrics(&last, &actual, &roll, rmse_p),
    };
    let intervals: Vec<IntervalMetrics> = metadata
        .conformal
        .iter()
        .map(|c| interval_metrics(&last, &actual, &test_pred, c.level, c.q))
        .collect();
    metadata.metrics = flat_metrics(&test_metrics, &intervals);
    let package = ModelPackage {
        metadata: metadata.clone(),
        weights: outcome.weights.clone(),
    };
    let fc = Forecaster::from_package(package.clone(), Path::new("(new model)"))?;

    // Promotion gate: re-score the current champion on the same test rows.
    let tmp = std::env::temp_dir();
    rps_core::fs::remove_dead_writers(&tmp, SCRATCH_PREFIX);
    let scratch = tempfile::Builder::new()
        .prefix(&format!("{SCRATCH_PREFIX}{}-", std::process::id()))
        .tempdir_in(&tmp)
        .map_err(io(&tmp))?;
    let gate = decide(
        cfg,
        registry,
        &fc,
        &prep,
        scratch.path(),
        test_metrics.model.rmse,
    )
    .await?;
    info!(promote = gate.promote, reason = %gate.reason, "promotion gate");

    // Package, plots and reports on disk.
    // Staged in a scratch directory: --package-out is replaced only after registration.
    let pkg_dir = scratch.path().join("model");
    package.save(&pkg_dir)?;
    // The saved package must load and predict exactly like the in-memory one.
    let reloaded = Forecaster::load(&pkg_dir)?;
    if let Some(&i) = test.first() {
        let w = prep.windows[i];
        let again = reloaded.predict_logrets(&prep.frames[w.coin], &[w.row])?;
        // The reloaded weights are the same f32 values, but the inference path may sum in
        // another order than training's batched one: compare to f32 precision, not bit-exact.
        let tol = 1e-5 * again[0].abs().max(test_pred[0].abs()) + 1e-9;
        if (again[0] - test_pred[0]).abs() > tol || !again[0].is_finite() {
            return Err(TrainError::from(ModelError::BadPackage {
                path: pkg_dir.clone(),
                reason: format!(
                    "reloaded package predicts {} instead of {}",
                    again[0], test_pred[0]
                ),
            }));
        }
    }
    std::fs::create_dir_all(&cfg.report_dir).map_err(io(&cfg.report_dir))?;
    let lc_path = cfg.report_dir.join("learning_curve.svg");
    report::learning_curve_svg(&outcome.history, &lc_path)?;
    let level = levels
        .iter()
        .copied()
        .find(|l| (*l - 0.9).abs() < 1e-9)
        .unwrap_or(levels[levels.len() / 2]);
    let q = metadata
        .conformal
        .iter()
        .find(|c| c.level == level)
        .map(|c| c.q)
        .unwrap_or(0.0);
    let tail = test.len().saturating_sub(240);
    let plot_rows: Vec<PlotRow> = (tail..test.len())
        .map(|k| PlotRow {
            actual: actual[k],
            pred: model[k],
            lower: last[k] * (test_pred[k] - q).exp(),
            upper: last[k] * (test_pred[k] + q).exp(),
        })
        .collect();
    let pv_path = cfg.report_dir.join("predictions.svg");
    report::predictions_svg(&plot_rows, level, &pv_path)?;

    let split_info = |name: &str, idx: &[usize]| {
        let ts = |k: Option<&usize>| k.map(|&i| fmt_ms(prep.windows[i].ts)).unwrap_or_default();
        (
            name.to_string(),
            SplitInfo {
                windows: idx.len(),
                start: ts(idx.first()),
                end: ts(idx.last()),
            },
        )
    };
    let epochs_run = outcome.history.len();
    let mut evaluation = Evaluation {
        model_name: cfg.model_name.clone(),
        run_id: run.run_id.clone(),
        created_at,
        registry: registry.describe(),
        feature_spec_hash: spec().hash.clone(),
        data_digest: digest36,
        coins: cfg.coins.clone(),
        params: params.iter().cloned().collect(),
        splits: [
            split_info("1_train", &prep.splits.train),
            split_info("2_validation", &prep.splits.val),
            split_info("3_calibration", &prep.splits.calib),
            split_info("4_test", &prep.splits.test),
        ]
        .into_iter()
        .collect(),
        training: TrainingInfo {
            epochs_run,
            best_epoch: outcome.best_epoch,
            best_val_loss: outcome.best_val_loss,
            stopped_early: outcome.stopped_early,
            seconds: train_seconds,
            seconds_per_epoch: outcome.history.iter().map(|h| h.seconds).sum::<f64>()
                / epochs_run.max(1) as f64,
            history: outcome.history.clone(),
        },
        test: test_metrics,
        intervals,
        gate: gate.clone(),
        walk_forward: walk_forward.clone(),
        version: None,
    };
    let (json_path, html_path) = write_reports(cfg, &evaluation, &lc_path, &pv_path)?;

    // Tracking: final metrics, gate decision, artifacts. Registration comes last, so a
    // failure anywhere above leaves no version behind.
    let now = now_ms();
    let mut finals: Vec<Metric> = metadata
        .metrics
        .iter()
        .map(|(k, v)| Metric::new(k.clone(), *v, 0, now))
        .collect();
    for (k, v) in [
        ("gate_new_rmse", gate.new_rmse),
        ("gate_champion_rmse", gate.champion_rmse),
    ] {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            finals.push(Metric::new(k, v, 0, now));
        }
    }
    finals.push(Metric::new("gate_rows", gate.rows as f64, 0, now));
    finals.push(Metric::new("best_epoch", outcome.best_epoch as f64, 0, now));
    finals.push(Metric::new("train_seconds", train_seconds, 0, now));
    if let Some(wf) = &walk_forward {
        for (k, v) in wf.flat_metrics() {
            finals.push(Metric::new(k, v, 0, now));
        }
    }
    registry.log_metrics(run, &finals).await?;
    let decision = if gate.promote {
        "promoted"
    } else {
        "challenger"
    };
    let mut gate_tags = vec![
        ("gate_decision".to_string(), decision.to_string()),
        ("gate_reason".to_string(), gate.reason.clone()),
        ("gate_forced".to_string(), gate.forced.to_string()),
    ];
    if let Some(v) = &gate.champion_version {
        gate_tags.push(("gate_champion_version".into(), v.clone()));
    }
    registry.set_tags(run, &gate_tags).await?;
    registry.log_artifact(run, &pkg_dir, "model").await?;
    registry.log_artifact(run, &lc_path, "plots").await?;
    registry.log_artifact(run, &pv_path, "plots").await?;
    registry.log_artifact(run, &json_path, "report").await?;
    registry.log_artifact(run, &html_path, "report").await?;
    if let Some(p) = &cfg.profile {
        registry.log_artifact(run, p, "data").await?;
    }

    let mv = registry.register(run, &cfg.model_name, "model").await?;
    registry
        .set_alias(&cfg.model_name, CHALLENGER, &mv.version)
        .await?;
    if gate.promote {
        registry
            .set_alias(&cfg.model_name, CHAMPION, &mv.version)
            .await?;
    }
    registry
        .set_tags(
            run,
            &[
                ("registered_model".into(), cfg.model_name.clone()),
                ("registered_version".into(), mv.version.clone()),
            ],
        )
        .await?;
    info!(model = %cfg.model_name, version = %mv.version, alias = if gate.promote { CHAMPION } else { CHALLENGER }, "registered");

    // Local outputs learn the version (the uploaded copies predate it).
    evaluation.version = Some(mv.version.clone());
    if let Some(dir) = &cfg.package_out {
        let mut pkg = package;
        pkg.metadata.version = mv.version.clone();
        pkg.save(dir)?;
    }
    write_reports(cfg, &evaluation, &lc_path, &pv_path)?;
    Ok(Summary {
        run_id: run.run_id.clone(),
        version: mv.version,
        evaluation,
    })
}

/// Trains on a blocking thread and logs each epoch (progress line + tracking metrics).
async fn train(
    cfg: &Config,
    registry: &Registry,
    run: &RunHandle,
    prep: &mut Prepared,
) -> Result<FitOutcome, TrainError> {
    let fit_cfg = cfg.fit_config();
    let x = std::mem::take(&mut prep.x);
    let y = std::mem::take(&mut prep.y);
    let (nf, lookback) = (prep.n_inputs(), cfg.lookback);
    let train_ends = prep.ends(&prep.splits.train);
    let val_ends = prep.ends(&prep.splits.val);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<EpochStats>();
    // Set when tracking fails mid-training: no point finishing a run that cannot be logged.
    let stop = Arc::new(AtomicBool::new(false));
    let stop_training = stop.clone();
    let handle = tokio::task::spawn_blocking(move || {
        let data = Windows {
            x: &x,
            n_features: nf,
            y: &y,
            lookback,
        };
        let out = rps_model::fit(&data, &train_ends, &val_ends, &fit_cfg, &mut |s| {
            // The receiver only disappears when the run already failed.
            let _ = tx.send(s.clone());
            if stop_training.load(Ordering::Relaxed) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        (out, x, y)
    });
    let epochs = cfg.epochs;
    let mut elapsed = 0.0;
    let mut log_error = None;
    while let Some(s) = rx.recv().await {
        elapsed += s.seconds;
        let eta = elapsed / s.epoch as f64 * (epochs - s.epoch) as f64;
        info!(
            "epoch {}/{} train_loss={:.4} val_loss={:.4} {:.2}s ({:.0} windows/s) ETA ≤{:.0}s",
            s.epoch, epochs, s.train_loss, s.val_loss, s.seconds, s.windows_per_second, eta
        );
        if log_error.is_some() {
            continue;
        }
        let now = now_ms();
        let step = s.epoch as i64;
        let mut points = vec![Metric::new("epoch_seconds", s.seconds, step, now)];
        for (k, v) in [("train_loss", s.train_loss), ("val_loss", s.val_loss)] {
            // A non-finite loss is reported by fit() itself; never send it to MLflow.
            if v.is_finite() {
                points.push(Metric::new(k, v, step, now));
            }
        }
        if let Err(e) = registry.log_metrics(run, &points).await {
            stop.store(true, Ordering::Relaxed);
            log_error = Some(e);
        }
    }
    let (out, x, y) = handle.await.map_err(|e| TrainError::Join(e.to_string()))?;
    prep.x = x;
    prep.y = y;
    // A tracking failure is the cause when training was stopped for it.
    if let Some(e) = log_error {
        return Err(e.into());
    }
    Ok(out?)
}

/// Predicted log returns of a forecaster for windows of the prepared data (serving path).
fn predict(fc: &Forecaster, prep: &Prepared, idx: &[usize]) -> Result<Vec<f64>, TrainError> {
    let mut out = Vec::with_capacity(idx.len());
    for &i in idx {
        let w = prep.windows[i];
        out.extend(fc.predict_logrets(&prep.frames[w.coin], &[w.row])?);
    }
    Ok(out)
}

/// Finite test metrics as a flat map (package metadata and tracking).
fn flat_metrics(t: &TestMetrics, intervals: &[IntervalMetrics]) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for (name, p) in [
        ("test", &t.model),
        ("persistence", &t.persistence),
        ("rolling_mean_5", &t.rolling_mean_5),
    ] {
        m.insert(format!("{name}_rmse"), p.rmse);
        m.insert(format!("{name}_mae"), p.mae);
        m.insert(format!("{name}_mape"), p.mape);
        m.insert(format!("{name}_skill"), p.skill);
        if let Some(d) = p.directional_accuracy {
            m.insert(format!("{name}_directional_accuracy"), d);
        }
    }
    m.insert("test_rows".into(), t.model.rows as f64);
    for i in intervals {
        let l = format!("{:.0}", i.level * 100.0);
        m.insert(format!("interval_{l}_coverage"), i.coverage);
        m.insert(format!("interval_{l}_width_usd"), i.mean_width_usd);
        m.insert(format!("interval_{l}_q_logret"), i.q_logret);
    }
    m.retain(|_, v| v.is_finite());
    m
}

/// The promotion decision (see [`gate`]).
async fn decide(
    cfg: &Config,
    registry: &Registry,
    new: &Forecaster,
    prep: &Prepared,
    scratch: &Path,
    new_test_rmse: f64,
) -> Result<GateDecision, TrainError> {
    let mut g = GateDecision {
        forced: cfg.force_promote,
        new_rmse: Some(new_test_rmse),
        rows: prep.splits.test.len(),
        ..Default::default()
    };
    let Some(mv) = registry.get_alias(&cfg.model_name, CHAMPION).await? else {
        g.promote = true;
        g.reason = "no champion yet: the first model is promoted".into();
        return Ok(g);
    };
    g.champion_version = Some(mv.version.clone());
    let dir = registry.download(&mv, &scratch.join("champion")).await?;
    match Forecaster::load(&dir) {
        Ok(champion) => {
            let (new_rmse, champ_rmse, rows) =
                gate::rescore(new, &champion, prep, &prep.splits.test);
            g.new_rmse = Some(new_rmse);
            g.champion_rmse = Some(champ_rmse);
            g.rows = rows;
            (g.promote, g.reason) =
                gate::judge(new_rmse, champ_rmse, rows, cfg.min_gate_rows, &mv.version);
        }
        Err(e) => {
            // A champion this build cannot load (older feature spec) cannot serve either.
            warn!(error = %e, "the champion cannot be re-scored");
            g.promote = true;
            g.reason = format!(
                "champion v{} cannot be loaded by this build: {e}",
                mv.version
            );
        }
    }
    if cfg.force_promote && !g.promote {
        g.promote = true;
        g.reason = format!("forced (--force-promote); {}", g.reason);
    }
    Ok(g)
}

fn write_reports(
    cfg: &Config,
    ev: &Evaluation,
    lc: &Path,
    pv: &Path,
) -> Result<(PathBuf, PathBuf), TrainError> {
    let json_path = cfg.report_dir.join("evaluation.json");
    let text = serde_json::to_string_pretty(ev).map_err(|e| TrainError::Report {
        path: json_path.clone(),
        reason: e.to_string(),
    })?;
    // Atomic writes (temp file + rename): a run stopped mid-way leaves the previous report.
    rps_core::fs::write(&json_path, text.as_bytes()).map_err(io(&json_path))?;
    let read = |p: &Path| std::fs::read_to_string(p).map_err(io(p));
    let strip = |s: String| match s.find("<svg") {
        Some(i) => s[i..].to_string(),
        None => s,
    };
    let html_path = cfg.report_dir.join("evaluation.html");
    rps_core::fs::write(
        &html_path,
        report::html(ev, &strip(read(lc)?), &strip(read(pv)?)).as_bytes(),
    )
    .map_err(io(&html_path))?;
    if let Some(m) = &cfg.metrics {
        if let Some(parent) = m.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut v = ev.metrics_json();
        if let Some(ver) = &ev.version {
            v["version"] = serde_json::Value::String(ver.clone());
        }
        let text = serde_json::to_string_pretty(&v).map_err(|e| TrainError::Report {
            path: m.clone(),
            reason: e.to_string(),
        })?;
        rps_core::fs::write(m, text.as_bytes()).map_err(io(m))?;
    }
    Ok((json_path, html_path))
}
