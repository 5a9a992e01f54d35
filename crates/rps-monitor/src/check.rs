//! `rps-monitor drift`: the DAG's retraining check, from three signals per coin over the last
//! `--window-hours` of stored features:
//!
//! - `psi_share`: data drift — the same PSI as the server's gauges against the champion's
//!   reference histograms, drift when the share of features past their limit is reached;
//! - `page_hinkley`: concept drift — a Page-Hinkley test on the standardised realised errors
//!   `|error| / σ̂` of the window's hours, replayed from the store through the serving path
//!   (the calibrator first replays the `W` hours before the window, as a server does at start);
//! - `coverage`: the served 90 % interval covered less than `--coverage-floor` of the window.
//!
//! It writes a JSON report saying which signals fired, and tells Airflow to branch to
//! retraining with exit code 3 when any did (the promotion gate still decides what is served).
//!
//! The window ends at `--end` (Airflow's data interval end) or, without it, at the newest
//! feature row: the check never reads the clock, so a re-run gives the same report.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rps_core::ExitCode;
use rps_core::Store;
use rps_core::storage::layout;
use rps_core::time::{HOUR_MS, fmt_ms};
use rps_features as features;
use rps_mlflow::source::ModelSpec;
use rps_model::Forecaster;
use serde::Serialize;

use crate::drift::{DriftRule, PageHinkley, PsiSummary, psi_summary};
use crate::error::{MonitorError, Result};

/// Rows needed in the window for a PSI worth reporting.
pub const MIN_ROWS: usize = 24;

/// What the drift check needs.
#[derive(Debug, Clone)]
pub struct DriftConfig {
    /// Store location.
    pub store: String,
    /// Coins to check.
    pub coins: Vec<String>,
    /// The model whose reference is compared against.
    pub model: ModelSpec,
    /// Where registry downloads go.
    pub cache_dir: PathBuf,
    /// Hours of features in the window.
    pub window_hours: u32,
    /// When a feature, and the data, have drifted.
    pub rule: DriftRule,
    /// When the replayed errors signal retraining.
    pub errors: ErrorRule,
    /// Report file (JSON).
    pub report: PathBuf,
    /// End of the window (ms, inclusive of the hour before); `None` = newest row.
    pub end: Option<i64>,
}

/// One coin's result.
#[derive(Debug, Clone, Serialize)]
pub struct CoinDrift {
    /// Coin code.
    pub coin: String,
    /// First hour in the window (RFC 3339).
    pub window_start: String,
    /// Last hour in the window (RFC 3339).
    pub window_end: String,
    /// PSI per feature and verdict.
    #[serde(flatten)]
    pub summary: PsiSummary,
    /// The replayed errors of the window.
    pub errors: ErrorSignals,
    /// The signals that fired for this coin (`psi_share`, `page_hinkley`, `coverage`).
    pub fired: Vec<String>,
}

/// When replayed errors signal retraining.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ErrorRule {
    /// 90 % coverage over the window below this fires `coverage`.
    pub coverage_floor: f64,
    /// Page-Hinkley tolerance δ.
    pub ph_delta: f64,
    /// Page-Hinkley threshold λ.
    pub ph_lambda: f64,
}

/// Standardised errors above this are clipped before the Page-Hinkley test: one crash hour
/// alone cannot trigger a retrain, a run of large errors still does.
const Z_CLIP: f64 = 5.0;

/// The window's replayed errors.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorSignals {
    /// Hours of the window scored (the next bar is known and one hour later).
    pub scored_hours: usize,
    /// Mean of the standardised errors `|error| / σ̂` (clipped at 5).
    pub mean_standardised_error: f64,
    /// The Page-Hinkley statistic at the end of the window.
    pub page_hinkley_statistic: f64,
    /// Whether it crossed λ in the window.
    pub page_hinkley_alarm: bool,
    /// Realised coverage of each level in the window (`"0.9"`).
    pub coverage: BTreeMap<String, f64>,
    /// The level checked against the floor (the one nearest 0.9).
    pub coverage_level: f64,
    /// Whether its coverage fell below the floor.
    pub coverage_breach: bool,
}

/// The JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    /// Model name.
    pub model_name: String,
    /// Model version.
    pub model_version: String,
    /// Where the model came from.
    pub model_source: String,
    /// Feature spec hash shared by model and features.
    pub feature_spec_hash: String,
    /// Window length, hours.
    pub window_hours: u32,
    /// Base PSI threshold (each coin's `limits` show the per-feature limits used).
    pub threshold: f64,
    /// Share of features that must drift.
    pub share_needed: f64,
    /// Largest PSI over coins and features.
    pub max_psi: f64,
    /// Coin and feature of the largest PSI (`BTC/logret_std_24`).
    pub max_at: Option<String>,
    /// Whether any signal fired for any coin (exit code 3).
    pub drift: bool,
    /// The signals that fired, over all coins, in the order psi_share, page_hinkley,
    /// coverage.
    pub fired: Vec<String>,
    /// Per coin.
    pub coins: Vec<CoinDrift>,
}

