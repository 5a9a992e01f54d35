//! The online interval calibrator of each served coin ([`rps_model::intervals`]): built when
//! a model loads by replaying the coin's last `W + warmup + lookback + 1` stored hours through
//! the model, extended as new bars land, and the state every forecast of the coin (store or
//! client bars, `/predict` and the protocol adapters) takes its intervals from. It is a
//! function of the model and the stored bars alone, so replicas that load the same model
//! from the same store compute the same state, with no storage shared between them.
//!
//! The invariant: a coin's state is, bit for bit, what [`replay()`] of every feature row of the
//! stored bars from the state's first hour to its newest gives, starting from the package's
//! calibrator ([`Forecaster::calibrator`]). An update replays only the rows from the newest
//! hour already replayed on (its outcome was unknown then); the features are recomputed from
//! the first hour, because their rolling sums depend on where a computation starts. When the
//! replayed history itself changed (a bar rewritten, removed or back-filled, or the store
//! rewound), the state is rebuilt from the last hours.
//!
//! Only stored bars reach a state: bars a client sends get intervals from it and never
//! change it.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use rps_core::Bar;
use rps_core::time::{HOUR_MS, fmt_ms};
use rps_features::{FeatureFrame, compute, spec};
use rps_model::Forecaster;
use rps_model::intervals::{OnlineCalibrator, replay};

/// Hours of realised coverage the gauges and the page report.
pub const COVERAGE_HOURS: i64 = 168;

/// Hours of bars a state is built from: the calibration window `W`, the feature warm-up, the
/// model's lookback and the newest hour (whose outcome is not known yet).
pub fn replay_hours(fc: &Forecaster) -> usize {
    fc.metadata().calibrator.window + spec().warmup + fc.lookback() + 1
}

/// The stored hours a state was replayed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// The first bar's hour (ms UTC).
    pub first_ts: i64,
    /// The newest bar's hour (ms UTC).
    pub last_ts: i64,
    /// Fingerprint of every bar from `first_ts` to `last_ts`: a different one means the
    /// replayed history changed.
    fingerprint: u64,
}

/// One coin's calibrator and what serving reports of it.
#[derive(Debug, Clone)]
pub struct CoinCalibration {
    coin: String,
    cal: OnlineCalibrator,
    /// `None`: the package's initial state (no stored bars, or a replay that failed).
    replayed: Option<Replayed>,
    /// The newest stored hour when the state was made (an initial state for a store with
    /// bars is not retried until a newer bar arrives).
    newest: Option<i64>,
    /// Whether each level covered, for the scored hours of the last [`COVERAGE_HOURS`]
    /// before `newest`, by hour.
    recent: BTreeMap<i64, Vec<bool>>,
    /// σ̂ of the hour after the newest bar (the next forecast's).
    sigma: Option<f64>,
    /// Hours scored and rows skipped since `first_ts`.
    scored: usize,
    skipped: usize,
}

/// Coverage of one level over the last [`COVERAGE_HOURS`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LevelCoverage {
    /// The nominal level (`0.9`).
    pub level: f64,
    /// Share of the scored hours whose interval covered the close; `None` without one.
    pub coverage: Option<f64>,
    /// Scored hours counted.
    pub hours: usize,
    /// The calibrator's current αₜ of the level.
    pub alpha: f64,
}

impl CoinCalibration {
    /// The package's initial state, for a coin without stored bars (up to `newest`).
    pub fn initial(fc: &Forecaster, coin: &str, newest: Option<i64>) -> CoinCalibration {
        CoinCalibration {
            coin: coin.to_string(),
            cal: fc.calibrator(),
            replayed: None,
            newest,
            recent: BTreeMap::new(),
            sigma: None,
            scored: 0,
            skipped: 0,
        }
    }

