//! The forecast cache of store-backed coins: each coin's newest stored bars, and its
//! forecast (or why there is none) computed once per (newest bar, model, calibrator state)
//! and served, as pre-serialised bytes, until one changes. Each read of the store first
//! brings the coin's calibrator state forward ([`super::calibration`]); fresh stored hours
//! are handed to [`super::monitoring`] as they are read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use rps_core::{Bar, parquet_io};
use rps_features as features;

use super::{AppState, ForecastError, forecast, lock};
use crate::api::ForecastOut;
use crate::model::LoadedModel;

/// Bars of history kept per store-backed coin beyond what the model needs (the page's chart).
pub const EXTRA_BARS: usize = 48;

/// A cached forecast, or the error it gave.
type Cached = Result<Arc<ForecastOut>, ForecastError>;

/// The store's coins and the cached state of each.
#[derive(Debug, Default)]
pub(super) struct ForecastCache {
    /// Coins with bars in the store (as of the last store poll).
    stored_coins: RwLock<BTreeSet<String>>,
    coins: Mutex<HashMap<String, Arc<tokio::sync::RwLock<CoinState>>>>,
}

impl ForecastCache {
    /// The store's coins at the last poll.
    pub(super) fn stored(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<String>> {
        self.stored_coins.read().unwrap_or_else(|p| p.into_inner())
    }

    fn slot(&self, coin: &str) -> Arc<tokio::sync::RwLock<CoinState>> {
        let mut coins = lock(&self.coins);
        if let Some(slot) = coins.get(coin) {
            return slot.clone();
        }
        coins.entry(coin.to_string()).or_default().clone()
    }
}

/// Cached state of one store-backed coin.
#[derive(Debug, Default)]
struct CoinState {
    /// Newest bars, ascending (enough for the model plus [`EXTRA_BARS`]).
    tail: Vec<Bar>,
    /// The forecast (or why there is none) for (model key, newest bar, generation of the
    /// calibrator state it took its intervals from).
    result: Option<(String, i64, u64, Cached)>,
    /// The cached forecast's response body (`cached: true`), serialised once: a cache hit is
    /// a copy of these bytes' handle.
    body: Option<Bytes>,
}

impl CoinState {
    fn newest(&self) -> Option<i64> {
        self.tail.last().map(|b| b.ts)
    }
    fn cached(&self, model_key: &str, calibration: u64) -> Option<Cached> {
        match (&self.result, self.newest()) {
            (Some((k, ts, g, r)), Some(newest))
                if k == model_key && *ts == newest && *g == calibration =>
            {
                Some(r.clone())
            }
            _ => None,
        }
    }
    fn cached_body(
        &self,
        model_key: &str,
        calibration: u64,
    ) -> Option<Result<Bytes, ForecastError>> {
        match (&self.result, self.newest()) {
            (Some((k, ts, g, r)), Some(newest))
                if k == model_key && *ts == newest && *g == calibration =>
            {
                Some(match (r, &self.body) {
                    (Ok(_), Some(b)) => Ok(b.clone()),
                    (Ok(f), None) => Ok(body_of(f)),
                    (Err(e), _) => Err(e.clone()),
                })
            }
            _ => None,
        }
    }
}

/// The JSON body of a cache hit.
fn body_of(f: &ForecastOut) -> Bytes {
    let hit = ForecastOut {
        cached: true,
        ..f.clone()
    };
    // Serialising plain strings and finite-or-not floats into a Vec cannot fail (non-finite
    // floats become null).
    Bytes::from(serde_json::to_vec(&hit).unwrap_or_default())
}

impl AppState {
    /// A forecast from a client's bars (already validated), with the intervals of the coin's
    /// calibrator state. Client bars are not trusted: they get a forecast and touch no
    /// monitoring state (PSI window, waiting forecasts, gauges, realised errors), no
    /// calibrator state and no cache.
    pub fn forecast_bars(&self, coin: &str, bars: &[Bar]) -> Result<ForecastOut, ForecastError> {
        let model = self.model()?;
        let cal = model.calibration.get(coin);
        forecast::infer(
            self.metrics(),
            &model,
            cal.as_deref(),
            coin,
            bars,
            "request",
        )
    }

    /// The forecast for a coin's newest stored hour: computed once per (newest bar, model,
    /// calibrator state) and served from the cache after that.
    pub async fn forecast_store(&self, coin: &str) -> Result<ForecastOut, ForecastError> {
        let model = self.model()?;
        let slot = self.inner.cache.slot(coin);
        let generation = model.calibration.generation(coin);
        if let Some(hit) = slot.read().await.cached(&model.key, generation) {
            return hit.map(|f| ForecastOut {
                cached: true,
                ..(*f).clone()
            });
        }
        let mut st = slot.write().await;
        if let Some(hit) = st.cached(&model.key, model.calibration.generation(coin)) {
            return hit.map(|f| ForecastOut {
                cached: true,
                ..(*f).clone()
            });
        }
        if st.tail.len() < model.forecaster.min_bars() {
            let tail = self.read_tail(coin, &model).await?;
            self.adopt_tail(&mut st, &model, coin, tail);
        }
        self.compute_cached(&mut st, &model, coin)
            .map(|f| (*f).clone())
    }

