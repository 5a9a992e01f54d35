//! Keeping the served model's calibrator states ([`crate::calibration`]) up to the store: each
//! read of a coin's stored bars (store poll, store forecast) brings its state forward first,
//! off the async workers, and the coverage, αₜ and σ̂ gauges follow the served model's states.

use std::sync::{Arc, Mutex};

use rps_core::Bar;

use super::{AppState, ForecastError, lock};
use crate::calibration::{CoinCalibration, LevelCoverage};
use crate::metrics::{CoinLabels, CoinLevelLabels};
use crate::model::LoadedModel;

/// Serialises writes of the calibration gauges, so a model swap's reset and a state update of
/// the old model cannot interleave.
#[derive(Debug, Default)]
pub(super) struct CalibrationGauges(Mutex<()>);

impl AppState {
    /// The served model's calibrator state of `coin`, if it holds one.
    pub fn calibration(&self, coin: &str) -> Option<Arc<CoinCalibration>> {
        self.current_model()?.calibration.get(coin)
    }

    /// Brings `model`'s state of `coin` up to the store's bars `bars` (all of the coin's,
    /// ascending) and returns them. The caller holds the coin's update lock
    /// ([`crate::calibration::Calibrations::update_lock`]) across the store read and this.
    pub(super) async fn sync_calibration(
        &self,
        model: &Arc<LoadedModel>,
        coin: &str,
        bars: Vec<Bar>,
    ) -> Result<Vec<Bar>, ForecastError> {
        let current = model.calibration.get(coin);
        let (m, c) = (model.clone(), coin.to_string());
        let (bars, next) = tokio::task::spawn_blocking(move || {
            let next = match &current {
                Some(state) => state.update(&m.forecaster, &bars),
                None => Some(CoinCalibration::build(&m.forecaster, &c, &bars)),
            };
            (bars, next)
        })
        .await
        .map_err(|e| {
            tracing::error!(coin, error = %e, "updating the calibrator state panicked");
            ForecastError::CannotForecast {
                reason: format!("updating the calibrator state of {coin} failed"),
            }
        })?;
        if let Some(next) = next {
            model.calibration.set(next);
            self.publish_calibration(model, Some(coin));
        }
        Ok(bars)
    }

    /// Sets the coverage, αₜ and σ̂ gauges from `model`'s states — of `only` that coin, or of
    /// every coin after the series of the previous model are dropped — if `model` is the one
    /// serving.
    pub(super) fn publish_calibration(&self, model: &Arc<LoadedModel>, only: Option<&str>) {
        let _one_at_a_time = lock(&self.inner.calibration_gauges.0);
        if !self.current_model().is_some_and(|c| Arc::ptr_eq(&c, model)) {
            return;
        }
        let m = self.metrics();
        if only.is_none() {
            m.interval_coverage.clear();
            m.interval_alpha.clear();
            m.forecast_sigma.clear();
        }
        for state in model.calibration.all() {
            let coin = state.coin();
            if only.is_some_and(|o| o != coin) {
                continue;
            }
            for LevelCoverage {
                level,
                coverage,
                alpha,
                ..
            } in state.coverage()
            {
                let l = CoinLevelLabels {
                    coin: coin.to_string(),
                    level: format!("{level}"),
                };
                match coverage {
                    Some(v) => {
                        m.interval_coverage.get_or_create(&l).set(v);
                    }
                    None => {
                        m.interval_coverage.remove(&l);
                    }
                }
                m.interval_alpha.get_or_create(&l).set(alpha);
            }
            let c = CoinLabels {
                coin: coin.to_string(),
            };
            match state.sigma() {
                Some(s) => {
                    m.forecast_sigma.get_or_create(&c).set(s);
                }
                None => {
                    m.forecast_sigma.remove(&c);
                }
            }
        }
    }
}
