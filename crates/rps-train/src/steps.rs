//! The stage as typed steps, each taking what it needs and returning what the next ones
//! read: [`prepare_data`] → [`start_run`] → [`log_inputs`] → [`fit`] → [`calibrate`] →
//! [`evaluate`] → [`gate`] → [`package`] → [`track_and_register`] → [`publish`].
//! [`crate::run`] calls them in that order; everything tracked goes through a [`Tracker`].

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rps_core::Store;
use rps_core::storage::layout;
use rps_core::time::fmt_ms;
use rps_features::spec;
use rps_mlflow::{Dataset, HOST_TAG, Metric, PID_TAG, RunHandle, now_ms};
use rps_model::intervals::{self, CalibrationState, ScoredHour, VolatilityModel};
use rps_model::package::FORMAT_VERSION;
use rps_model::{
    ConformalQuantile, DataInfo, EpochStats, FitConfig, FitOutcome, Forecaster, MODEL_INPUTS,
    ModelError, ModelMetadata, ModelPackage, Windows,
};
use tracing::{info, warn};

use crate::data::{Prepared, prepare};
use crate::eval::{
    self, Bounds, IntervalMetrics, conformal_quantile, interval_metrics, point_metrics, rmse,
};
use crate::gate::{self as gating, GateDecision};
use crate::report::{self, Evaluation, PlotRow, SplitInfo, TestMetrics, TrainingInfo};
use crate::track::Tracker;
use crate::walk::{self, WalkForward};
use crate::{CHALLENGER, CHAMPION, Config, Summary, TrainError, git_commit, hostname, io};

/// Prefix of the scratch directory a run stages its package and the champion in, in the
/// system temp directory: `rps-train-<pid>-<random>`. A killed run cannot remove its own;
/// the next run removes those of dead pids.
const SCRATCH_PREFIX: &str = "rps-train-";

/// The data to train on and how it is described to the tracker and in the package.
#[derive(Debug)]
pub struct TrainingData {
    /// Windows, splits and standardised arrays.
    pub prep: Prepared,
    /// The run's params (sorted by name), as logged and stored in the package.
    pub params: Vec<(String, String)>,
    /// The data section of the package metadata.
    pub info: DataInfo,
    /// The run's input dataset.
    pub dataset: Dataset,
}

/// Step 1: reads the feature frames of the configured coins and prepares the chronological
/// splits. Writes nothing.
pub async fn prepare_data(cfg: &Config, store: &Store) -> Result<TrainingData, TrainError> {
    let frames = crate::load_frames(store, &cfg.coins).await?;
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
    let params = cfg.params(&prep);
    let (start, end, rows) = prep.span();
    let digest: String = prep.digest.chars().take(36).collect();
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
        digest: digest.clone(),
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
    let info = DataInfo {
        digest,
        start_ts: start,
        end_ts: end,
        rows,
        coins: cfg.coins.clone(),
        source: uris.join(","),
    };
    Ok(TrainingData {
        prep,
        params,
        info,
        dataset,
    })
}

/// The tracking run this training logs to.
#[derive(Debug, Clone)]
pub struct StartedRun {
    /// The run.
    pub run: RunHandle,
    /// The git commit it is tagged with (and the package records).
    pub commit: String,
    /// The host it is tagged with ([`HOST_TAG`]).
    pub host: String,
}

/// Step 2: starts the tracking run, tagged with the source, the data and who runs it. The
/// first write anywhere: an unreachable server fails here with exit 4.
pub async fn start_run<T: Tracker>(
    cfg: &Config,
    tracker: &T,
    store: &Store,
) -> Result<StartedRun, TrainError> {
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
    let run = tracker.start_run(&cfg.experiment, &run_name, &tags).await?;
    info!(run_id = %run.run_id, run_name = %run_name, host = %host, pid = std::process::id(), "run started");
    Ok(StartedRun { run, commit, host })
}

/// Closes the runs earlier trainers of this host left RUNNING when they were killed
/// ([`Tracker::close_orphaned_runs`]). A failure only warns: it must not stop training.
pub async fn close_orphans<T: Tracker>(tracker: &T, experiment: &str, host: &str) {
    match tracker.close_orphaned_runs(experiment, host).await {
        Ok(closed) => {
            for id in closed {
                warn!(run_id = %id, experiment, host, "closed a run whose trainer is gone: FAILED (orphaned)");
            }
        }
        Err(e) => warn!(error = %e, experiment, "could not close the runs of killed trainers"),
    }
}

/// Step 3: logs the params and the input dataset.
pub async fn log_inputs<T: Tracker>(
    tracker: &T,
    run: &RunHandle,
    data: &TrainingData,
) -> Result<(), TrainError> {
    tracker.log_params(run, &data.params).await?;
    tracker.log_input(run, &data.dataset).await?;
    Ok(())
}

