//! `rps-monitor drift`: the DAG's data-drift check. Computes the same PSI as the server's gauges
//! for the last `--window-hours` of stored features of each coin against the champion's
//! reference histograms, writes a JSON report, and tells Airflow to branch to retraining with
//! exit code 3 when any feature's PSI exceeds the threshold.
//!
//! The window ends at `--end` (Airflow's data interval end) or, without it, at the newest
//! feature row: the check never reads the clock, so a re-run gives the same report.

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

use crate::drift::{DriftRule, PsiSummary, psi_summary};
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
    /// Whether any coin drifted (exit code 3).
    pub drift: bool,
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
        report.drift |= c.summary.drift;
    }
    write_report(&cfg.report, &report)?;
    // The one-line summary for the DAG's log; a closed stdout is not a reason to fail.
    let per_coin: Vec<String> = report
        .coins
        .iter()
        .map(|c| {
            format!(
                "{} {}/{} features past their limit",
                c.coin,
                c.summary.drifted.len(),
                c.summary.psi.len()
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
            "DRIFT, retrain"
        } else {
            "no drift"
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
    Ok(CoinDrift {
        coin: coin.to_string(),
        window_start: fmt_ms(start),
        window_end: fmt_ms(end),
        summary,
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