    /// A fresh state from a coin's stored bars (ascending by hour): the replay of the last
    /// [`replay_hours`] of them. Never fails: without bars, or when the replay fails (logged),
    /// the state is the package's initial one.
    pub fn build(fc: &Forecaster, coin: &str, bars: &[Bar]) -> CoinCalibration {
        let Some(newest) = bars.last().map(|b| b.ts) else {
            tracing::info!(
                coin,
                "no stored bars: the intervals come from the package's calibrator as trained"
            );
            return CoinCalibration::initial(fc, coin, None);
        };
        let started = Instant::now();
        let hours = replay_hours(fc);
        let from = newest - (hours as i64 - 1) * HOUR_MS;
        let bars = &bars[bars.partition_point(|b| b.ts < from)..];
        let mut state = CoinCalibration::initial(fc, coin, Some(newest));
        state.replayed = Some(Replayed {
            first_ts: bars[0].ts,
            last_ts: newest,
            fingerprint: fingerprint(bars),
        });
        let frame = compute(coin, bars);
        match state.replay_rows(fc, &frame, 0) {
            Ok(()) => {
                tracing::info!(
                    coin,
                    hours_scored = state.scored,
                    rows_skipped = state.skipped,
                    bars = bars.len(),
                    first = %fmt_ms(bars[0].ts),
                    newest = %fmt_ms(newest),
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "calibrator state replayed from the stored hours"
                );
                state
            }
            Err(e) => {
                tracing::warn!(coin, error = %e, "replaying the stored hours failed: the intervals come from the package's calibrator as trained");
                CoinCalibration::initial(fc, coin, Some(newest))
            }
        }
    }

    /// The state after the store's bars `bars` (ascending) were read: `None` when it is
    /// unchanged (no newer bar, same history), else the state extended by the new hours or,
    /// when the replayed history changed, rebuilt.
    pub fn update(&self, fc: &Forecaster, bars: &[Bar]) -> Option<CoinCalibration> {
        let newest = bars.last()?.ts;
        let Some(r) = self.replayed else {
            return (self.newest != Some(newest)).then(|| Self::build(fc, &self.coin, bars));
        };
        let a = bars.partition_point(|b| b.ts < r.first_ts);
        let b = bars.partition_point(|b| b.ts <= r.last_ts);
        let same_history = bars.get(a).is_some_and(|x| x.ts == r.first_ts)
            && fingerprint(&bars[a..b]) == r.fingerprint;
        if !same_history {
            tracing::info!(
                coin = self.coin,
                "the replayed stored hours changed: rebuilding the calibrator state"
            );
            return Some(Self::build(fc, &self.coin, bars));
        }
        if newest <= r.last_ts {
            return None;
        }
        let started = Instant::now();
        let before = self.scored;
        let bars = &bars[a..];
        let mut next = self.clone();
        next.newest = Some(newest);
        next.replayed = Some(Replayed {
            last_ts: newest,
            fingerprint: fingerprint(bars),
            ..r
        });
        let frame = compute(&self.coin, bars);
        // Rows before the newest one replayed are unchanged (features and outcomes only look
        // back); that row's outcome is the first new bar.
        let from = frame.ts.partition_point(|&t| t < r.last_ts);
        match next.replay_rows(fc, &frame, from) {
            Ok(()) => {
                tracing::debug!(
                    coin = self.coin,
                    hours_scored = next.scored - before,
                    newest = %fmt_ms(newest),
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "calibrator state extended by new stored hours"
                );
                Some(next)
            }
            Err(e) => {
                tracing::warn!(coin = self.coin, error = %e, "extending the calibrator state failed: rebuilding it");
                Some(Self::build(fc, &self.coin, bars))
            }
        }
    }

    /// Replays rows `from..` of `frame` into this state, then keeps the coverage of the last
    /// [`COVERAGE_HOURS`] and the σ̂ of the newest bar.
    fn replay_rows(
        &mut self,
        fc: &Forecaster,
        frame: &FeatureFrame,
        from: usize,
    ) -> rps_model::Result<()> {
        let newest = self.newest.unwrap_or(i64::MIN);
        let since = newest.saturating_sub(COVERAGE_HOURS * HOUR_MS);
        let recent = &mut self.recent;
        let counts = replay(fc, &mut self.cal, frame, from..frame.len(), |h| {
            if h.ts >= since {
                recent.insert(h.ts, h.covered.clone());
            }
        })?;
        self.recent = self.recent.split_off(&since);
        self.scored += counts.scored;
        self.skipped += counts.skipped_gap;
        let n = frame.len();
        self.sigma = (n > 0 && frame.ts[n - 1] == newest).then(|| fc.sigma_at(frame, n - 1));
        Ok(())
    }

