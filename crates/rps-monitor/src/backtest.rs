//! `rps-monitor backtest`: replays a stored history hour by hour through the serving path —
//! the stored bars → the feature engine → the model → the online intervals
//! ([`rps_model::intervals::replay()`], the function rps-serve and rps-train run) — for a model
//! from the registry or a package directory, and reports how the forecasts and intervals did
//! on hours the model never saw.
//!
//! Only hours whose next bar is exactly one hour later are scored; a gap is never bridged
//! (the calibrator is not updated across it). The static baseline is the package's
//! calibration-split quantile of |log-return error| on the same rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rps_core::Store;
use rps_core::parquet_io;
use rps_core::time::{HOUR_MS, fmt_ms};
use rps_features as features;
use rps_mlflow::source::ModelSpec;
use rps_model::intervals::{
    self, CalibratorParams, IntervalSummary, OnlineCalibrator, ScoredHour, summarize,
};
use serde::Serialize;
use tracing::info;

use crate::check::{Model, load_model};
use crate::error::{MonitorError, Result};

/// What the backtest needs.
#[derive(Debug, Clone)]
pub struct BacktestConfig {
    /// Store location (bars are read from `raw/<COIN>.parquet`).
    pub store: String,
    /// Coins to replay.
    pub coins: Vec<String>,
    /// The model.
    pub model: ModelSpec,
    /// Where registry downloads go.
    pub cache_dir: PathBuf,
    /// First hour scored (ms, inclusive); `None` = the first hour with a full window.
    pub start: Option<i64>,
    /// End of the scored hours (ms, exclusive); `None` = after the newest bar.
    pub end: Option<i64>,
    /// Calibrator window override (default: the package's).
    pub window: Option<usize>,
    /// ACI step override (default: the package's).
    pub gamma: Option<f64>,
    /// The JSON report.
    pub report: PathBuf,
    /// The per-hour CSV, when asked for.
    pub rows: Option<PathBuf>,
}

/// The model a backtest ran.
#[derive(Debug, Clone, Serialize)]
pub struct ModelId {
    /// Registered name.
    pub name: String,
    /// Registry version (or the package's label).
    pub version: String,
    /// Model kind.
    pub kind: String,
}

/// Point-forecast figures on the scored hours.
#[derive(Debug, Clone, Serialize)]
pub struct PointFigures {
    /// RMSE of the forecast close, USD.
    pub rmse_usd: f64,
    /// MAE, USD.
    pub mae_usd: f64,
    /// RMSE of persistence (next close = this close) on the same hours, USD.
    pub persistence_rmse_usd: f64,
    /// `1 − rmse / persistence_rmse`.
    pub skill: f64,
}

/// One level of the static baseline.
#[derive(Debug, Clone, Serialize)]
pub struct StaticFigures {
    /// Coverage.
    pub coverage: f64,
    /// Mean width, USD.
    pub mean_width_usd: f64,
    /// Mean Winkler interval score, USD.
    pub interval_score_usd: f64,
}

/// The figures of a set of scored hours (all coins, or one).
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Hours scored.
    pub rows: usize,
    /// Bars in the replayed span that were not scored (no next bar one hour later, or the
    /// model's window spans a gap).
    pub skipped_gap_hours: usize,
    /// Point forecast.
    pub point: PointFigures,
    /// Served intervals by level (`"0.9"`).
    pub intervals: BTreeMap<String, IntervalSummary>,
    /// The static baseline by level.
    pub baseline_static: BTreeMap<String, StaticFigures>,
}

/// The JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct BacktestReport {
    /// The model replayed.
    pub model: ModelId,
    /// All coins' hours (each coin's in time order, coins in order).
    #[serde(flatten)]
    pub all: Figures,
    /// Per coin.
    pub coins: BTreeMap<String, Figures>,
}

/// A level as a report key: `0.9` → `"0.9"`.
pub fn level_key(level: f64) -> String {
    format!("{level}")
}