/// The trained network.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// The weights kept (best validation loss) and the epoch history.
    pub outcome: FitOutcome,
    /// Wall-clock seconds of the whole training.
    pub seconds: f64,
}

/// Step 4: trains on a blocking thread; each epoch is logged (progress line + tracking
/// metrics). A tracking failure stops training and is the error returned.
pub async fn fit<T: Tracker>(
    cfg: &Config,
    tracker: &T,
    run: &RunHandle,
    prep: &mut Prepared,
) -> Result<Fitted, TrainError> {
    let started = Instant::now();
    let fit_cfg = FitConfig {
        target_zero: prep.scaler.zero(),
        ..cfg.fit_config()
    };
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
        if let Err(e) = tracker.log_metrics(run, &epoch_metrics(&s)).await {
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
    Ok(Fitted {
        outcome: out?,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One epoch's tracking metrics, at step = epoch.
fn epoch_metrics(s: &EpochStats) -> Vec<Metric> {
    let now = now_ms();
    let step = s.epoch as i64;
    let mut points = vec![Metric::new("epoch_seconds", s.seconds, step, now)];
    for (k, v) in [("train_loss", s.train_loss), ("val_loss", s.val_loss)] {
        // A non-finite loss is reported by fit() itself; never send it to MLflow.
        if v.is_finite() {
            points.push(Metric::new(k, v, step, now));
        }
    }
    points
}

/// The model with its conformal quantiles.
#[derive(Debug, Clone)]
pub struct Calibrated {
    /// The package metadata so far: everything but the test metrics.
    pub metadata: ModelMetadata,
    /// The new model on the serving path (loaded from its weights and metadata).
    pub forecaster: Forecaster,
    /// The interval levels, ascending.
    pub levels: Vec<f64>,
}

/// Step 5: builds the package metadata: fits the volatility model on the training split,
/// and on the calibration split computes the calibrator's starting scores
/// (`|log-return error| / σ̂`) and the static conformal quantiles of |log-return error|
/// (the baseline).
pub fn calibrate(
    cfg: &Config,
    data: &TrainingData,
    fitted: &Fitted,
    started: &StartedRun,
) -> Result<Calibrated, TrainError> {
    let prep = &data.prep;
    let mut levels = cfg.levels.clone();
    levels.sort_by(f64::total_cmp);
    let rows_of = |idx: &[usize]| -> Vec<(usize, usize)> {
        idx.iter()
            .map(|&i| (prep.windows[i].coin, prep.windows[i].row))
            .collect()
    };
    let volatility = VolatilityModel::fit(&prep.frames, &rows_of(&prep.splits.train))?;
    info!(
        rows = volatility.rows,
        residual_var = volatility.residual_var,
        "volatility model fitted on the training split"
    );
    let mut metadata = ModelMetadata {
        format_version: FORMAT_VERSION,
        name: cfg.model_name.clone(),
        version: String::new(),
        run_id: started.run.run_id.clone(),
        kind: cfg.model_kind.clone(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        feature_spec_hash: spec().hash.clone(),
        feature_spec_version: spec().version,
        inputs: MODEL_INPUTS.iter().map(|s| s.to_string()).collect(),
        lookback: cfg.lookback,
        hidden: cfg.hidden,
        scaler: prep.scaler.clone(),
        conformal: Vec::new(),
        volatility,
        calibrator: cfg.calibrator,
        // Replaced below by the calibration split's scores; predictions do not read it.
        calibration: CalibrationState::new(&levels, vec![1.0]),
        data: data.info.clone(),
        metrics: BTreeMap::new(),
        params: data.params.iter().cloned().collect(),
        git_commit: started.commit.clone(),
        reference: prep.reference.clone(),
        weights_sha256: None,
    };
    let draft = ModelPackage {
        metadata: metadata.clone(),
        weights: fitted.outcome.weights.clone(),
    };
    let draft = Forecaster::from_package(draft, Path::new("(new model)"))?;
    let calib_pred = predict(&draft, prep, &prep.splits.calib)?;
    let mut calib_res = Vec::with_capacity(calib_pred.len());
    let mut scores: Vec<(i64, f64)> = Vec::with_capacity(calib_pred.len());
    for (&i, p) in prep.splits.calib.iter().zip(&calib_pred) {
        let w = prep.windows[i];
        let frame = &prep.frames[w.coin];
        let err = (frame.target_logret_1h[w.row] - p).abs();
        calib_res.push(err);
        scores.push((frame.ts[w.row], err / draft.sigma_at(frame, w.row)));
    }
    // Oldest first across coins: the window slides in time.
    scores.sort_by_key(|&(ts, _)| ts);
    metadata.calibration =
        CalibrationState::new(&levels, scores.into_iter().map(|(_, s)| s).collect());
    let forecaster = Forecaster::from_package(
        ModelPackage {
            metadata: metadata.clone(),
            weights: fitted.outcome.weights.clone(),
        },
        Path::new("(new model)"),
    )?;
    metadata.conformal = levels
        .iter()
        .map(|&level| ConformalQuantile {
            level,
            q: conformal_quantile(&calib_res, level),
        })
        .collect();
    Ok(Calibrated {
        metadata,
        forecaster,
        levels,
    })
}

/// Prices of the test rows, in test order.
#[derive(Debug, Clone, Default)]
pub struct TestRows {
    /// Predicted log returns.
    pub pred_logret: Vec<f64>,
    /// Last known close, USD.
    pub last: Vec<f64>,
    /// Actual next-hour close, USD.
    pub actual: Vec<f64>,
    /// Predicted next-hour close, USD.
    pub model: Vec<f64>,
    /// σ̂ of each row.
    pub sigma: Vec<f64>,
    /// Per level (ascending), the served lower bound of each row, USD.
    pub lower: Vec<Vec<f64>>,
    /// Per level (ascending), the served upper bound of each row, USD.
    pub upper: Vec<Vec<f64>>,
}

/// The served intervals of the test rows: each coin's test hours replayed in order through
/// the serving path ([`intervals::replay()`]), from the package's calibrator state, so every
/// interval was known before its hour.
fn replay_test(
    fc: &Forecaster,
    prep: &Prepared,
    test: &[usize],
) -> Result<std::collections::HashMap<(usize, usize), ScoredHour>, TrainError> {
    let mut spans: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for &i in test {
        let w = prep.windows[i];
        let e = spans.entry(w.coin).or_insert((w.row, w.row));
        e.0 = e.0.min(w.row);
        e.1 = e.1.max(w.row);
    }
    let mut out = std::collections::HashMap::new();
    for (coin, (lo, hi)) in spans {
        let frame = &prep.frames[coin];
        let mut cal = fc.calibrator();
        let mut row = lo;
        intervals::replay(fc, &mut cal, frame, lo..hi + 1, |h| {
            // Rows are visited in order; find this hour's row from the last one.
            while frame.ts[row] != h.ts {
                row += 1;
            }
            out.insert((coin, row), h.clone());
        })?;
    }
    Ok(out)
}

/// The candidate model and how it did.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// The candidate package: metadata with conformal quantiles and test metrics.
    pub package: ModelPackage,
    /// The interval levels, ascending.
    pub levels: Vec<f64>,
    /// The test rows.
    pub rows: TestRows,
    /// The model and the baselines on the test split.
    pub test: TestMetrics,
    /// Each interval level on the test split, ascending.
    pub intervals: Vec<IntervalMetrics>,
    /// The walk-forward folds, when asked for.
    pub walk_forward: Option<WalkForward>,
}

/// Step 6: walk-forward folds (when asked for), then the model and the baselines on the
/// same test rows, prices in USD. Returns the candidate package with its test metrics.
pub fn evaluate(
    cfg: &Config,
    data: &TrainingData,
    fitted: &Fitted,
    calibrated: Calibrated,
) -> Result<Evaluated, TrainError> {
    let prep = &data.prep;
    let walk_forward = walk_forward(cfg, prep)?;
    let test = &prep.splits.test;
    let pred_logret = predict(&calibrated.forecaster, prep, test)?;
    let roll5 = spec()
        .index("rolling_mean_5")
        .ok_or_else(|| TrainError::Usage("feature rolling_mean_5 is missing".into()))?;
    let scored = replay_test(&calibrated.forecaster, prep, test)?;
    let nl = calibrated.levels.len();
    let mut rows = TestRows {
        lower: vec![Vec::with_capacity(test.len()); nl],
        upper: vec![Vec::with_capacity(test.len()); nl],
        ..TestRows::default()
    };
    let mut roll = vec![];
    for (&i, p) in test.iter().zip(&pred_logret) {
        let w = prep.windows[i];
        let f = &prep.frames[w.coin];
        let h = scored.get(&(w.coin, w.row)).ok_or_else(|| {
            TrainError::Usage(format!(
                "test hour {} of {} was not scored by the replay",
                fmt_ms(f.ts[w.row]),
                f.coin
            ))
        })?;
        rows.last.push(f.close[w.row]);
        rows.actual.push(f.target_close_1h[w.row]);
        rows.model.push(f.close[w.row] * p.exp());
        rows.sigma.push(h.sigma);
        for (k, iv) in h.intervals.iter().enumerate() {
            rows.lower[k].push(iv.lower);
            rows.upper[k].push(iv.upper);
        }
        roll.push(f.row(w.row)[roll5]);
    }
    rows.pred_logret = pred_logret;
    let (last, actual) = (&rows.last, &rows.actual);
    let rmse_p = rmse(last, actual);
    let metrics = TestMetrics {
        model: point_metrics(last, actual, &rows.model, rmse_p),
        persistence: point_metrics(last, actual, last, rmse_p),
        rolling_mean_5: point_metrics(last, actual, &roll, rmse_p),
    };
    let mut metadata = calibrated.metadata;
    let intervals: Vec<IntervalMetrics> = metadata
        .conformal
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let online = Bounds {
                lower: &rows.lower[k],
                upper: &rows.upper[k],
                sigma: &rows.sigma,
            };
            interval_metrics(last, actual, &rows.pred_logret, c.level, c.q, online)
        })
        .collect();
    metadata.metrics = flat_metrics(&metrics, &intervals);
    Ok(Evaluated {
        package: ModelPackage {
            metadata,
            weights: fitted.outcome.weights.clone(),
        },
        levels: calibrated.levels,
        rows,
        test: metrics,
        intervals,
        walk_forward,
    })
}

/// The walk-forward folds ([`walk`]), or `None` when `--walk-forward` is 0.
fn walk_forward(cfg: &Config, prep: &Prepared) -> Result<Option<WalkForward>, TrainError> {
    if cfg.walk_forward == 0 {
        return Ok(None);
    }
    info!(folds = cfg.walk_forward, "walk-forward evaluation");
    let fit_cfg = cfg.fit_config();
    let go = || {
        walk::run(
            prep,
            &fit_cfg,
            cfg.walk_forward,
            cfg.lookback,
            cfg.max_train_rows,
        )
    };
    // CPU-bound for minutes.
    Ok(Some(rps_core::cpu_bound(go)?))
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
        m.insert(format!("interval_{l}_score_usd"), i.interval_score_usd);
        m.insert(
            format!("interval_{l}_longest_miss_run_hours"),
            i.longest_miss_run_hours as f64,
        );
        if let Some(w) = i.worst_720h_coverage {
            m.insert(format!("interval_{l}_worst_720h_coverage"), w);
        }
        for (t, c) in ["low", "mid", "high"]
            .iter()
            .zip(&i.coverage_by_vol_tercile)
        {
            m.insert(format!("interval_{l}_coverage_vol_{t}"), *c);
        }
        let b = &i.baseline_static;
        m.insert(format!("interval_{l}_static_coverage"), b.coverage);
        m.insert(format!("interval_{l}_static_width_usd"), b.mean_width_usd);
        m.insert(
            format!("interval_{l}_static_score_usd"),
            b.interval_score_usd,
        );
    }
    m.retain(|_, v| v.is_finite());
    m
}

/// The scratch directory a run stages the package and the champion in, in the system temp
/// directory: `rps-train-<pid>-<random>`; those of dead pids are removed first.
pub fn scratch_dir() -> Result<tempfile::TempDir, TrainError> {
    let tmp = std::env::temp_dir();
    rps_core::fs::remove_dead_writers(&tmp, SCRATCH_PREFIX);
    tempfile::Builder::new()
        .prefix(&format!("{SCRATCH_PREFIX}{}-", std::process::id()))
        .tempdir_in(&tmp)
        .map_err(io(&tmp))
}

/// Step 7: the promotion decision (see [`crate::gate`]): the current champion, downloaded
/// into `scratch`, is re-scored on the same test rows as the candidate.
pub async fn gate<T: Tracker>(
    cfg: &Config,
    tracker: &T,
    prep: &Prepared,
    evaluated: &Evaluated,
    scratch: &Path,
) -> Result<GateDecision, TrainError> {
    let learnable = cfg.learnable();
    let (new_rmse, persistence_rmse) = (evaluated.test.model.rmse, evaluated.test.persistence.rmse);
    let mut g = GateDecision {
        forced: cfg.force_promote,
        new_rmse: Some(new_rmse),
        persistence_rmse: Some(persistence_rmse),
        rows: prep.splits.test.len(),
        ..Default::default()
    };
    match tracker.get_alias(&cfg.model_name, CHAMPION).await? {
        None if learnable && gating::below_floor(new_rmse, persistence_rmse) => {
            g.reason = format!(
                "no champion yet, but the new model (RMSE {new_rmse:.3}) is not better than \
                 persistence (no change, RMSE {persistence_rmse:.3}) on {} rows",
                g.rows
            );
            g.persistence_champion = true;
        }
        None => {
            g.promote = true;
            g.reason = "no champion yet: the first model is promoted".into();
        }
        Some(mv) => {
            g.champion_version = Some(mv.version.clone());
            let dir = tracker.download(&mv, &scratch.join("champion")).await?;
            rescore(cfg, &mut g, prep, evaluated, &dir, &mv.version)?;
        }
    }
    g.persistence_champion &= cfg.persistence_champion;
    if cfg.force_promote && !g.promote {
        g.promote = true;
        g.persistence_champion = false;
        g.reason = format!("forced (--force-promote); {}", g.reason);
    }
    info!(promote = g.promote, reason = %g.reason, "promotion gate");
    Ok(g)
}

/// Judges the candidate against the champion package in `dir` (version `champion`).
fn rescore(
    cfg: &Config,
    g: &mut GateDecision,
    prep: &Prepared,
    evaluated: &Evaluated,
    dir: &Path,
    champion: &str,
) -> Result<(), TrainError> {
    match Forecaster::load(dir) {
        Ok(old) => {
            let new =
                Forecaster::from_package(evaluated.package.clone(), Path::new("(new model)"))?;
            let r = gating::rescore(&new, &old, prep, &prep.splits.test);
            let learnable = cfg.learnable();
            g.new_rmse = Some(r.new);
            g.champion_rmse = Some(r.champion);
            g.persistence_rmse = Some(r.persistence);
            g.rows = r.rows;
            (g.promote, g.reason) = gating::judge(&r, cfg.min_gate_rows, champion, learnable);
            // Neither beats "no change" and the champion is not persistence already: the
            // persistence kind takes over (when there are enough rows to say so).
            g.persistence_champion = learnable
                && r.rows >= cfg.min_gate_rows
                && gating::below_floor(r.new, r.persistence)
                && gating::below_floor(r.champion, r.persistence)
                && old.metadata().kind != rps_model::kinds::persistence::NAME;
        }
        Err(e) => {
            // A champion this build cannot load (older feature spec) cannot serve either.
            warn!(error = %e, "the champion cannot be re-scored");
            g.promote = true;
            g.reason = format!("champion v{champion} cannot be loaded by this build: {e}");
        }
    }
    Ok(())
}

/// The files of the report directory.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    /// `learning_curve.svg`.
    pub learning_curve: PathBuf,
    /// `predictions.svg`.
    pub predictions: PathBuf,
    /// `coverage.svg`.
    pub coverage: PathBuf,
    /// `evaluation.json`.
    pub json: PathBuf,
    /// `evaluation.html`.
    pub html: PathBuf,
}