    /// The JSON body of [`AppState::forecast_store`]: a cache hit is the pre-serialised bytes
    /// (no clone of the forecast, no serialisation per request).
    pub async fn forecast_store_body(&self, coin: &str) -> Result<Bytes, ForecastError> {
        let model = self.model()?;
        let generation = model.calibration.generation(coin);
        if let Some(hit) = self
            .inner
            .cache
            .slot(coin)
            .read()
            .await
            .cached_body(&model.key, generation)
        {
            return hit;
        }
        let out = self.forecast_store(coin).await?;
        serde_json::to_vec(&out)
            .map(Bytes::from)
            .map_err(|e| ForecastError::Serialize(Arc::new(e)))
    }

    /// Reads the newest bars of `coin` from the store, after bringing `model`'s calibrator
    /// state of the coin up to all of them.
    async fn read_tail(
        &self,
        coin: &str,
        model: &Arc<LoadedModel>,
    ) -> Result<Vec<Bar>, ForecastError> {
        let updating = model.calibration.update_lock(coin);
        let _one_at_a_time = updating.lock().await;
        let mut bars = parquet_io::read_bars(self.store(), coin)
            .await
            .map_err(|e| ForecastError::Store {
                what: format!("reading the bars of {coin}"),
                source: Arc::new(e),
            })?;
        if bars.is_empty() {
            return Err(ForecastError::NoStoredBars { coin: coin.into() });
        }
        bars.sort_by_key(|b| b.ts);
        let mut bars = self.sync_calibration(model, coin, bars).await?;
        // Enough for a forecast and the page's chart, and for the PSI window: data drift is
        // measured on the store's own recent hours, never on bars a client sent.
        let keep = (model.forecaster.min_bars() + EXTRA_BARS)
            .max(self.settings().drift_window + features::spec().warmup);
        if bars.len() > keep {
            bars.drain(..bars.len() - keep);
        }
        Ok(bars)
    }

    /// Takes a freshly read tail: its fresh hours go to monitoring, the newest-bar time moves.
    fn adopt_tail(&self, st: &mut CoinState, model: &LoadedModel, coin: &str, tail: Vec<Bar>) {
        let old_newest = st.newest();
        let fresh_from = tail
            .iter()
            .position(|b| old_newest.is_none_or(|t| b.ts > t));
        let monitoring = &self.inner.monitoring;
        if let Some(i) = fresh_from {
            monitoring.observe_fresh(self.metrics(), &model.key, coin, &tail, i);
        }
        if let Some(newest) = tail.last().map(|b| b.ts) {
            monitoring.note_newest(coin, newest);
        }
        st.tail = tail;
    }

    /// Computes (once) and caches the forecast for the state's newest bar and `model`.
    fn compute_cached(&self, st: &mut CoinState, model: &LoadedModel, coin: &str) -> Cached {
        let (generation, cal) = model.calibration.current(coin);
        if let Some(hit) = st.cached(&model.key, generation) {
            return hit;
        }
        let Some(newest) = st.newest() else {
            return Err(ForecastError::NoCachedBars { coin: coin.into() });
        };
        let start = st.tail.len().saturating_sub(model.forecaster.min_bars());
        let r = forecast::infer(
            self.metrics(),
            model,
            cal.as_deref(),
            coin,
            &st.tail[start..],
            "store",
        )
        .map(Arc::new);
        if let Ok(f) = &r {
            self.inner
                .monitoring
                .record_store_forecast(self.metrics(), model, f);
        }
        st.body = r.as_ref().ok().map(|f| body_of(f));
        st.result = Some((model.key.clone(), newest, generation, r.clone()));
        r
    }

    /// Re-reads one coin from the store; forecasts again if a new bar arrived or the model
    /// changed. Called by the store poller and after a model swap.
    pub async fn refresh_coin(&self, coin: &str) -> Result<(), ForecastError> {
        let model = self.model()?;
        let tail = self.read_tail(coin, &model).await?;
        let slot = self.inner.cache.slot(coin);
        let mut st = slot.write().await;
        if tail.last().map(|b| b.ts) != st.newest() || st.tail.len() < tail.len() {
            self.adopt_tail(&mut st, &model, coin, tail);
        }
        // Errors (e.g. a gap before the newest bar) are cached and served as 422s.
        let _ = self.compute_cached(&mut st, &model, coin);
        Ok(())
    }

    /// Lists the store's coins and refreshes each.
    pub async fn refresh_store(&self) {
        match parquet_io::stored_coins(self.store()).await {
            Ok(coins) => {
                *self
                    .inner
                    .cache
                    .stored_coins
                    .write()
                    .unwrap_or_else(|p| p.into_inner()) = coins.iter().cloned().collect();
                if self.current_model().is_none() {
                    return; // nothing to forecast with yet; the first model triggers a refresh
                }
                for coin in coins {
                    if let Err(e) = self.refresh_coin(&coin).await {
                        tracing::warn!(coin, error = %e, "refreshing stored bars failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing the store failed"),
        }
    }

    /// Coins with bars in the store (as of the last store poll).
    pub fn stored_coins(&self) -> Vec<String> {
        self.inner.cache.stored().iter().cloned().collect()
    }

    /// The newest stored bars of each cached coin (for the page), newest last.
    pub async fn recent_bars(&self, n: usize) -> BTreeMap<String, Vec<Bar>> {
        let slots: Vec<(String, Arc<tokio::sync::RwLock<CoinState>>)> =
            lock(&self.inner.cache.coins)
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        let mut out = BTreeMap::new();
        for (coin, slot) in slots {
            let st = slot.read().await;
            let start = st.tail.len().saturating_sub(n);
            if !st.tail.is_empty() {
                out.insert(coin, st.tail[start..].to_vec());
            }
        }
        out
    }
}
