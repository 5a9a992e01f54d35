//! Monitoring state: what feeds PSI (the store's fresh feature rows), Page-Hinkley (realised
//! errors of the forecasts waiting for their actual close), and the forecast, error, drift
//! and bar-age gauges. Only the store and `/feedback` reach it: bars a client sends to
//! `/predict` never do.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use rps_core::Bar;
use rps_core::time::HOUR_MS;
use rps_features as features;
use rps_monitor::drift::{PsiSummary, psi_summary};

use super::{AppState, ForecastError, Settings, lock};
use crate::api::ForecastOut;
use crate::metrics::{CoinLabels, CoinLevelLabels, FeatureLabels, Metrics};
use crate::model::LoadedModel;
use crate::monitor::{Monitor, Offer, Realised};

/// The live drift state over `rps_monitor`'s detectors, and the newest stored hour per coin.
#[derive(Debug)]
pub(super) struct Monitoring {
    monitor: Mutex<Monitor>,
    newest_bar: Mutex<BTreeMap<String, i64>>,
}

impl Monitoring {
    /// Empty detectors of `settings`; the drift gauges start at 0.
    pub(super) fn new(settings: &Settings, metrics: &Metrics) -> Self {
        let monitor = Monitor::new(
            settings.drift_window,
            settings.ph_delta,
            settings.ph_lambda,
            settings.ph_min_samples,
        );
        metrics.concept_drift.set(0);
        metrics.page_hinkley.set(0.0);
        metrics.data_drift.set(0);
        Monitoring {
            monitor: Mutex::new(monitor),
            newest_bar: Mutex::new(BTreeMap::new()),
        }
    }

    /// Runs `f` with the monitor locked.
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut Monitor) -> R) -> R {
        f(&mut lock(&self.monitor))
    }

    /// A freshly read tail of stored bars whose hours from `fresh` on are new: their feature
    /// rows enter the PSI window and their closes settle the forecasts waiting for them.
    pub(super) fn observe_fresh(
        &self,
        metrics: &Metrics,
        model_key: &str,
        coin: &str,
        tail: &[Bar],
        fresh: usize,
    ) {
        // Features of the fresh hours need the warm-up bars before them.
        let from = fresh.saturating_sub(features::spec().warmup);
        let frame = features::compute(coin, &tail[from..]);
        let mut mon = lock(&self.monitor);
        mon.observe_inputs(&frame);
        settle_bars(metrics, &mut mon, model_key, &tail[fresh..]);
    }

    /// The newest stored hour of `coin` (for the bar-age gauge).
    pub(super) fn note_newest(&self, coin: &str, ts: i64) {
        lock(&self.newest_bar).insert(coin.to_string(), ts);
    }

    /// A fresh store forecast: it waits for its actual close, and becomes the coin's latest
    /// forecast (gauges).
    pub(super) fn record_store_forecast(
        &self,
        metrics: &Metrics,
        model: &LoadedModel,
        out: &ForecastOut,
    ) {
        let latest = lock(&self.monitor).record_forecast(out, &model.key, model.error_scale);
        if latest {
            set_forecast_gauges(metrics, out);
        }
    }

    /// A new model serves: concept drift starts over.
    pub(super) fn on_new_model(&self, metrics: &Metrics) {
        let mut mon = lock(&self.monitor);
        mon.on_new_model();
        metrics.page_hinkley.set(mon.ph.statistic());
        metrics.concept_drift.set(0);
    }
}

fn set_forecast_gauges(m: &Metrics, f: &ForecastOut) {
    let coin = CoinLabels {
        coin: f.coin.clone(),
    };
    m.forecast_close.get_or_create(&coin).set(f.forecast_close);
    for i in &f.intervals {
        let l = CoinLevelLabels {
            coin: f.coin.clone(),
            level: format!("{}", i.level),
        };
        m.forecast_lower.get_or_create(&l).set(i.lower);
        m.forecast_upper.get_or_create(&l).set(i.upper);
    }
}