/// The package staged on disk and the reports written.
#[derive(Debug, Clone)]
pub struct Packaged {
    /// The package (version not set yet).
    pub package: ModelPackage,
    /// Where it is staged (in the scratch directory).
    pub dir: PathBuf,
    /// The evaluation report as written.
    pub evaluation: Evaluation,
    /// The plots and reports.
    pub files: ReportFiles,
}

/// Step 8: saves the package into `scratch` (`--package-out` is replaced only after
/// registration, by [`publish`]), checks that the saved package predicts like the one in
/// memory, and writes the plots and the reports.
pub fn package(
    cfg: &Config,
    data: &TrainingData,
    fitted: &Fitted,
    evaluated: Evaluated,
    gate: GateDecision,
    registry: String,
    scratch: &Path,
) -> Result<Packaged, TrainError> {
    let prep = &data.prep;
    let dir = scratch.join("model");
    evaluated.package.save(&dir)?;
    check_reload(&dir, prep, &evaluated.rows.pred_logret)?;

    std::fs::create_dir_all(&cfg.report_dir).map_err(io(&cfg.report_dir))?;
    let lc_path = cfg.report_dir.join("learning_curve.svg");
    report::learning_curve_svg(&fitted.outcome.history, &lc_path)?;
    let pv_path = cfg.report_dir.join("predictions.svg");
    let (level, rows) = plot_rows(&evaluated);
    report::predictions_svg(&rows, level, &pv_path)?;
    let cv_path = cfg.report_dir.join("coverage.svg");
    report::coverage_svg(&rolling_coverage(&evaluated), COVERAGE_PLOT_HOURS, &cv_path)?;

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
    let outcome = &fitted.outcome;
    let epochs_run = outcome.history.len();
    let meta = &evaluated.package.metadata;
    let evaluation = Evaluation {
        model_name: cfg.model_name.clone(),
        run_id: meta.run_id.clone(),
        created_at: meta.created_at.clone(),
        registry,
        feature_spec_hash: spec().hash.clone(),
        data_digest: meta.data.digest.clone(),
        coins: cfg.coins.clone(),
        params: data.params.iter().cloned().collect(),
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
            seconds: fitted.seconds,
            seconds_per_epoch: outcome.history.iter().map(|h| h.seconds).sum::<f64>()
                / epochs_run.max(1) as f64,
            history: outcome.history.clone(),
        },
        test: evaluated.test,
        intervals: evaluated.intervals,
        gate,
        walk_forward: evaluated.walk_forward,
        version: None,
    };
    let plots = [lc_path, pv_path, cv_path];
    let (json, html) = write_reports(cfg, &evaluation, &plots)?;
    let [lc_path, pv_path, cv_path] = plots;
    Ok(Packaged {
        package: evaluated.package,
        dir,
        evaluation,
        files: ReportFiles {
            learning_curve: lc_path,
            predictions: pv_path,
            coverage: cv_path,
            json,
            html,
        },
    })
}

