//! The application state every handler shares: a thin [`AppState`] composing the served
//! model and its hot reload (`reload.rs`), the forecast cache of store-backed coins
//! (`cache.rs`, one forecast per newest bar and model, computed by `forecast.rs`), and
//! monitoring (`monitoring.rs`: PSI, Page-Hinkley, gauges, forecasts awaiting their actual
//! close), the calibrator states of the served model kept up to the store and their gauges
//! (`calibration.rs`), with the [`Settings`] (`settings.rs`). The flow returns domain errors
//! ([`ForecastError`], `error.rs`); only [`crate::error`] turns them into HTTP answers.

mod cache;
mod calibration;
mod error;
mod forecast;
mod monitoring;
mod reload;
mod settings;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rps_core::Store;
use rps_mlflow::source::ModelSource;

pub use cache::EXTRA_BARS;
pub use error::ForecastError;
pub use reload::ReloadOutcome;
pub use settings::{Settings, Token};

use crate::metrics::Metrics;
use crate::model::LoadedModel;

/// Shared state; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    settings: Settings,
    metrics: Metrics,
    store: Store,
    models: reload::ModelSlot,
    cache: cache::ForecastCache,
    monitoring: monitoring::Monitoring,
    calibration_gauges: calibration::CalibrationGauges,
    started: Instant,
}

/// Locks a std mutex, recovering from poisoning: every critical section leaves the data
/// consistent between statements, so a panic elsewhere must not take the server down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AppState {
    /// Builds the state around an already-loaded model, or none yet (then requests that need
    /// one get [`ForecastError::NoModel`] until the reload poll finds one).
    pub fn new(
        settings: Settings,
        model: Option<LoadedModel>,
        source: ModelSource,
        store: Store,
    ) -> Self {
        let metrics = Metrics::new();
        if let Some(model) = &model {
            metrics.set_model_info(model.info_labels());
        }
        let monitoring = monitoring::Monitoring::new(&settings, &metrics);
        let state = AppState {
            inner: Arc::new(Shared {
                settings,
                metrics,
                store,
                models: reload::ModelSlot::new(model, source),
                cache: cache::ForecastCache::default(),
                monitoring,
                calibration_gauges: calibration::CalibrationGauges::default(),
                started: Instant::now(),
            }),
        };
        if let Some(model) = state.current_model() {
            state.publish_calibration(&model, None);
        }
        state
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Seconds since the state was built.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Checks that the model or the store knows `coin`, an already validated code (so metric
    /// labels stay bounded and typos get a clear answer); `field` names it in the error.
    pub fn known_coin(&self, coin: &str, field: &str) -> Result<(), ForecastError> {
        let model = self.model()?;
        let stored = self.inner.cache.stored();
        if model.knows_coin(coin) || stored.contains(coin) {
            return Ok(());
        }
        let mut known: BTreeSet<String> = model.meta().data.coins.iter().cloned().collect();
        known.extend(stored.iter().cloned());
        Err(ForecastError::UnknownCoin {
            field: field.to_string(),
            coin: coin.to_string(),
            known: known.into_iter().collect(),
        })
    }
}
