//! Serving-side inference for a model of any kind: load a package, check it was trained on
//! this build's feature spec, and turn the newest `lookback` feature rows into a next-hour
//! forecast with conformal intervals. The kind's serving form does the arithmetic (the
//! LSTM's is plain f32 Rust, no candle ops: no per-op overhead and no dependence on
//! `RAYON_NUM_THREADS`, which candle re-reads CPU info for per matmul when it is unset).

use std::path::Path;

use rps_core::time::HOUR_MS;
use rps_features::{FeatureFrame, spec};

use crate::intervals::OnlineCalibrator;
use crate::model::Serving;
use crate::package::{ModelMetadata, ModelPackage};
use crate::{ModelError, Result};

/// A prediction interval in USD.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    /// The conformal level, as a fraction (`0.9` for 90%).
    pub level: f64,
    /// Lower bound of the close, USD.
    pub lower: f64,
    /// Upper bound of the close, USD.
    pub upper: f64,
}

/// A next-hour forecast.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Forecast {
    /// The coin forecast.
    pub coin: String,
    /// Hour of the newest bar used (ms UTC).
    pub based_on_ts: i64,
    /// The hour whose close is forecast (`based_on_ts + 1 h`).
    pub for_ts: i64,
    /// Close of the newest bar used (USD).
    pub last_close: f64,
    /// Predicted log return `ln(close / last_close)`.
    pub logret: f64,
    /// Predicted close (USD).
    pub close: f64,
    /// One interval per conformal level, ascending.
    pub intervals: Vec<Interval>,
}

/// A loaded model ready to predict.
#[derive(Debug, Clone)]
pub struct Forecaster {
    metadata: ModelMetadata,
    serving: Serving,
    /// Column of each model input in the feature frame (spec order).
    columns: Vec<usize>,
    /// The package's calibrator as trained (the calibration split's scores): the intervals
    /// of [`Forecaster::predict`] when no replayed state is given.
    initial: OnlineCalibrator,
}

impl Forecaster {
    /// Loads a package directory and checks its feature-spec hash against this build.
    pub fn load(dir: &Path) -> Result<Forecaster> {
        Forecaster::from_package(ModelPackage::load(dir)?, dir)
    }