/// The saved package must load and predict exactly like the in-memory one (on the first
/// test window, whose in-memory prediction is `test_pred[0]`).
fn check_reload(dir: &Path, prep: &Prepared, test_pred: &[f64]) -> Result<(), TrainError> {
    let reloaded = Forecaster::load(dir)?;
    let Some(&i) = prep.splits.test.first() else {
        return Ok(());
    };
    let w = prep.windows[i];
    let again = reloaded.predict_logrets(&prep.frames[w.coin], &[w.row])?;
    // The reloaded weights are the same f32 values, but the inference path may sum in
    // another order than training's batched one: compare to f32 precision, not bit-exact.
    let tol = 1e-5 * again[0].abs().max(test_pred[0].abs()) + 1e-9;
    if (again[0] - test_pred[0]).abs() > tol || !again[0].is_finite() {
        return Err(TrainError::from(ModelError::BadPackage {
            path: dir.to_path_buf(),
            reason: format!(
                "reloaded package predicts {} instead of {}",
                again[0], test_pred[0]
            ),
        }));
    }
    Ok(())
}

/// The window of the rolling-coverage plot: a week of hours (the 720 h figure of the
/// report is its worst month).
const COVERAGE_PLOT_HOURS: usize = 168;

/// Per interval level, the coverage of every [`COVERAGE_PLOT_HOURS`] consecutive test rows.
fn rolling_coverage(ev: &Evaluated) -> Vec<(f64, Vec<f64>)> {
    let r = &ev.rows;
    ev.package
        .metadata
        .conformal
        .iter()
        .enumerate()
        .map(|(l, c)| {
            let inside: Vec<bool> = (0..r.actual.len())
                .map(|k| r.actual[k] >= r.lower[l][k] && r.actual[k] <= r.upper[l][k])
                .collect();
            (
                c.level,
                eval::rolling_coverage(&inside, COVERAGE_PLOT_HOURS),
            )
        })
        .collect()
}

