//! One forecast from a window of bars: features → model → [`ForecastOut`] with the intervals
//! of the coin's calibrator state ([`crate::calibration`]), or the [`ForecastError`] saying
//! why not. Pure apart from the inference-latency histogram; the cache ([`super::cache`]) and
//! monitoring ([`super::monitoring`]) are the callers' business.

use std::time::Instant;

use rps_core::Bar;
use rps_core::time::fmt_ms;
use rps_features as features;

use super::ForecastError;
use crate::api::{ForecastOut, IntervalOut};
use crate::calibration::CoinCalibration;
use crate::metrics::Metrics;
use crate::model::LoadedModel;
use crate::validate;

/// Computes features and a forecast for `bars` (ascending, consecutive, newest last), with the
/// intervals of `cal` (the coin's calibrator state; the package's calibrator as trained for a
/// coin the model holds no state for). Records nothing but the inference latency and changes
/// no calibrator: only the store's own bars feed monitoring and calibration. CPU-bound, well
/// under a millisecond: run inline.
pub(super) fn infer(
    metrics: &Metrics,
    model: &LoadedModel,
    cal: Option<&CoinCalibration>,
    coin: &str,
    bars: &[Bar],
    source: &str,
) -> Result<ForecastOut, ForecastError> {
    let Some(newest) = bars.last().map(|b| b.ts) else {
        return Err(ForecastError::EmptyWindow { coin: coin.into() });
    };
    let started = Instant::now();
    let frame = features::compute(coin, bars);
    if frame.ts.last() != Some(&newest) || frame.len() < model.forecaster.lookback() {
        return Err(ForecastError::InsufficientHistory {
            coin: coin.into(),
            bars: bars.len(),
            newest,
            needs: model.forecaster.min_bars(),
        });
    }
    let fc = &model.forecaster;
    let f = match cal {
        Some(c) => fc.predict_with(&frame, c.calibrator()),
        None => fc.predict(&frame),
    }
    .map_err(|e| ForecastError::CannotForecast {
        reason: e.to_string(),
    })?;
    metrics
        .inference_latency
        .observe(started.elapsed().as_secs_f64());
    // Prices near f64::MAX pass every per-bar rule yet give infinite bounds, which JSON
    // cannot carry (they would become null and break the response schema).
    let representable = [f.close, f.logret, f.last_close]
        .into_iter()
        .chain(f.intervals.iter().flat_map(|i| [i.lower, i.upper]))
        .all(|v| v.is_finite() && v.abs() < validate::MAX_PRICE * 10.0);
    if !representable {
        return Err(ForecastError::Unrepresentable {
            coin: coin.into(),
            newest,
            last_close: f.last_close,
        });
    }
    Ok(ForecastOut {
        coin: coin.to_string(),
        based_on: fmt_ms(f.based_on_ts),
        for_hour: fmt_ms(f.for_ts),
        for_hour_ms: f.for_ts,
        last_close: f.last_close,
        forecast_close: f.close,
        forecast_logret: f.logret,
        intervals: f
            .intervals
            .iter()
            .map(|i| IntervalOut {
                level: i.level,
                lower: i.lower,
                upper: i.upper,
            })
            .collect(),
        model: model.model_ref(),
        source: source.to_string(),
        cached: false,
    })
}
