//! The application state every handler shares, and the forecasting flow around the model:
//! features → forecast → monitoring, the per-(newest bar, model) forecast cache of
//! store-backed coins, realised errors, PSI, and the atomic model swap of hot reload.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bytes::Bytes;
use rps_core::time::{HOUR_MS, fmt_ms};
use rps_core::{Bar, Store, parquet_io};
use rps_features as features;
use rps_mlflow::source::{ModelSource, SourceError};
use rps_monitor::drift::{PsiSummary, psi_summary};

use crate::api::{ForecastOut, IntervalOut};
use crate::error::{ApiError, ErrorCode};
use crate::metrics::{CoinLabels, CoinLevelLabels, FeatureLabels, Metrics};
use crate::model::LoadedModel;
use crate::monitor::{Monitor, Offer, Realised};
use crate::validate;

/// Bars of history kept per store-backed coin beyond what the model needs (the page's chart).
pub const EXTRA_BARS: usize = 48;

/// Runtime knobs of the server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// PSI above which a feature counts as drifted (raised per feature by the package's
    /// calibration, see [`rps_monitor::drift::DriftRule`]).
    pub psi_threshold: f64,
    /// Share of features that must drift for the data-drift verdict.
    pub drift_share: f64,
    /// Recent distinct input rows kept for PSI.
    pub drift_window: usize,
    /// Rows needed before PSI is reported.
    pub drift_min_rows: usize,
    /// Page-Hinkley tolerance δ (in error-scale units).
    pub ph_delta: f64,
    /// Page-Hinkley alarm threshold λ.
    pub ph_lambda: f64,
    /// Realised errors before Page-Hinkley may alarm.
    pub ph_min_samples: u64,
    /// How often the alias (or model directory) is checked for a new model.
    pub model_poll_interval: Duration,
    /// How often the store is checked for new bars.
    pub store_poll_interval: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Time limit for a whole request.
    pub request_timeout: Duration,
    /// Most requests in one batch.
    pub max_batch: usize,
    /// The bearer token `/feedback` requires; `None` turns the route off (403). Realised
    /// closes feed the concept-drift detector, so only a caller holding it may send them.
    pub feedback_token: Option<Token>,
    /// Time a client has to send a request's headers, and the longest a kept-alive
    /// connection may sit idle between requests.
    pub header_timeout: Duration,
    /// Most connections served at once; beyond, new connections get a 503 and are closed.
    pub max_connections: usize,
    /// Longest a shutdown waits for requests in flight before closing their connections.
    pub shutdown_grace: Duration,
    /// Longest accepted request URI (path and query), in bytes (414 beyond).
    pub max_uri_bytes: usize,
    /// Largest accepted request head (all header names and values), in bytes (431 beyond).
    pub max_header_bytes: usize,
}

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a secret; an empty one is no token.
    pub fn new(s: impl Into<String>) -> Option<Token> {
        let s = s.into();
        (!s.trim().is_empty()).then(|| Token(s.trim().to_string()))
    }

    /// Whether `given` is the token, compared in time independent of where they differ.
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(rps_core::redact::MASK)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            psi_threshold: 0.2,
            drift_share: 0.5,
            drift_window: 1_000,
            drift_min_rows: 100,
            ph_delta: 0.1,
            ph_lambda: 25.0,
            ph_min_samples: 30,
            model_poll_interval: Duration::from_secs(30),
            store_poll_interval: Duration::from_secs(60),
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(10),
            max_batch: 64,
            feedback_token: None,
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
            shutdown_grace: Duration::from_secs(10),
            max_uri_bytes: 8 << 10,
            max_header_bytes: 16 << 10,
        }
    }
}

impl Settings {
    /// The data-drift rule of these settings.
    pub fn drift_rule(&self) -> rps_monitor::drift::DriftRule {
        rps_monitor::drift::DriftRule {
            threshold: self.psi_threshold,
            share: self.drift_share,
        }
    }
}

/// What a hot-reload poll did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The source still points at the served model (or at one already refused).
    Unchanged,
    /// A new model is now served.
    Swapped {
        /// The version now served.
        version: String,
    },
    /// The new model was refused; the old one keeps serving.
    Failed {
        /// Why the new model was refused.
        reason: String,
    },
    /// The source could not be asked (registry down, directory unreadable).
    ProbeFailed {
        /// What failed.
        reason: String,
    },
}