/// Runs the backtest, writes the report (and the rows), and returns the report.
pub async fn run_backtest(cfg: &BacktestConfig) -> Result<BacktestReport> {
    if cfg.coins.is_empty() {
        return Err(MonitorError::Usage {
            flag: "coins",
            reason: "name at least one coin".into(),
        });
    }
    if let (Some(s), Some(e)) = (cfg.start, cfg.end)
        && s >= e
    {
        return Err(MonitorError::Usage {
            flag: "start",
            reason: format!("{} is not before --end {}", fmt_ms(s), fmt_ms(e)),
        });
    }
    let model = load_model(&cfg.model, &cfg.cache_dir).await?;
    let meta = model.forecaster.metadata();
    let params = CalibratorParams {
        window: cfg.window.unwrap_or(meta.calibrator.window),
        gamma: cfg.gamma.unwrap_or(meta.calibrator.gamma),
    };
    if let Some(reason) = params.check() {
        return Err(MonitorError::Usage {
            flag: "calibration-window",
            reason,
        });
    }
    let store = Store::open(&cfg.store)?;
    let mut per_coin = Vec::new();
    for coin in &cfg.coins {
        let bars = parquet_io::read_bars(&store, coin).await?;
        if bars.is_empty() {
            return Err(MonitorError::Features {
                key: format!(
                    "{}/{}",
                    store.location(),
                    rps_core::storage::layout::raw(coin)
                ),
                reason: "no stored bars (run rps-extract first)".into(),
            });
        }
        let (model_ref, coin_s) = (&model, coin.clone());
        let (start, end) = (cfg.start, cfg.end);
        let go = || replay_coin(model_ref, params, &coin_s, &bars, start, end);
        let replayed = rps_core::cpu_bound(go)?;
        per_coin.push(replayed);
    }
    let report = report(&model, &per_coin);
    write_json(&cfg.report, &report)?;
    if let Some(path) = &cfg.rows {
        write_rows(path, &per_coin)?;
    }
    Ok(report)
}

/// One coin's replay.
#[derive(Debug, Clone)]
pub struct CoinReplay {
    /// Coin code.
    pub coin: String,
    /// Scored hours in order.
    pub hours: Vec<ScoredHour>,
    /// Bars in the span not scored.
    pub skipped: usize,
}

fn replay_coin(
    model: &Model,
    params: CalibratorParams,
    coin: &str,
    bars: &[rps_core::Bar],
    start: Option<i64>,
    end: Option<i64>,
) -> Result<CoinReplay> {
    let fc = &model.forecaster;
    let frame = features::compute(coin, bars);
    let from = start.unwrap_or(i64::MIN);
    let to = end.unwrap_or(i64::MAX);
    let lo = frame.ts.partition_point(|&t| t < from);
    let hi = frame.ts.partition_point(|&t| t < to);
    let in_span = bars.iter().filter(|b| b.ts >= from && b.ts < to).count();
    if lo >= hi {
        return Err(MonitorError::Features {
            key: coin.to_string(),
            reason: format!(
                "no feature rows between {} and {} ({} bars stored, the first {} hours are the feature warm-up)",
                fmt_ms(from.max(bars[0].ts)),
                fmt_ms(to.min(bars[bars.len() - 1].ts + HOUR_MS)),
                bars.len(),
                features::spec().warmup
            ),
        });
    }
    let mut cal = OnlineCalibrator::new(params, &fc.metadata().calibration).map_err(|e| {
        MonitorError::ModelLoad {
            path: PathBuf::from(&model.source),
            reason: e.to_string(),
        }
    })?;
    let total = hi - lo;
    let started = Instant::now();
    let mut hours = Vec::with_capacity(total);
    let mut last_log = Instant::now();
    // Replayed in chunks so long runs log their progress with a rate and an ETA.
    let chunk = 2_000;
    let mut r = lo;
    while r < hi {
        let next = (r + chunk).min(hi);
        intervals::replay(fc, &mut cal, &frame, r..next, |h| hours.push(h.clone())).map_err(
            |e| MonitorError::Features {
                key: coin.to_string(),
                reason: e.to_string(),
            },
        )?;
        r = next;
        if last_log.elapsed().as_secs_f64() >= 2.0 || r == hi {
            let done = r - lo;
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
            info!(
                coin,
                "backtest {done}/{total} hours ({:.0} %), {rate:.0} hours/s, ETA {:.0} s",
                100.0 * done as f64 / total as f64,
                (total - done) as f64 / rate
            );
            last_log = Instant::now();
        }
    }
    Ok(CoinReplay {
        coin: coin.to_string(),
        skipped: in_span - hours.len(),
        hours,
    })
}