/// The predicted-vs-actual plot: the 90% level (else the middle one) and the last 240
/// test hours with that interval.
fn plot_rows(ev: &Evaluated) -> (f64, Vec<PlotRow>) {
    let levels = &ev.levels;
    let level = levels
        .iter()
        .copied()
        .find(|l| (*l - 0.9).abs() < 1e-9)
        .unwrap_or(levels[levels.len() / 2]);
    let l = levels.iter().position(|x| *x == level).unwrap_or(0);
    let r = &ev.rows;
    let n = r.pred_logret.len();
    let rows = (n.saturating_sub(240)..n)
        .map(|k| PlotRow {
            actual: r.actual[k],
            pred: r.model[k],
            lower: r.lower[l][k],
            upper: r.upper[l][k],
        })
        .collect();
    (level, rows)
}

/// Writes `evaluation.json`, `evaluation.html` (plots inlined) and the `--metrics` file.
fn write_reports(
    cfg: &Config,
    ev: &Evaluation,
    [lc, pv, cv]: &[PathBuf; 3],
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
    let page =
        report::html(ev, &strip(read(lc)?), &strip(read(pv)?), &strip(read(cv)?)).map_err(|e| {
            TrainError::Report {
                path: html_path.clone(),
                reason: e.to_string(),
            }
        })?;
    rps_core::fs::write(&html_path, page.as_bytes()).map_err(io(&html_path))?;
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

/// Step 9: final metrics, gate decision and artifacts to the run, then the registration
/// (new version, `challenger` alias, `champion` when promoted) and the tags naming it.
/// Registration comes last, so a failure anywhere before leaves no version behind.
pub async fn track_and_register<T: Tracker>(
    cfg: &Config,
    tracker: &T,
    run: &RunHandle,
    packaged: &Packaged,
) -> Result<String, TrainError> {
    let gate = &packaged.evaluation.gate;
    tracker
        .log_metrics(run, &final_metrics(packaged, now_ms()))
        .await?;
    tracker.set_tags(run, &gate_tags(gate)).await?;
    let files = &packaged.files;
    tracker.log_artifact(run, &packaged.dir, "model").await?;
    tracker
        .log_artifact(run, &files.learning_curve, "plots")
        .await?;
    tracker
        .log_artifact(run, &files.predictions, "plots")
        .await?;
    tracker.log_artifact(run, &files.coverage, "plots").await?;
    tracker.log_artifact(run, &files.json, "report").await?;
    tracker.log_artifact(run, &files.html, "report").await?;
    if let Some(p) = &cfg.profile {
        tracker.log_artifact(run, p, "data").await?;
    }

    let mv = tracker.register(run, &cfg.model_name, "model").await?;
    tracker
        .set_alias(&cfg.model_name, CHALLENGER, &mv.version)
        .await?;
    if gate.promote {
        tracker
            .set_alias(&cfg.model_name, CHAMPION, &mv.version)
            .await?;
    }
    tracker
        .set_tags(
            run,
            &[
                ("registered_model".into(), cfg.model_name.clone()),
                ("registered_version".into(), mv.version.clone()),
            ],
        )
        .await?;
    info!(model = %cfg.model_name, version = %mv.version, alias = if gate.promote { CHAMPION } else { CHALLENGER }, "registered");
    Ok(mv.version)
}

/// The run's final metrics (at step 0): the package's test metrics, the gate's figures,
/// training and walk-forward.
fn final_metrics(packaged: &Packaged, now: i64) -> Vec<Metric> {
    let ev = &packaged.evaluation;
    let gate = &ev.gate;
    let mut finals: Vec<Metric> = packaged
        .package
        .metadata
        .metrics
        .iter()
        .map(|(k, v)| Metric::new(k.clone(), *v, 0, now))
        .collect();
    for (k, v) in [
        ("gate_new_rmse", gate.new_rmse),
        ("gate_champion_rmse", gate.champion_rmse),
        ("gate_persistence_rmse", gate.persistence_rmse),
    ] {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            finals.push(Metric::new(k, v, 0, now));
        }
    }
    finals.push(Metric::new("gate_rows", gate.rows as f64, 0, now));
    finals.push(Metric::new(
        "best_epoch",
        ev.training.best_epoch as f64,
        0,
        now,
    ));
    finals.push(Metric::new("train_seconds", ev.training.seconds, 0, now));
    if let Some(wf) = &ev.walk_forward {
        for (k, v) in wf.flat_metrics() {
            finals.push(Metric::new(k, v, 0, now));
        }
    }
    finals
}

