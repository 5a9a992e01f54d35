//! The flags of `rps-monitor` (flag names, RPS_* variables and defaults as the former `rps-serve drift`
//! had them, so the DAG and scripts only changed the binary's name).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use rps_cli::{CoinList, CommonArgs, ModelArgs};
use rps_monitor::{BacktestConfig, DriftConfig, DriftRule};

/// RPS model monitoring: the drift check the DAG branches on.
#[derive(Debug, Parser)]
#[command(name = "rps-monitor", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compare recent stored features with the model's training reference (PSI); exit 3 on
    /// drift so the DAG retrains.
    Drift(DriftArgs),
    /// Replay stored hours through the serving path (features, model, online intervals) and
    /// report point and interval figures on them, with the static interval as a baseline.
    Backtest(BacktestArgs),
}

/// Flags of `rps-monitor backtest`.
#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// Store and log format.
    #[command(flatten)]
    pub common: CommonArgs,

    /// The model (`--model-dir`, alias `--package`, or a registry alias).
    #[command(flatten)]
    pub model: ModelArgs,

    /// Coins to replay, comma-separated.
    #[arg(long, env = "RPS_COINS", default_value = "BTC")]
    pub coins: CoinList,

    /// First hour to score (RFC 3339, inclusive). Default: the first hour with a full
    /// feature window.
    #[arg(long, env = "RPS_BACKTEST_START", value_parser = rps_core::time::parse_utc)]
    pub start: Option<chrono::DateTime<chrono::Utc>>,

    /// End of the scored hours (RFC 3339, exclusive). Default: after the newest bar.
    #[arg(long, env = "RPS_BACKTEST_END", value_parser = rps_core::time::parse_utc)]
    pub end: Option<chrono::DateTime<chrono::Utc>>,

    /// Calibrator window, hours (default: the package's, as trained).
    #[arg(long, env = "RPS_CALIBRATION_WINDOW")]
    pub calibration_window: Option<usize>,

    /// ACI step γ (default: the package's, as trained).
    #[arg(long, env = "RPS_ACI_GAMMA")]
    pub aci_gamma: Option<f64>,

    /// Where to write the JSON report.
    #[arg(
        long,
        env = "RPS_BACKTEST_REPORT",
        default_value = "reports/backtest.json"
    )]
    pub report: PathBuf,

    /// Also write one CSV row per scored hour here (ts, coin, close, next_close, forecast,
    /// lower_/upper_ per level), so every figure can be recomputed.
    #[arg(long, env = "RPS_BACKTEST_ROWS")]
    pub rows: Option<PathBuf>,
}

impl BacktestArgs {
    /// The library's configuration.
    pub fn config(self) -> BacktestConfig {
        let (model, cache_dir) = self.model.into_spec();
        BacktestConfig {
            store: self.common.store,
            coins: self.coins.0,
            model,
            cache_dir,
            start: self.start.map(|t| t.timestamp_millis()),
            end: self.end.map(|t| t.timestamp_millis()),
            window: self.calibration_window,
            gamma: self.aci_gamma,
            report: self.report,
            rows: self.rows,
        }
    }
}

/// Flags of `rps-monitor drift`.
#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Store and log format.
    #[command(flatten)]
    pub common: CommonArgs,

    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,

    /// Coins to check, comma-separated.
    #[arg(long, env = "RPS_COINS", default_value = "BTC")]
    pub coins: CoinList,

    /// Hours of the most recent features to compare.
    #[arg(long, env = "RPS_DRIFT_WINDOW_HOURS", default_value_t = 168)]
    pub window_hours: u32,

    /// PSI above which a feature has drifted; a package with calibration raises it per feature
    /// to the PSI 99 % of its training windows of the same length stay below.
    #[arg(
        long,
        env = "RPS_DRIFT_THRESHOLD",
        default_value_t = 0.2,
        allow_negative_numbers = true
    )]
    pub threshold: f64,

    /// Share of features (0-1] that must drift for a drift verdict (exit 3).
    #[arg(
        long,
        env = "RPS_DRIFT_SHARE",
        default_value_t = 0.5,
        allow_negative_numbers = true
    )]
    pub share: f64,

    /// Realised coverage of the 90 % interval over the window below which the intervals have
    /// broken down (a retraining signal).
    #[arg(long, env = "RPS_COVERAGE_FLOOR", default_value_t = 0.80)]
    pub coverage_floor: f64,

    /// Page-Hinkley tolerance δ on the standardised errors |error| / σ̂ of the window.
    #[arg(long, env = "RPS_PH_DELTA", default_value_t = 0.1)]
    pub ph_delta: f64,

    /// Page-Hinkley alarm threshold λ (a retraining signal when exceeded in the window).
    #[arg(long, env = "RPS_PH_LAMBDA", default_value_t = 25.0)]
    pub ph_lambda: f64,

    /// Where to write the JSON report.
    #[arg(long, env = "RPS_DRIFT_REPORT", default_value = "reports/drift.json")]
    pub report: PathBuf,

    /// End of the window (exclusive, RFC 3339; Airflow's data_interval_end). Default: the
    /// newest feature row.
    #[arg(long, env = "RPS_DRIFT_END", value_parser = rps_core::time::parse_utc)]
    pub end: Option<chrono::DateTime<chrono::Utc>>,
}

impl DriftArgs {
    /// The library's configuration.
    pub fn config(self) -> DriftConfig {
        let (model, cache_dir) = self.model.into_spec();
        DriftConfig {
            store: self.common.store,
            coins: self.coins.0,
            model,
            cache_dir,
            window_hours: self.window_hours,
            errors: rps_monitor::ErrorRule {
                coverage_floor: self.coverage_floor,
                ph_delta: self.ph_delta,
                ph_lambda: self.ph_lambda,
            },
            rule: DriftRule {
                threshold: self.threshold,
                share: self.share,
            },
            report: self.report,
            end: self.end.map(|t| t.timestamp_millis()),
        }
    }
}