fn figures(hours: &[&ScoredHour], skipped: usize, statics: &[(f64, f64)]) -> Figures {
    let n = hours.len().max(1) as f64;
    let (mut se, mut ae, mut sp) = (0.0, 0.0, 0.0);
    for h in hours {
        let e = h.forecast() - h.next_close;
        se += e * e;
        ae += e.abs();
        let p = h.close - h.next_close;
        sp += p * p;
    }
    let (rmse, prmse) = ((se / n).sqrt(), (sp / n).sqrt());
    let actual: Vec<f64> = hours.iter().map(|h| h.next_close).collect();
    let sigma: Vec<f64> = hours.iter().map(|h| h.sigma).collect();
    let mut iv = BTreeMap::new();
    let mut st = BTreeMap::new();
    for (k, &(level, q)) in statics.iter().enumerate() {
        let lower: Vec<f64> = hours.iter().map(|h| h.intervals[k].lower).collect();
        let upper: Vec<f64> = hours.iter().map(|h| h.intervals[k].upper).collect();
        iv.insert(
            level_key(level),
            summarize(level, &lower, &upper, &actual, Some(&sigma)),
        );
        let lower: Vec<f64> = hours
            .iter()
            .map(|h| h.close * (h.logret - q).exp())
            .collect();
        let upper: Vec<f64> = hours
            .iter()
            .map(|h| h.close * (h.logret + q).exp())
            .collect();
        let b = summarize(level, &lower, &upper, &actual, None);
        st.insert(
            level_key(level),
            StaticFigures {
                coverage: b.coverage,
                mean_width_usd: b.mean_width_usd,
                interval_score_usd: b.interval_score_usd,
            },
        );
    }
    Figures {
        rows: hours.len(),
        skipped_gap_hours: skipped,
        point: PointFigures {
            rmse_usd: rmse,
            mae_usd: ae / n,
            persistence_rmse_usd: prmse,
            skill: if prmse > 0.0 { 1.0 - rmse / prmse } else { 0.0 },
        },
        intervals: iv,
        baseline_static: st,
    }
}

/// The report of the replays: each calibrator level with the package's static quantile of
/// the same level (NaN, so a null in JSON, when the package has none).
fn report(model: &Model, coins: &[CoinReplay]) -> BacktestReport {
    let meta = model.forecaster.metadata();
    let statics: Vec<(f64, f64)> = meta
        .calibration
        .levels
        .iter()
        .map(|&l| {
            let q = meta
                .conformal
                .iter()
                .find(|c| (c.level - l).abs() < 1e-9)
                .map_or(f64::NAN, |c| c.q);
            (l, q)
        })
        .collect();
    let all: Vec<&ScoredHour> = coins.iter().flat_map(|c| &c.hours).collect();
    BacktestReport {
        model: ModelId {
            name: meta.name.clone(),
            version: model.version.clone(),
            kind: meta.kind.clone(),
        },
        all: figures(&all, coins.iter().map(|c| c.skipped).sum(), &statics),
        coins: coins
            .iter()
            .map(|c| {
                let hours: Vec<&ScoredHour> = c.hours.iter().collect();
                (c.coin.clone(), figures(&hours, c.skipped, &statics))
            })
            .collect(),
    }
}

fn write_json(path: &Path, report: &BacktestReport) -> Result<()> {
    let io = |source| MonitorError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_json::to_string_pretty(report).map_err(|e| io(std::io::Error::other(e)))?;
    rps_core::fs::write(path, (text + "\n").as_bytes()).map_err(io)
}

/// The per-hour CSV: `ts, coin, close, next_close, forecast`, then `lower_<p>, upper_<p>` per
/// level (`p` the level in percent: `lower_90`).
fn write_rows(path: &Path, coins: &[CoinReplay]) -> Result<()> {
    let io = |source| MonitorError::Io {
        path: path.to_path_buf(),
        source,
    };
    let levels: Vec<f64> = coins
        .iter()
        .find_map(|c| c.hours.first())
        .map(|h| h.intervals.iter().map(|i| i.level).collect())
        .unwrap_or_default();
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec![
        "ts".to_string(),
        "coin".into(),
        "close".into(),
        "next_close".into(),
        "forecast".into(),
    ];
    for l in &levels {
        let p = format!("{}", (l * 100.0).round());
        header.push(format!("lower_{p}"));
        header.push(format!("upper_{p}"));
    }
    let csv_err = |e: csv::Error| io(std::io::Error::other(e));
    w.write_record(&header).map_err(csv_err)?;
    for c in coins {
        for h in &c.hours {
            let mut rec = vec![
                fmt_ms(h.ts),
                c.coin.clone(),
                h.close.to_string(),
                h.next_close.to_string(),
                h.forecast().to_string(),
            ];
            for i in &h.intervals {
                rec.push(i.lower.to_string());
                rec.push(i.upper.to_string());
            }
            w.write_record(&rec).map_err(csv_err)?;
        }
    }
    let bytes = w
        .into_inner()
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    rps_core::fs::write(path, &bytes).map_err(io)
}
