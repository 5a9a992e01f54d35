//! What the server remembers to watch its model: recent inputs (for PSI), forecasts waiting
//! for their actual close, realised errors and the Page-Hinkley detector fed by them, and the
//! newest forecast and actual per coin. All bounded; guarded by one mutex in the app state
//! and never held across an await.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::Hash;

use rps_features::FeatureFrame;
use rps_monitor::drift::{InputWindow, PageHinkley, PsiSummary};

use crate::api::ForecastOut;

/// How many forecasts may wait for their actual close (a year of hours for a few coins).
pub const MAX_PENDING: usize = 20_000;
/// How many realised errors the page shows.
pub const RECENT: usize = 50;

/// A map that forgets its oldest insertions beyond a capacity.
#[derive(Debug, Clone)]
pub struct BoundedMap<K, V> {
    cap: usize,
    order: VecDeque<K>,
    map: HashMap<K, V>,
}

impl<K: Eq + Hash + Clone, V> BoundedMap<K, V> {
    /// An empty map of at most `cap` entries.
    pub fn new(cap: usize) -> Self {
        BoundedMap {
            cap: cap.max(1),
            order: VecDeque::new(),
            map: HashMap::new(),
        }
    }
    /// Inserts or replaces (keeping the original position); returns the key evicted to make
    /// room, if any.
    pub fn insert(&mut self, k: K, v: V) -> Option<K> {
        if let Some(slot) = self.map.get_mut(&k) {
            *slot = v;
            return None;
        }
        let mut evicted = None;
        if self.order.len() == self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.map.remove(&old);
            evicted = Some(old);
        }
        self.order.push_back(k.clone());
        self.map.insert(k, v);
        evicted
    }
    /// Removes and returns an entry (its queue slot is dropped lazily).
    pub fn remove(&mut self, k: &K) -> Option<V> {
        let v = self.map.remove(k)?;
        if let Some(i) = self.order.iter().rposition(|x| x == k) {
            self.order.remove(i);
        }
        Some(v)
    }
    /// Whether `k` is held.
    pub fn contains(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A forecast waiting for its hour's actual close.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Forecast close, USD.
    pub forecast_close: f64,
    /// Key of the model that made it.
    pub model_key: String,
    /// Version of the model that made it.
    pub model_version: String,
    /// That model's Page-Hinkley error scale.
    pub error_scale: f64,
}

/// A forecast whose actual close arrived.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Realised {
    /// Coin code.
    pub coin: String,
    /// The hour (ms).
    pub ts: i64,
    /// The forecast, USD.
    pub forecast_close: f64,
    /// The actual close, USD.
    pub actual_close: f64,
    /// `|actual − forecast|`, USD.
    pub abs_error: f64,
    /// Version of the model that made the forecast.
    pub model_version: String,
}

/// The outcome of offering an actual close.
#[derive(Debug, Clone)]
pub enum Offer {
    /// A waiting forecast was matched.
    Matched(Realised),
    /// This hour's close was already recorded.
    Duplicate(Realised),
    /// No forecast was made for this hour.
    NoForecast,
}

/// The monitoring state.
#[derive(Debug)]
pub struct Monitor {
    /// Recent distinct input rows.
    pub window: InputWindow,
    psi_cache: Option<(u64, String, PsiSummary)>,
    /// Concept-drift detector on the current model's scaled errors.
    pub ph: PageHinkley,
    pending: BoundedMap<(String, i64), Pending>,
    /// The hours waiting per coin (the keys of `pending`), so a window of bars finds its
    /// matches with one range query instead of a lookup per bar.
    pending_hours: HashMap<String, BTreeSet<i64>>,
    done: BoundedMap<(String, i64), Realised>,
    /// Recently realised forecasts, newest last.
    pub recent_realised: VecDeque<Realised>,
    /// Recently served forecasts (distinct coin/hour/model), newest last.
    pub recent_forecasts: VecDeque<ForecastOut>,
    /// Newest forecast per coin (largest `for_hour`).
    pub latest_forecast: HashMap<String, ForecastOut>,
    /// Newest actual close per coin: (hour ms, close).
    pub latest_actual: HashMap<String, (i64, f64)>,
}