/// Runs the check; `Ok(Quality)` when drift is detected, `Ok(Ok)` otherwise.
pub async fn run_drift(cfg: &DriftConfig) -> Result<ExitCode> {
    if cfg.window_hours == 0 {
        return Err(MonitorError::Usage {
            flag: "window-hours",
            reason: "must be at least 1".into(),
        });
    }
    cfg.rule
        .check()
        .map_err(|(flag, reason)| MonitorError::Usage { flag, reason })?;
    let e = cfg.errors;
    if !(e.coverage_floor.is_finite() && (0.0..=1.0).contains(&e.coverage_floor)) {
        return Err(MonitorError::Usage {
            flag: "coverage-floor",
            reason: format!("{} is not in [0, 1]", e.coverage_floor),
        });
    }
    if !(e.ph_lambda.is_finite()
        && e.ph_lambda > 0.0
        && e.ph_delta.is_finite()
        && e.ph_delta >= 0.0)
    {
        return Err(MonitorError::Usage {
            flag: "ph-lambda",
            reason: format!(
                "λ = {} must be positive and δ = {} non-negative",
                e.ph_lambda, e.ph_delta
            ),
        });
    }
    let model = load_model(&cfg.model, &cfg.cache_dir).await?;
    let store = Store::open(&cfg.store)?;
    let mut coins = Vec::new();
    for coin in &cfg.coins {
        coins.push(check_coin(&store, coin, &model, cfg).await?);
    }
    let mut report = DriftReport {
        model_name: model.forecaster.metadata().name.clone(),
        model_version: model.version,
        model_source: model.source,
        feature_spec_hash: features::spec().hash.clone(),
        window_hours: cfg.window_hours,
        threshold: cfg.rule.threshold,
        share_needed: cfg.rule.share,
        max_psi: 0.0,
        max_at: None,
        drift: false,
        fired: Vec::new(),
        coins,
    };
    for c in &report.coins {
        if report.max_at.is_none() || c.summary.max_psi > report.max_psi {
            report.max_psi = c.summary.max_psi;
            report.max_at = c
                .summary
                .max_feature
                .as_ref()
                .map(|f| format!("{}/{f}", c.coin));
        }
        report.drift |= !c.fired.is_empty();
    }
    for signal in ["psi_share", "page_hinkley", "coverage"] {
        if report
            .coins
            .iter()
            .any(|c| c.fired.iter().any(|f| f == signal))
        {
            report.fired.push(signal.to_string());
        }
    }
    write_report(&cfg.report, &report)?;
    // The one-line summary for the DAG's log; a closed stdout is not a reason to fail.
    let per_coin: Vec<String> = report
        .coins
        .iter()
        .map(|c| {
            format!(
                "{} {}/{} features past their limit, 90 % coverage {:.3}, Page-Hinkley {:.1}",
                c.coin,
                c.summary.drifted.len(),
                c.summary.psi.len(),
                c.errors
                    .coverage
                    .get(&crate::backtest::level_key(c.errors.coverage_level))
                    .copied()
                    .unwrap_or(f64::NAN),
                c.errors.page_hinkley_statistic
            )
        })
        .collect();
    let _ = writeln!(
        std::io::stdout(),
        "drift check: {} (drift at {:.0} %), max PSI {:.4}{} over {} h -> {} (report {})",
        per_coin.join(", "),
        cfg.rule.share * 100.0,
        report.max_psi,
        report
            .max_at
            .as_deref()
            .map(|a| format!(" at {a}"))
            .unwrap_or_default(),
        cfg.window_hours,
        if report.drift {
            format!("DRIFT ({} fired), retrain", report.fired.join(", "))
        } else {
            "no drift".to_string()
        },
        cfg.report.display()
    );
    Ok(if report.drift {
        ExitCode::Quality
    } else {
        ExitCode::Ok
    })
}

/// The model compared against, and how the report names it.
pub(crate) struct Model {
    pub(crate) forecaster: Forecaster,
    /// The registry version, else the package's own, else a fingerprint.
    pub(crate) version: String,
    /// `dir:<path>` or `models:/<name>@<alias>`.
    pub(crate) source: String,
}