    /// The coin.
    pub fn coin(&self) -> &str {
        &self.coin
    }

    /// The calibrator, as forecasts use it.
    pub fn calibrator(&self) -> &OnlineCalibrator {
        &self.cal
    }

    /// The stored hours replayed, or `None` for the package's initial state.
    pub fn replayed(&self) -> Option<Replayed> {
        self.replayed
    }

    /// Hours scored since the first replayed hour.
    pub fn scored(&self) -> usize {
        self.scored
    }

    /// σ̂ of the hour after the newest stored bar (`None` without a feature row for it).
    pub fn sigma(&self) -> Option<f64> {
        self.sigma
    }

    /// Per level, ascending: realised coverage of the last [`COVERAGE_HOURS`] and αₜ.
    pub fn coverage(&self) -> Vec<LevelCoverage> {
        let hours = self.recent.len();
        self.cal
            .levels()
            .iter()
            .zip(self.cal.alpha())
            .enumerate()
            .map(|(k, (&level, &alpha))| {
                let covered = self
                    .recent
                    .values()
                    .filter(|c| c.get(k).copied().unwrap_or(false))
                    .count();
                LevelCoverage {
                    level,
                    coverage: (hours > 0).then(|| covered as f64 / hours as f64),
                    hours,
                    alpha,
                }
            })
            .collect()
    }
}

/// A fingerprint of bars as the features read them (hour, prices, volume).
fn fingerprint(bars: &[Bar]) -> u64 {
    let mut h = DefaultHasher::new();
    for b in bars {
        b.ts.hash(&mut h);
        for v in [b.open, b.high, b.low, b.close] {
            v.to_bits().hash(&mut h);
        }
        b.volume.map(f64::to_bits).hash(&mut h);
    }
    h.finish()
}

/// The calibrator state of every coin a loaded model serves: the model's coins and the
/// store's, at load. Swapped with the model (a reload never mixes a model with another's
/// states); each coin's state is replaced whole when new bars land.
#[derive(Debug, Default)]
pub struct Calibrations {
    coins: RwLock<BTreeMap<String, (u64, Arc<CoinCalibration>)>>,
    /// Bumped on every replacement: a coin's generation tells a cached forecast whether it
    /// used the current state.
    generation: AtomicU64,
    /// One store read and update at a time per coin, so states only move forward.
    updating: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Calibrations {
    /// The state of `coin`, if the model serves it.
    pub fn get(&self, coin: &str) -> Option<Arc<CoinCalibration>> {
        self.read().get(coin).map(|(_, c)| c.clone())
    }

    /// The generation of `coin`'s state (0 without one).
    pub fn generation(&self, coin: &str) -> u64 {
        self.read().get(coin).map_or(0, |(g, _)| *g)
    }

    /// The state of `coin` and its generation (0 and `None` without one).
    pub fn current(&self, coin: &str) -> (u64, Option<Arc<CoinCalibration>>) {
        self.read()
            .get(coin)
            .map_or((0, None), |(g, c)| (*g, Some(c.clone())))
    }

    /// Every coin's state, by coin.
    pub fn all(&self) -> Vec<Arc<CoinCalibration>> {
        self.read().values().map(|(_, c)| c.clone()).collect()
    }

    /// Sets (or replaces) a coin's state.
    pub fn set(&self, state: CoinCalibration) {
        let g = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.coins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(state.coin.clone(), (g, Arc::new(state)));
    }

    /// The lock that serialises reading the store for `coin` and updating its state.
    pub fn update_lock(&self, coin: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.updating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(coin.to_string())
            .or_default()
            .clone()
    }

    fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, (u64, Arc<CoinCalibration>)>> {
        self.coins.read().unwrap_or_else(|p| p.into_inner())
    }
}
