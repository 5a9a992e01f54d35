//! rps-monitor: model monitoring. The library owns drift detection — data drift as
//! per-feature PSI of recent inputs against the reference histograms in the model package
//! ([`drift::psi_summary`] under a [`DriftRule`]), concept drift as a Page-Hinkley test on
//! forecast errors ([`PageHinkley`]), the bounded [`InputWindow`] of recent inputs — used by
//! the server's live gauges (rps-serve) and by the DAG's drift check, [`run_drift`].
//!
//! The binary runs that check: the last `--window-hours` of stored features of each coin
//! against the champion's reference, a JSON report, and exit code 3 on drift so Airflow
//! branches to retraining.
//!
//! ```text
//! $ rps-monitor drift --store ./data --registry ./registry --report reports/drift.json
//! drift check: BTC 2/31 features past their limit (drift at 50 %), max PSI 0.4120 at BTC/logret_std_24 over 168 h -> no drift (report reports/drift.json)
//! ```
//!
//! The model comes from [`rps_mlflow::source`] (a package directory or a registry alias,
//! local or MLflow) and is loaded with `rps_model::Forecaster::load`, as the server does.

#![deny(missing_docs)]

pub mod backtest;
pub mod check;
pub mod drift;
pub mod error;

pub use backtest::{BacktestConfig, BacktestReport, run_backtest};
pub use check::{
    CoinDrift, DriftConfig, DriftReport, ErrorRule, ErrorSignals, MIN_ROWS, run_drift,
};
pub use drift::{DriftRule, InputWindow, PageHinkley, PsiSummary, psi_summary};
pub use error::{MonitorError, Result, classify};
