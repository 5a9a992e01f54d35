//! Prediction intervals that follow the market's volatility: the one implementation that
//! training, serving and backtesting share.
//!
//! - [`volatility`]: a HAR model of the next hour's range-based (Parkinson) variance, fitted
//!   by least squares on the training split, giving σ̂ₜ known before the hour.
//! - [`online`]: the online conformal calibrator. The score of an hour is
//!   `|ln(Cₜ₊₁/Cₜ) − μ̂ₜ| / σ̂ₜ`; the threshold qₜ of a level is a finite-sample quantile of the
//!   last `W` scores at the adaptive level `1 − αₜ`, and adaptive conformal inference
//!   (Gibbs & Candès 2021) moves αₜ by `γ(α − errₜ)` after every scored hour, so coverage
//!   returns to nominal when the regime changes. The interval is
//!   `[Cₜ·e^(μ̂ₜ−qₜσ̂ₜ), Cₜ·e^(μ̂ₜ+qₜσ̂ₜ)]`, nested across levels by construction.
//! - [`mod@replay`]: an hour-by-hour replay of a feature frame through the serving path
//!   (features → model → online intervals), scoring only hours whose next bar is exactly
//!   one hour later.
//! - [`score`]: coverage, width, Winkler's interval score, rolling coverage and coverage by
//!   volatility tercile of a set of scored intervals.

pub mod online;
pub mod replay;
pub mod score;
pub mod volatility;

pub use online::{CalibrationState, CalibratorParams, OnlineCalibrator};
pub use replay::{ReplayCounts, ScoredHour, replay};
pub use score::{IntervalSummary, ROLLING_HOURS, interval_score, rolling_coverage, summarize};
pub use volatility::{VOLATILITY_INPUTS, VolatilityModel};