impl Monitor {
    /// Fresh state: `window` recent rows for PSI; Page-Hinkley with δ, λ and a minimum count.
    pub fn new(window: usize, ph_delta: f64, ph_lambda: f64, ph_min_samples: u64) -> Self {
        Monitor {
            window: InputWindow::new(window),
            psi_cache: None,
            ph: PageHinkley::new(ph_delta, ph_lambda, ph_min_samples),
            pending: BoundedMap::new(MAX_PENDING),
            pending_hours: HashMap::new(),
            done: BoundedMap::new(MAX_PENDING),
            recent_realised: VecDeque::new(),
            recent_forecasts: VecDeque::new(),
            latest_forecast: HashMap::new(),
            latest_actual: HashMap::new(),
        }
    }

    /// Adds a frame's rows to the input window (deduplicated by coin and hour).
    pub fn observe_inputs(&mut self, frame: &FeatureFrame) {
        for i in 0..frame.len() {
            self.window.push(&frame.coin, frame.ts[i], frame.row(i));
        }
    }

    /// The PSI summary cached for this window state and model, if still valid.
    pub fn cached_psi(&self, model_key: &str) -> Option<&PsiSummary> {
        match &self.psi_cache {
            Some((v, k, s)) if *v == self.window.version() && k == model_key => Some(s),
            _ => None,
        }
    }

    /// Remembers a PSI summary for this window state and model.
    pub fn store_psi(&mut self, model_key: &str, summary: PsiSummary) {
        self.psi_cache = Some((self.window.version(), model_key.to_string(), summary));
    }

    /// Records a served forecast: it waits for its actual, and becomes the coin's latest if it
    /// is for the newest hour. Returns whether it is now the coin's latest forecast.
    pub fn record_forecast(&mut self, f: &ForecastOut, model_key: &str, error_scale: f64) -> bool {
        let key = (f.coin.clone(), f.for_hour_ms);
        if !self.done.contains(&key) {
            self.pending_hours
                .entry(f.coin.clone())
                .or_default()
                .insert(f.for_hour_ms);
            let evicted = self.pending.insert(
                key,
                Pending {
                    forecast_close: f.forecast_close,
                    model_key: model_key.to_string(),
                    model_version: f.model.version.clone(),
                    error_scale,
                },
            );
            if let Some((coin, ts)) = evicted
                && let Some(hours) = self.pending_hours.get_mut(&coin)
            {
                hours.remove(&ts);
            }
        }
        let same = |g: &ForecastOut| {
            g.coin == f.coin && g.for_hour_ms == f.for_hour_ms && g.model == f.model
        };
        if !self.recent_forecasts.iter().any(same) {
            if self.recent_forecasts.len() == RECENT {
                self.recent_forecasts.pop_front();
            }
            self.recent_forecasts.push_back(f.clone());
        }
        let newest = self
            .latest_forecast
            .get(&f.coin)
            .is_none_or(|g| f.for_hour_ms >= g.for_hour_ms);
        if newest {
            self.latest_forecast.insert(f.coin.clone(), f.clone());
        }
        newest
    }

    /// Offers the actual close of `coin` at hour `ts`. A match feeds Page-Hinkley when the
    /// forecast came from the current model (`current_key`).
    pub fn offer_actual(&mut self, coin: &str, ts: i64, close: f64, current_key: &str) -> Offer {
        let key = (coin.to_string(), ts);
        if let Some(r) = self.done.map.get(&key) {
            return Offer::Duplicate(r.clone());
        }
        if let Some(hours) = self.pending_hours.get_mut(coin) {
            hours.remove(&ts);
        }
        let Some(p) = self.pending.remove(&key) else {
            return Offer::NoForecast;
        };
        let r = Realised {
            coin: coin.to_string(),
            ts,
            forecast_close: p.forecast_close,
            actual_close: close,
            abs_error: (close - p.forecast_close).abs(),
            model_version: p.model_version.clone(),
        };
        if p.model_key == current_key {
            // Scale-free error: |log error| in units of the model's own calibration quantile.
            self.ph
                .update((close / p.forecast_close).ln().abs() / p.error_scale);
        }
        let _ = self.done.insert(key, r.clone());
        if self.recent_realised.len() == RECENT {
            self.recent_realised.pop_front();
        }
        self.recent_realised.push_back(r.clone());
        let newer = self.latest_actual.get(coin).is_none_or(|(t, _)| ts >= *t);
        if newer {
            self.latest_actual.insert(coin.to_string(), (ts, close));
        }
        Offer::Matched(r)
    }

