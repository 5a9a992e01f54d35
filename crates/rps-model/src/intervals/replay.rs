//! An hour-by-hour replay of a feature frame through the serving path: for each row, the
//! model's forecast μ̂ₜ, the volatility σ̂ₜ, the intervals from the calibrator as it stands,
//! then — when the next bar is exactly one hour later — the outcome, which updates the
//! calibrator before the next row. Training's evaluation, the server's start-up state and
//! `rps-monitor backtest` all run this function.

use std::ops::Range;

use rps_features::FeatureFrame;

use super::online::OnlineCalibrator;
use crate::Result;
use crate::forecaster::{Forecaster, Interval};

/// One scored hour of a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredHour {
    /// Hour open of the row (ms UTC): the forecast is for the next hour's close.
    pub ts: i64,
    /// Close of the row's hour, USD.
    pub close: f64,
    /// The next hour's close, USD (the outcome).
    pub next_close: f64,
    /// Forecast log return μ̂ₜ.
    pub logret: f64,
    /// Forecast volatility σ̂ₜ.
    pub sigma: f64,
    /// One interval per level, ascending, as served before the outcome was known.
    pub intervals: Vec<Interval>,
    /// Whether each level covered the outcome.
    pub covered: Vec<bool>,
}

impl ScoredHour {
    /// The forecast close, USD.
    pub fn forecast(&self) -> f64 {
        self.close * self.logret.exp()
    }
}

/// What a replay scored and skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayCounts {
    /// Hours scored (the calibrator saw their outcome).
    pub scored: usize,
    /// Rows not scored: the next bar is not exactly one hour later, or the model's window
    /// ending at the row spans a gap. The calibrator is not updated across them.
    pub skipped_gap: usize,
}

/// Replays rows `rows` of `frame` in order (see the module docs), calling `on_hour` for each
/// scored hour.
pub fn replay(
    fc: &Forecaster,
    cal: &mut OnlineCalibrator,
    frame: &FeatureFrame,
    rows: Range<usize>,
    mut on_hour: impl FnMut(&ScoredHour),
) -> Result<ReplayCounts> {
    let mut counts = ReplayCounts::default();
    let mut window = Vec::new();
    let rows = rows.start..rows.end.min(frame.len());
    for r in rows {
        let next_close = frame.target_close_1h[r];
        // The target is NaN unless the next bar is exactly one hour later.
        if !next_close.is_finite() || !fc.window_fits(frame, r) {
            counts.skipped_gap += 1;
            continue;
        }
        let close = frame.close[r];
        let logret = fc.predict_one(frame, r, &mut window)?;
        let sigma = fc.sigma_at(frame, r);
        let intervals = cal.intervals(close, logret, sigma);
        let covered = cal.observe(&intervals, close, logret, sigma, next_close);
        counts.scored += 1;
        on_hour(&ScoredHour {
            ts: frame.ts[r],
            close,
            next_close,
            logret,
            sigma,
            intervals,
            covered,
        });
    }
    Ok(counts)
}