/// Cached state of one store-backed coin.
#[derive(Debug, Default)]
struct CoinState {
    /// Newest bars, ascending (enough for the model plus [`EXTRA_BARS`]).
    tail: Vec<Bar>,
    /// The forecast (or why there is none) for (model key, newest bar).
    result: Option<(String, i64, Result<Arc<ForecastOut>, ApiError>)>,
    /// The cached forecast's response body (`cached: true`), serialised once: a cache hit is
    /// a copy of these bytes' handle.
    body: Option<Bytes>,
}

impl CoinState {
    fn newest(&self) -> Option<i64> {
        self.tail.last().map(|b| b.ts)
    }
    fn cached(&self, model_key: &str) -> Option<Result<Arc<ForecastOut>, ApiError>> {
        match (&self.result, self.newest()) {
            (Some((k, ts, r)), Some(newest)) if k == model_key && *ts == newest => Some(r.clone()),
            _ => None,
        }
    }
    fn cached_body(&self, model_key: &str) -> Option<Result<Bytes, ApiError>> {
        match (&self.result, self.newest()) {
            (Some((k, ts, r)), Some(newest)) if k == model_key && *ts == newest => {
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

/// Shared state; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    settings: Settings,
    metrics: Metrics,
    /// `None` until the first model loads (the server starts before a champion exists).
    model: RwLock<Option<Arc<LoadedModel>>>,
    source: ModelSource,
    refused_key: Mutex<Option<String>>,
    reload_lock: tokio::sync::Mutex<()>,
    store: Store,
    stored_coins: RwLock<BTreeSet<String>>,
    coins: Mutex<HashMap<String, Arc<tokio::sync::RwLock<CoinState>>>>,
    newest_bar: Mutex<BTreeMap<String, i64>>,
    monitor: Mutex<Monitor>,
    started: Instant,
}

/// Locks a std mutex, recovering from poisoning: every critical section leaves the data
/// consistent between statements, so a panic elsewhere must not take the server down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AppState {
    /// Builds the state around an already-loaded model, or none yet (then requests that need
    /// one get 503 `no_model` until the reload poll finds one).
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
        let monitor = Monitor::new(
            settings.drift_window,
            settings.ph_delta,
            settings.ph_lambda,
            settings.ph_min_samples,
        );
        metrics.concept_drift.set(0);
        metrics.page_hinkley.set(0.0);
        metrics.data_drift.set(0);
        AppState {
            inner: Arc::new(Shared {
                settings,
                metrics,
                model: RwLock::new(model.map(Arc::new)),
                source,
                refused_key: Mutex::new(None),
                reload_lock: tokio::sync::Mutex::new(()),
                store,
                stored_coins: RwLock::new(BTreeSet::new()),
                coins: Mutex::new(HashMap::new()),
                newest_bar: Mutex::new(BTreeMap::new()),
                monitor: Mutex::new(monitor),
                started: Instant::now(),
            }),
        }
    }

    /// The model serving right now, if one has loaded (a request keeps using the one it
    /// started with).
    pub fn current_model(&self) -> Option<Arc<LoadedModel>> {
        self.inner
            .model
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The model serving right now, or the 503 `no_model` answer while none has loaded.
    pub fn model(&self) -> Result<Arc<LoadedModel>, ApiError> {
        self.current_model().ok_or_else(|| self.no_model())
    }

    /// The 503 of requests that need a model before the first one has loaded.
    pub fn no_model(&self) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NoModel,
            format!(
                "no model yet: the model source is checked every {:?}; GET /ready turns 200 \
                 once one has loaded",
                self.settings().model_poll_interval
            ),
        )
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

    /// Where models come from.
    pub fn source(&self) -> &ModelSource {
        &self.inner.source
    }

    /// Seconds since the state was built.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Runs `f` with the monitor locked.
    pub fn with_monitor<R>(&self, f: impl FnOnce(&mut Monitor) -> R) -> R {
        f(&mut lock(&self.inner.monitor))
    }

    /// Coins with bars in the store (as of the last store poll).
    pub fn stored_coins(&self) -> Vec<String> {
        self.inner
            .stored_coins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Validates a coin code and checks the model or the store knows it (so metric labels
    /// stay bounded and typos get a clear answer).
    pub fn known_coin(&self, raw: &str, field: &str) -> Result<String, ApiError> {
        let coin = validate::coin_code(raw, field)?;
        let model = self.model()?;
        let stored = self
            .inner
            .stored_coins
            .read()
            .unwrap_or_else(|p| p.into_inner());
        if model.knows_coin(&coin) || stored.contains(&coin) {
            return Ok(coin);
        }
        let mut known: BTreeSet<String> = model.meta().data.coins.iter().cloned().collect();
        known.extend(stored.iter().cloned());
        Err(ApiError::unknown_coin(format!(
            "{field}: the model was not trained on '{coin}' and the store has no bars for it \
             (known: {})",
            known.into_iter().collect::<Vec<_>>().join(", ")
        )))
    }

    // ---------------------------------------------------------------- forecasting

    /// Computes features and a forecast for `bars` (ascending, consecutive, newest last).
    /// Records nothing: only the store's own forecasts feed monitoring ([`Self::compute_cached`]).
    /// CPU-bound, well under a millisecond: run inline.
    fn infer(
        &self,
        model: &LoadedModel,
        coin: &str,
        bars: &[Bar],
        source: &str,
    ) -> Result<ForecastOut, ApiError> {
        let insufficient = |detail: String| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InsufficientHistory,
                detail,
            )
        };
        let Some(newest) = bars.last().map(|b| b.ts) else {
            return Err(insufficient(format!("no bars for {coin}")));
        };
        let started = Instant::now();
        let frame = features::compute(coin, bars);
        if frame.ts.last() != Some(&newest) || frame.len() < model.forecaster.lookback() {
            return Err(insufficient(format!(
                "{coin}: the newest {} bars up to {} are not consecutive usable hours; the model \
                 needs {} (feature warm-up + lookback)",
                bars.len(),
                fmt_ms(newest),
                model.forecaster.min_bars()
            )));
        }
        let f = model.forecaster.predict(&frame).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::CannotForecast,
                e.to_string(),
            )
        })?;
        self.metrics()
            .inference_latency
            .observe(started.elapsed().as_secs_f64());
        // Prices near f64::MAX pass every per-bar rule yet give infinite bounds, which JSON
        // cannot carry (they would become null and break the response schema).
        let representable = [f.close, f.logret, f.last_close]
            .into_iter()
            .chain(f.intervals.iter().flat_map(|i| [i.lower, i.upper]))
            .all(|v| v.is_finite() && v.abs() < validate::MAX_PRICE * 10.0);
        if !representable {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::CannotForecast,
                format!(
                    "{coin}: the forecast from the bars up to {} is not a representable price \
                     (close {}): check the prices' scale",
                    fmt_ms(newest),
                    f.last_close
                ),
            ));
        }
        let out = ForecastOut {
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
        };
        Ok(out)
    }

    /// Monitoring after a fresh store forecast: it waits for its actual close, and becomes
    /// the coin's latest forecast (gauges).
    fn record_store_forecast(&self, model: &LoadedModel, out: &ForecastOut) {
        let latest = lock(&self.inner.monitor).record_forecast(out, &model.key, model.error_scale);
        if latest {
            self.set_forecast_gauges(out);
        }
    }

    fn set_forecast_gauges(&self, f: &ForecastOut) {
        let m = self.metrics();
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
    fn settle(&self, mon: &mut Monitor, model_key: &str, coin: &str, ts: i64, close: f64) -> Offer {
        let offer = mon.offer_actual(coin, ts, close, model_key);
        if let Offer::Matched(r) = &offer {
            let m = self.metrics();
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
    fn settle_bars(&self, mon: &mut Monitor, model_key: &str, bars: &[Bar]) {
        let (Some(first), Some(last)) = (bars.first(), bars.last()) else {
            return;
        };
        for ts in mon.pending_between(&first.coin, first.ts, last.ts) {
            let i = bars.partition_point(|b| b.ts < ts);
            if let Some(b) = bars.get(i).filter(|b| b.ts == ts) {
                self.settle(mon, model_key, &b.coin, ts, b.close);
            }
        }
    }

    /// A forecast from a client's bars (already validated). Client bars are not trusted:
    /// they get a forecast and touch no monitoring state (PSI window, waiting forecasts,
    /// gauges, realised errors).
    pub fn forecast_bars(&self, coin: &str, bars: &[Bar]) -> Result<ForecastOut, ApiError> {
        let model = self.model()?;
        self.infer(&model, coin, bars, "request")
    }

    /// The forecast for a coin's newest stored hour: computed once per (newest bar, model)
    /// and served from the cache after that.
    pub async fn forecast_store(&self, coin: &str) -> Result<ForecastOut, ApiError> {
        let model = self.model()?;
        let slot = self.coin_slot(coin);
        if let Some(hit) = slot.read().await.cached(&model.key) {
            return hit.map(|f| ForecastOut {
                cached: true,
                ..(*f).clone()
            });
        }
        let mut st = slot.write().await;
        if let Some(hit) = st.cached(&model.key) {
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
    pub async fn forecast_store_body(&self, coin: &str) -> Result<Bytes, ApiError> {
        let model = self.model()?;
        if let Some(hit) = self.coin_slot(coin).read().await.cached_body(&model.key) {
            return hit;
        }
        let out = self.forecast_store(coin).await?;
        serde_json::to_vec(&out).map(Bytes::from).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                format!("serialising a forecast: {e}"),
            )
        })
    }

    fn coin_slot(&self, coin: &str) -> Arc<tokio::sync::RwLock<CoinState>> {
        let mut coins = lock(&self.inner.coins);
        if let Some(slot) = coins.get(coin) {
            return slot.clone();
        }
        coins.entry(coin.to_string()).or_default().clone()
    }

    /// Reads the newest bars of `coin` from the store.
    async fn read_tail(&self, coin: &str, model: &LoadedModel) -> Result<Vec<Bar>, ApiError> {
        let mut bars = parquet_io::read_bars(self.store(), coin)
            .await
            .map_err(|e| ApiError::store_unavailable(&format!("reading the bars of {coin}"), &e))?;
        if bars.is_empty() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::NoData,
                format!(
                    "the store has no bars for {coin}: send them in \"bars\" or run rps-extract"
                ),
            ));
        }
        bars.sort_by_key(|b| b.ts);
        // Enough for a forecast and the page's chart, and for the PSI window: data drift is
        // measured on the store's own recent hours, never on bars a client sent.
        let keep = (model.forecaster.min_bars() + EXTRA_BARS)
            .max(self.settings().drift_window + features::spec().warmup);
        if bars.len() > keep {
            bars.drain(..bars.len() - keep);
        }
        Ok(bars)
    }

    /// Takes a freshly read tail: its feature rows enter the PSI window, its closes settle
    /// the forecasts waiting for them, the newest-bar time moves.
    fn adopt_tail(&self, st: &mut CoinState, model: &LoadedModel, coin: &str, tail: Vec<Bar>) {
        let old_newest = st.newest();
        let fresh_from = tail
            .iter()
            .position(|b| old_newest.is_none_or(|t| b.ts > t));
        if let Some(i) = fresh_from {
            // Features of the fresh hours need the warm-up bars before them.
            let from = i.saturating_sub(features::spec().warmup);
            let frame = features::compute(coin, &tail[from..]);
            let mut mon = lock(&self.inner.monitor);
            mon.observe_inputs(&frame);
            self.settle_bars(&mut mon, &model.key, &tail[i..]);
        }
        if let Some(newest) = tail.last().map(|b| b.ts) {
            lock(&self.inner.newest_bar).insert(coin.to_string(), newest);
        }
        st.tail = tail;
    }

    /// Computes (once) and caches the forecast for the state's newest bar and `model`.
    fn compute_cached(
        &self,
        st: &mut CoinState,
        model: &LoadedModel,
        coin: &str,
    ) -> Result<Arc<ForecastOut>, ApiError> {
        if let Some(hit) = st.cached(&model.key) {
            return hit;
        }
        let Some(newest) = st.newest() else {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::NoData,
                format!("no bars for {coin}"),
            ));
        };
        let start = st.tail.len().saturating_sub(model.forecaster.min_bars());
        let r = self
            .infer(model, coin, &st.tail[start..], "store")
            .map(Arc::new);
        if let Ok(f) = &r {
            self.record_store_forecast(model, f);
        }
        st.body = r.as_ref().ok().map(|f| body_of(f));
        st.result = Some((model.key.clone(), newest, r.clone()));
        r
    }

    /// Re-reads one coin from the store; forecasts again if a new bar arrived or the model
    /// changed. Called by the store poller and after a model swap.
    pub async fn refresh_coin(&self, coin: &str) -> Result<(), ApiError> {
        let model = self.model()?;
        let tail = self.read_tail(coin, &model).await?;
        let slot = self.coin_slot(coin);
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

    /// The newest stored bars of each cached coin (for the page), newest last.
    pub async fn recent_bars(&self, n: usize) -> BTreeMap<String, Vec<Bar>> {
        let slots: Vec<(String, Arc<tokio::sync::RwLock<CoinState>>)> = lock(&self.inner.coins)
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

    // ---------------------------------------------------------------- feedback & drift

    /// Records a realised close sent by a client.
    pub fn feedback(
        &self,
        coin: &str,
        ts: i64,
        close: f64,
    ) -> Result<(bool, Realised, bool), ApiError> {
        let model = self.model()?;
        let mut mon = lock(&self.inner.monitor);
        match self.settle(&mut mon, &model.key, coin, ts, close) {
            Offer::Matched(r) => Ok((true, r, mon.ph.drift())),
            Offer::Duplicate(r) => Ok((false, r, mon.ph.drift())),
            Offer::NoForecast => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NoForecast,
                format!(
                    "no forecast for {coin} at {} is waiting for its close (forecasts are kept for \
                     the last {} hours served)",
                    fmt_ms(ts),
                    crate::monitor::MAX_PENDING
                ),
            )),
        }
    }

    /// PSI of the recent inputs against the model's reference (cached until either changes);
    /// `None` while fewer than `drift_min_rows` rows were seen. Updates the gauges.
    pub fn psi(&self) -> (Option<PsiSummary>, usize) {
        let model = self.current_model();
        let mut mon = lock(&self.inner.monitor);
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
        let newest = lock(&self.inner.newest_bar).clone();
        for (coin, ts) in newest {
            let age = (now - (ts + HOUR_MS)) as f64 / 1000.0;
            self.metrics()
                .newest_bar_age
                .get_or_create(&CoinLabels { coin })
                .set(age);
        }
        let _ = self.psi();
    }

    // ---------------------------------------------------------------- hot reload

    /// Asks the source whether it points at a new model; if so loads it in the background and
    /// swaps it in atomically. A package that fails to load (corrupt, feature-spec mismatch)
    /// is refused, counted, remembered (not retried until the source changes again), and the
    /// old model keeps serving.
    pub async fn reload_once(&self) -> ReloadOutcome {
        let _one_at_a_time = self.inner.reload_lock.lock().await;
        let cand = match self.source().probe().await {
            Ok(c) => c,
            Err(e) => {
                // Before the first model, an alias that points nowhere is the normal wait.
                // Once a model serves, a registry that vanished or fails is an incident: it
                // is logged as a warning and counted as a failed reload (the reload alert).
                let waiting =
                    matches!(e, SourceError::NoAlias { .. }) && self.current_model().is_none();
                if waiting {
                    tracing::debug!(error = %e, "no model to serve yet");
                } else {
                    self.metrics().observe_reload(false);
                    tracing::warn!(error = %e, "checking for a new model failed; the current model keeps serving");
                }
                return ReloadOutcome::ProbeFailed {
                    reason: e.to_string(),
                };
            }
        };
        if self.current_model().is_some_and(|m| m.key == cand.key) {
            return ReloadOutcome::Unchanged;
        }
        if lock(&self.inner.refused_key).as_deref() == Some(cand.key.as_str()) {
            return ReloadOutcome::Unchanged;
        }
        match LoadedModel::fetch(self.source(), &cand).await {
            Ok(model) => {
                let version = model.version.clone();
                self.install(model);
                tracing::info!(version, source = %self.source().describe(), "serving a new model");
                ReloadOutcome::Swapped { version }
            }
            Err(e) => {
                self.metrics().observe_reload(false);
                *lock(&self.inner.refused_key) = Some(cand.key.clone());
                tracing::warn!(error = %e, "refused a new model; the old one keeps serving");
                ReloadOutcome::Failed {
                    reason: e.to_string(),
                }
            }
        }
    }

    /// Swaps in a new model: requests in flight finish with the old `Arc`, new ones get the
    /// new model; cached forecasts are keyed by model and so recompute on next use.
    pub fn install(&self, model: LoadedModel) {
        self.metrics().set_model_info(model.info_labels());
        *self.inner.model.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(model));
        let mut mon = lock(&self.inner.monitor);
        mon.on_new_model();
        self.metrics().page_hinkley.set(mon.ph.statistic());
        self.metrics().concept_drift.set(0);
        drop(mon);
        self.metrics().observe_reload(true);
    }
}