/// Offers one actual close to the monitor and updates the error metrics on a match.
fn settle(
    m: &Metrics,
    mon: &mut Monitor,
    model_key: &str,
    coin: &str,
    ts: i64,
    close: f64,
) -> Offer {
    let offer = mon.offer_actual(coin, ts, close, model_key);
    if let Offer::Matched(r) = &offer {
        m.forecast_abs_error.observe(r.abs_error);
        if let Some((_, c)) = mon.latest_actual.get(coin) {
            m.actual_close
                .get_or_create(&CoinLabels {
                    coin: coin.to_string(),
                })
                .set(*c);
        }
        m.page_hinkley.set(mon.ph.statistic());
        m.concept_drift.set(i64::from(mon.ph.drift()));
    }
    offer
}

/// Settles the waiting forecasts whose hour is among `bars` (ascending, one coin).
fn settle_bars(m: &Metrics, mon: &mut Monitor, model_key: &str, bars: &[Bar]) {
    let (Some(first), Some(last)) = (bars.first(), bars.last()) else {
        return;
    };
    for ts in mon.pending_between(&first.coin, first.ts, last.ts) {
        let i = bars.partition_point(|b| b.ts < ts);
        if let Some(b) = bars.get(i).filter(|b| b.ts == ts) {
            settle(m, mon, model_key, &b.coin, ts, b.close);
        }
    }
}

impl AppState {
    /// Runs `f` with the monitor locked.
    pub fn with_monitor<R>(&self, f: impl FnOnce(&mut Monitor) -> R) -> R {
        self.inner.monitoring.with(f)
    }

    /// Records a realised close sent by a client: whether it was new, the realised error, and
    /// whether concept drift is now flagged.
    pub fn feedback(
        &self,
        coin: &str,
        ts: i64,
        close: f64,
    ) -> Result<(bool, Realised, bool), ForecastError> {
        let model = self.model()?;
        let mut mon = lock(&self.inner.monitoring.monitor);
        match settle(self.metrics(), &mut mon, &model.key, coin, ts, close) {
            Offer::Matched(r) => Ok((true, r, mon.ph.drift())),
            Offer::Duplicate(r) => Ok((false, r, mon.ph.drift())),
            Offer::NoForecast => Err(ForecastError::NoForecast {
                coin: coin.to_string(),
                ts,
                kept: crate::monitor::MAX_PENDING,
            }),
        }
    }

    /// PSI of the recent inputs against the model's reference (cached until either changes);
    /// `None` while fewer than `drift_min_rows` rows were seen. Updates the gauges.
    pub fn psi(&self) -> (Option<PsiSummary>, usize) {
        let model: Option<Arc<LoadedModel>> = self.current_model();
        let mut mon = lock(&self.inner.monitoring.monitor);
        let rows = mon.window.len();
        let Some(model) = model.filter(|_| rows >= self.settings().drift_min_rows) else {
            return (None, rows);
        };
        if let Some(s) = mon.cached_psi(&model.key) {
            return (Some(s.clone()), rows);
        }
        let reference = &model.meta().reference;
        let columns: HashMap<&str, usize> = reference
            .iter()
            .zip(&model.psi_columns)
            .filter_map(|(r, c)| c.map(|c| (r.feature.as_str(), c)))
            .collect();
        // The window's rows are distinct (coin, hour) pairs: about as many hours as rows.
        let summary = psi_summary(
            reference,
            rows,
            rows,
            self.settings().drift_rule(),
            |name| columns.get(name).map(|&c| mon.window.column(c)),
        );
        mon.store_psi(&model.key, summary.clone());
        drop(mon);
        let m = self.metrics();
        m.feature_psi.clear();
        for (f, v) in &summary.psi {
            m.feature_psi
                .get_or_create(&FeatureLabels { feature: f.clone() })
                .set(*v);
        }
        m.data_drift.set(i64::from(summary.drift));
        (Some(summary), rows)
    }

    /// Brings time-dependent gauges up to date (called before each scrape).
    pub fn refresh_gauges(&self) {
        let now = chrono::Utc::now().timestamp_millis();
        let newest = lock(&self.inner.monitoring.newest_bar).clone();
        for (coin, ts) in newest {
            let age = (now - (ts + HOUR_MS)) as f64 / 1000.0;
            self.metrics()
                .newest_bar_age
                .get_or_create(&CoinLabels { coin })
                .set(age);
        }
        let _ = self.psi();
    }
}