    /// Wraps an in-memory package (`origin` names it in errors).
    pub fn from_package(pkg: ModelPackage, origin: &Path) -> Result<Forecaster> {
        let sp = spec();
        if pkg.metadata.feature_spec_hash != sp.hash {
            return Err(ModelError::SpecMismatch {
                path: origin.to_path_buf(),
                expected: sp.hash.clone(),
                found: pkg.metadata.feature_spec_hash.clone(),
            });
        }
        let columns = pkg
            .metadata
            .inputs
            .iter()
            .map(|name| {
                sp.index(name).ok_or_else(|| ModelError::BadPackage {
                    path: origin.to_path_buf(),
                    reason: format!("input '{name}' is not a feature of this build"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let bad = |reason: String| ModelError::BadPackage {
            path: origin.to_path_buf(),
            reason,
        };
        if let Some(reason) = pkg.metadata.volatility.check() {
            return Err(bad(reason));
        }
        let initial = OnlineCalibrator::new(pkg.metadata.calibrator, &pkg.metadata.calibration)
            .map_err(|e| bad(e.to_string()))?;
        let serving = pkg.weights.serving();
        Ok(Forecaster {
            metadata: pkg.metadata,
            serving,
            columns,
            initial,
        })
    }

    /// The package's metadata.
    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    /// Records the registry version this model was loaded as.
    pub fn set_version(&mut self, version: &str) {
        self.metadata.version = version.to_string();
    }

    /// Feature rows (consecutive hours) per prediction window.
    pub fn lookback(&self) -> usize {
        self.metadata.lookback
    }

    /// Bars needed to make one forecast: the feature warm-up plus the lookback window.
    pub fn min_bars(&self) -> usize {
        spec().warmup + self.metadata.lookback
    }

    /// A fresh calibrator in the package's trained state, to replay hours into.
    pub fn calibrator(&self) -> OnlineCalibrator {
        self.initial.clone()
    }

    /// σ̂ of the next hour's log return after row `row` of `frame` (the package's volatility
    /// model). Panics when `row >= frame.len()`.
    pub fn sigma_at(&self, frame: &FeatureFrame, row: usize) -> f64 {
        self.metadata.volatility.sigma(frame.row(row))
    }

    /// Forecasts the hour after the frame's newest row from its last `lookback` rows, with the
    /// intervals of the package's trained calibrator.
    pub fn predict(&self, frame: &FeatureFrame) -> Result<Forecast> {
        self.predict_with(frame, &self.initial)
    }

    /// Forecasts like [`Forecaster::predict`], with the intervals of calibrator `cal` (the
    /// state replayed for this coin).
    pub fn predict_with(&self, frame: &FeatureFrame, cal: &OnlineCalibrator) -> Result<Forecast> {
        let n = frame.len();
        let input = |reason: String| ModelError::Input {
            coin: frame.coin.clone(),
            reason,
        };
        if n < self.lookback() {
            return Err(input(format!(
                "{n} feature rows, the model needs the last {} consecutive hours ({} bars)",
                self.lookback(),
                self.min_bars()
            )));
        }
        let mut window = Vec::new();
        let logret = self.predict_one(frame, n - 1, &mut window)?;
        let last_close = frame.close[n - 1];
        if !(last_close.is_finite() && last_close > 0.0) {
            return Err(input(format!(
                "close {last_close} at the newest row is not a price"
            )));
        }
        let intervals = cal.intervals(last_close, logret, self.sigma_at(frame, n - 1));
        Ok(Forecast {
            coin: frame.coin.clone(),
            based_on_ts: frame.ts[n - 1],
            for_ts: frame.ts[n - 1] + HOUR_MS,
            last_close,
            logret,
            close: last_close * logret.exp(),
            intervals,
        })
    }

    /// Predicted log returns for the windows ending at rows `ends` of `frame` (the same
    /// computation as [`Forecaster::predict`], for evaluation and re-scoring).
    pub fn predict_logrets(&self, frame: &FeatureFrame, ends: &[usize]) -> Result<Vec<f64>> {
        let mut window = Vec::new();
        ends.iter()
            .map(|&e| self.predict_one(frame, e, &mut window))
            .collect()
    }

    /// Whether the window ending at row `end` exists and spans consecutive hours.
    pub fn window_fits(&self, frame: &FeatureFrame, end: usize) -> bool {
        let l = self.lookback();
        end < frame.len()
            && end + 1 >= l
            && frame.ts[end] - frame.ts[end + 1 - l] == (l as i64 - 1) * HOUR_MS
    }

    pub(crate) fn predict_one(
        &self,
        frame: &FeatureFrame,
        end: usize,
        window: &mut Vec<f32>,
    ) -> Result<f64> {
        let l = self.lookback();
        if !self.window_fits(frame, end) {
            return Err(ModelError::Input {
                coin: frame.coin.clone(),
                reason: format!(
                    "the {l} feature rows ending at row {end} are not consecutive hours (a gap in the bars?)"
                ),
            });
        }
        let scaler = &self.metadata.scaler;
        window.clear();
        for r in end + 1 - l..=end {
            let row = frame.row(r);
            for (i, &c) in self.columns.iter().enumerate() {
                let v = row[c];
                if !v.is_finite() {
                    return Err(ModelError::Input {
                        coin: frame.coin.clone(),
                        reason: format!(
                            "feature '{}' is {v} at {}",
                            self.metadata.inputs[i],
                            rps_core::time::fmt_ms(frame.ts[r])
                        ),
                    });
                }
                window.push(scaler.x(i, v) as f32);
            }
        }
        let y = self.serving.forecast(window);
        Ok(scaler.y_inv(f64::from(y)))
    }
}