/// Resolves the spec, fetches the package and loads it (a download is deleted once loaded).
/// `Forecaster::load` refuses a package of another feature spec than this build's.
pub(crate) async fn load_model(spec: &ModelSpec, cache_dir: &Path) -> Result<Model> {
    let source = spec.open(cache_dir)?;
    let package = source.fetch(&source.probe().await?).await?;
    tokio::task::spawn_blocking(move || {
        let forecaster = Forecaster::load(package.dir()).map_err(|e| MonitorError::ModelLoad {
            path: package.dir().to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Model {
            version: package.version_label(&forecaster.metadata().version),
            source: package.source.clone(),
            forecaster,
        })
    })
    .await
    .map_err(|e| MonitorError::Task(e.to_string()))?
}

async fn check_coin(
    store: &Store,
    coin: &str,
    model: &Model,
    cfg: &DriftConfig,
) -> Result<CoinDrift> {
    let key = layout::features(coin);
    let at = format!("{}/{key}", store.location());
    // read_frame refuses a file computed with another feature spec than this build's, which
    // is also the model's (checked when it loaded).
    let Some(frame) = features::read_frame(store, coin).await? else {
        return Err(MonitorError::Features {
            key: at,
            reason: "no features file (run rps-transform first)".into(),
        });
    };
    let Some(newest) = frame.ts.iter().copied().max() else {
        return Err(MonitorError::Features {
            key: at,
            reason: "no rows".into(),
        });
    };
    // The window holds the hours (end - window, end]; `--end` is an exclusive bound like
    // Airflow's data interval end, so the hour starting at `end` is not in it.
    let end = cfg.end.map_or(newest, |e| e - HOUR_MS);
    let start = end - (i64::from(cfg.window_hours) - 1) * HOUR_MS;
    let rows: Vec<usize> = (0..frame.len())
        .filter(|&i| frame.ts[i] >= start && frame.ts[i] <= end)
        .collect();
    if rows.len() < MIN_ROWS {
        return Err(MonitorError::Features {
            key: at,
            reason: format!(
                "{} feature rows between {} and {}; the drift check needs at least {MIN_ROWS}",
                rows.len(),
                fmt_ms(start),
                fmt_ms(end)
            ),
        });
    }
    let span = cfg.window_hours as usize;
    let summary = psi_summary(
        &model.forecaster.metadata().reference,
        rows.len(),
        span,
        cfg.rule,
        |name| {
            let j = features::spec().index(name)?;
            Some(rows.iter().map(|&i| frame.row(i)[j]).collect())
        },
    );
    let errors = error_signals(&model.forecaster, &frame, start, end, cfg.errors)?;
    let mut fired = Vec::new();
    if summary.drift {
        fired.push("psi_share".to_string());
    }
    if errors.page_hinkley_alarm {
        fired.push("page_hinkley".to_string());
    }
    if errors.coverage_breach {
        fired.push("coverage".to_string());
    }
    Ok(CoinDrift {
        coin: coin.to_string(),
        window_start: fmt_ms(start),
        window_end: fmt_ms(end),
        summary,
        errors,
        fired,
    })
}

/// Replays the calibrator's window before `start` and then the hours `start..=end` through
/// the serving path, and tests the window's standardised errors and coverage.
fn error_signals(
    fc: &Forecaster,
    frame: &features::FeatureFrame,
    start: i64,
    end: i64,
    rule: ErrorRule,
) -> Result<ErrorSignals> {
    let warm = fc.metadata().calibrator.window as i64 * HOUR_MS;
    let lo = frame.ts.partition_point(|&t| t < start - warm);
    let hi = frame.ts.partition_point(|&t| t <= end);
    let mut cal = fc.calibrator();
    let levels = cal.levels().to_vec();
    let mut z = Vec::new();
    let mut hits = vec![0usize; levels.len()];
    let replay = || {
        rps_model::intervals::replay(fc, &mut cal, frame, lo..hi, |h| {
            if h.ts >= start {
                let err = ((h.next_close / h.close).ln() - h.logret).abs();
                z.push((err / h.sigma).min(Z_CLIP));
                for (k, c) in h.covered.iter().enumerate() {
                    hits[k] += usize::from(*c);
                }
            }
        })
    };
    // One forecast per hour of the window and the calibrator's.
    rps_core::cpu_bound(replay).map_err(|e| MonitorError::Features {
        key: frame.coin.clone(),
        reason: e.to_string(),
    })?;
    let mut ph = PageHinkley::new(rule.ph_delta, rule.ph_lambda, 30);
    for &x in &z {
        ph.update(x);
    }
    let n = z.len();
    let coverage: BTreeMap<String, f64> = levels
        .iter()
        .zip(&hits)
        .map(|(&l, &h)| (crate::backtest::level_key(l), h as f64 / n.max(1) as f64))
        .collect();
    let coverage_level = levels
        .iter()
        .copied()
        .min_by(|a, b| (a - 0.9).abs().total_cmp(&(b - 0.9).abs()))
        .unwrap_or(0.9);
    let checked = coverage[&crate::backtest::level_key(coverage_level)];
    Ok(ErrorSignals {
        scored_hours: n,
        mean_standardised_error: if n == 0 {
            0.0
        } else {
            z.iter().sum::<f64>() / n as f64
        },
        page_hinkley_statistic: ph.statistic(),
        page_hinkley_alarm: ph.drift(),
        coverage,
        coverage_level,
        // With no scored hour there is no evidence either way.
        coverage_breach: n > 0 && checked < rule.coverage_floor,
    })
}

/// Writes the report atomically ([`rps_core::fs::write`]), creating the directory.
fn write_report(path: &Path, report: &DriftReport) -> Result<()> {
    let io = |source| MonitorError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_json::to_string_pretty(report).map_err(|e| io(std::io::Error::other(e)))?;
    rps_core::fs::write(path, (text + "\n").as_bytes()).map_err(io)
}