/// The gate decision as run tags.
fn gate_tags(gate: &GateDecision) -> Vec<(String, String)> {
    let decision = if gate.promote {
        "promoted"
    } else {
        "challenger"
    };
    let mut tags = vec![
        ("gate_decision".to_string(), decision.to_string()),
        ("gate_reason".to_string(), gate.reason.clone()),
        ("gate_forced".to_string(), gate.forced.to_string()),
        (
            "gate_persistence_champion".to_string(),
            gate.persistence_champion.to_string(),
        ),
    ];
    if let Some(v) = &gate.champion_version {
        tags.push(("gate_champion_version".into(), v.clone()));
    }
    tags
}

/// Step 10: the local outputs learn the registered version (the uploaded copies predate
/// it): `--package-out` is replaced and the reports are written again.
pub fn publish(cfg: &Config, packaged: Packaged, version: String) -> Result<Summary, TrainError> {
    let Packaged {
        mut package,
        mut evaluation,
        files,
        ..
    } = packaged;
    evaluation.version = Some(version.clone());
    if let Some(dir) = &cfg.package_out {
        package.metadata.version = version.clone();
        package.save(dir)?;
    }
    write_reports(
        cfg,
        &evaluation,
        &[
            files.learning_curve.clone(),
            files.predictions.clone(),
            files.coverage.clone(),
        ],
    )?;
    Ok(Summary {
        run_id: evaluation.run_id.clone(),
        version,
        evaluation,
        candidate: None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rps_mlflow::{Error, ModelVersion, Result, RunStatus};

    use super::*;
    use crate::data::SplitFractions;

    /// A tracker that records what the steps ask of it; `close_orphaned_runs` fails.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Recorder {
        fn note(&self, call: String) {
            self.0.lock().expect("not poisoned").push(call);
        }

        fn calls(&self) -> Vec<String> {
            self.0.lock().expect("not poisoned").clone()
        }
    }

    fn run() -> RunHandle {
        RunHandle {
            run_id: "r1".into(),
            experiment_id: "e".into(),
            run_name: "n".into(),
            artifact_uri: String::new(),
        }
    }

    impl Tracker for Recorder {
        fn describe(&self) -> String {
            "recorder".into()
        }
        async fn start_run(
            &self,
            exp: &str,
            name: &str,
            tags: &[(String, String)],
        ) -> Result<RunHandle> {
            let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            self.note(format!("start_run {exp} {name} {}", tags.join(" ")));
            Ok(run())
        }
        async fn close_orphaned_runs(&self, _: &str, _: &str) -> Result<Vec<String>> {
            Err(Error::NotFound {
                what: "the server".into(),
            })
        }
        async fn log_params(&self, _: &RunHandle, params: &[(String, String)]) -> Result<()> {
            self.note(format!("log_params {}", params.len()));
            Ok(())
        }
        async fn log_metrics(&self, _: &RunHandle, metrics: &[Metric]) -> Result<()> {
            self.note(format!("log_metrics {}", metrics.len()));
            Ok(())
        }
        async fn set_tags(&self, _: &RunHandle, tags: &[(String, String)]) -> Result<()> {
            self.note(format!("set_tags {}", tags.len()));
            Ok(())
        }
        async fn log_input(&self, _: &RunHandle, ds: &Dataset) -> Result<()> {
            self.note(format!("log_input {}", ds.name));
            Ok(())
        }
        async fn log_artifact(&self, _: &RunHandle, _: &Path, path: &str) -> Result<()> {
            self.note(format!("log_artifact {path}"));
            Ok(())
        }
        async fn end_run(&self, _: &RunHandle, status: RunStatus) -> Result<()> {
            self.note(format!("end_run {status:?}"));
            Ok(())
        }
        async fn register(&self, _: &RunHandle, model: &str, _: &str) -> Result<ModelVersion> {
            unimplemented!("register {model}")
        }
        async fn set_alias(&self, _: &str, alias: &str, _: &str) -> Result<()> {
            self.note(format!("set_alias {alias}"));
            Ok(())
        }
        async fn get_alias(&self, _: &str, _: &str) -> Result<Option<ModelVersion>> {
            Ok(None)
        }
        async fn download(&self, _: &ModelVersion, dest: &Path) -> Result<PathBuf> {
            Ok(dest.to_path_buf())
        }
    }

    fn config(registry: &Path) -> Config {
        Config {
            store: registry.display().to_string(),
            coins: vec!["BTC".into()],
            registry: registry.to_path_buf(),
            model_name: "rps-forecaster".into(),
            experiment: "rps".into(),
            run_name: Some("nightly".into()),
            model_kind: "lstm".into(),
            epochs: 1,
            hidden: 4,
            lookback: 4,
            batch_size: 8,
            lr: 1e-3,
            weight_decay: 0.0,
            patience: 1,
            seed: 1,
            max_train_rows: None,
            split: SplitFractions {
                train: 0.7,
                val: 0.1,
                calib: 0.1,
            },
            levels: vec![0.9],
            calibrator: rps_model::intervals::CalibratorParams::default(),
            metrics: None,
            package_out: None,
            report_dir: registry.join("reports"),
            profile: None,
            force_promote: false,
            walk_forward: 0,
            min_gate_rows: 1,
            persistence_champion: true,
        }
    }

    #[tokio::test]
    async fn a_run_is_tagged_with_its_host_and_pid_and_a_failed_orphan_sweep_only_warns() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = config(dir.path());
        let store = Store::open(&cfg.store).expect("local store");
        let tracker = Recorder::default();
        let started = start_run(&cfg, &tracker, &store).await.expect("started");
        close_orphans(&tracker, &cfg.experiment, &started.host).await;
        let calls = tracker.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        let pid = format!("{PID_TAG}={}", std::process::id());
        let host = format!("{HOST_TAG}={}", hostname());
        assert!(calls[0].starts_with("start_run rps nightly "), "{calls:?}");
        assert!(
            calls[0].contains(&pid) && calls[0].contains(&host),
            "{calls:?}"
        );
        assert_eq!(started.host, hostname());
    }

    #[test]
    fn the_gate_decision_becomes_tags_naming_the_champion_it_was_judged_against() {
        let g = GateDecision {
            promote: false,
            reason: "worse".into(),
            champion_version: Some("3".into()),
            ..GateDecision::default()
        };
        let tags = gate_tags(&g);
        assert_eq!(
            tags,
            [
                ("gate_decision", "challenger"),
                ("gate_reason", "worse"),
                ("gate_forced", "false"),
                ("gate_persistence_champion", "false"),
                ("gate_champion_version", "3"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }
}