    /// Hours of `coin` in `from..=to` with a forecast waiting for its actual close.
    pub fn pending_between(&self, coin: &str, from: i64, to: i64) -> Vec<i64> {
        self.pending_hours
            .get(coin)
            .map(|h| h.range(from..=to).copied().collect())
            .unwrap_or_default()
    }

    /// A new model starts a new concept: the detector restarts, cached PSI is recomputed.
    pub fn on_new_model(&mut self) {
        self.ph.reset();
        self.psi_cache = None;
    }

    /// Forecasts waiting for their actual.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ModelRef;

    fn forecast(coin: &str, for_hour_ms: i64, close: f64) -> ForecastOut {
        ForecastOut {
            coin: coin.into(),
            based_on: String::new(),
            for_hour: String::new(),
            for_hour_ms,
            last_close: close,
            forecast_close: close,
            forecast_logret: 0.0,
            intervals: vec![],
            model: ModelRef {
                name: "m".into(),
                version: "1".into(),
                run_id: "r".into(),
            },
            source: "request".into(),
            cached: false,
        }
    }

    #[test]
    fn an_actual_close_matches_its_forecast_once() {
        let mut m = Monitor::new(10, 0.1, 25.0, 10);
        m.record_forecast(&forecast("BTC", 7, 100.0), "k", 0.01);
        assert!(matches!(
            m.offer_actual("BTC", 8, 101.0, "k"),
            Offer::NoForecast
        ));
        match m.offer_actual("BTC", 7, 103.0, "k") {
            Offer::Matched(r) => assert_eq!(r.abs_error, 3.0),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            m.offer_actual("BTC", 7, 103.0, "k"),
            Offer::Duplicate(_)
        ));
        assert_eq!(m.ph.samples(), 1);
        // A forecast for an hour already realised does not wait again.
        m.record_forecast(&forecast("BTC", 7, 100.0), "k", 0.01);
        assert_eq!(m.pending_len(), 0);
    }

    #[test]
    fn errors_of_a_replaced_model_do_not_feed_the_detector() {
        let mut m = Monitor::new(10, 0.1, 25.0, 10);
        m.record_forecast(&forecast("BTC", 7, 100.0), "old", 0.01);
        m.on_new_model();
        assert!(matches!(
            m.offer_actual("BTC", 7, 103.0, "new"),
            Offer::Matched(_)
        ));
        assert_eq!(m.ph.samples(), 0);
    }

    #[test]
    fn the_latest_forecast_is_the_one_for_the_newest_hour() {
        let mut m = Monitor::new(10, 0.1, 25.0, 10);
        assert!(m.record_forecast(&forecast("BTC", 9, 1.0), "k", 0.01));
        assert!(!m.record_forecast(&forecast("BTC", 8, 2.0), "k", 0.01));
        assert_eq!(m.latest_forecast["BTC"].for_hour_ms, 9);
    }

    #[test]
    fn bounded_maps_forget_the_oldest() {
        let mut b = BoundedMap::new(2);
        assert_eq!(b.insert(1, 'a'), None);
        assert_eq!(b.insert(2, 'b'), None);
        assert_eq!(b.insert(1, 'c'), None);
        assert_eq!(b.insert(3, 'd'), Some(1));
        assert!(!b.contains(&1));
        assert_eq!(b.len(), 2);
        assert_eq!(b.remove(&2), Some('b'));
        assert!(b.remove(&2).is_none());
    }
}
