//! The seeded synthetic source: realistic hourly bars with no key and no network, labelled
//! `source=synthetic` in every row.
//!
//! The model: 5-minute price ticks (12 per hour) whose volatility follows a GARCH(1,1)
//! process on hourly returns (volatility clustering), with Student-t innovations, rare jumps
//! (about one hour in 500) and a weak pull of the log price towards a per-coin level so the
//! price stays in a plausible range over years. The unconditional hourly log-return standard
//! deviation is about 0.8 % (the real BTC file has 0.82 %). Volume rises with volatility and
//! with the size of the hour's move, and has a daily rhythm. The ticks are resampled into
//! hourly bars by [`crate::resample()`], so `points` is 12.
//!
//! The path is one deterministic function of (seed, coin) that starts at [`ORIGIN_MS`]:
//! any window is cut from the same path, so overlapping runs agree hour for hour and
//! incremental runs extend the series without a jump.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rps_core::time::{HOUR_MS, fmt_ms};
use rps_core::{Bar, Source};

use crate::error::{ExtractError, Result};
use crate::resample::{Observation, resample};

/// Where every synthetic path starts: 2020-01-01T00:00:00Z.
pub const ORIGIN_MS: i64 = 1_577_836_800_000;
/// The last hour a path can reach (exclusive): 2100-01-01T00:00:00Z.
pub const LIMIT_MS: i64 = 4_102_444_800_000;
/// The default end of the window when `--end` is not given: 2025-01-01T00:00:00Z. Fixed (not
/// "now") so the embedded default run gives the same bars on every machine and every day.
pub const DEFAULT_END_MS: i64 = 1_735_689_600_000;
/// The default window length when `--start` is not given: 90 days before the end.
pub const DEFAULT_DAYS: i64 = 90;
/// Price ticks per hour (one every 5 minutes, like LiveCoinWatch's short-range history).
pub const TICKS_PER_HOUR: usize = 12;

/// Target hourly log-return variance of the GARCH part; jumps add about 3 % to it.
const BASE_VAR: f64 = 0.0078 * 0.0078;
const ALPHA: f64 = 0.07;
const BETA: f64 = 0.90;
const JUMP_PROB_PER_HOUR: f64 = 1.0 / 500.0;
const JUMP_STD: f64 = 0.03;
/// Mean reversion of the log price per hour (half-life about 58 days).
const KAPPA: f64 = 1.0 / 2_000.0;
/// Degrees of freedom of the Student-t innovations (an integer: drawn as a normal over the
/// root of a chi-square built from that many squared normals).
const STUDENT_DF: usize = 5;

/// Per-coin level, circulating supply (for `cap`) and typical hourly USD volume.
fn coin_profile(coin: &str) -> (f64, Option<f64>, f64) {
    match coin {
        "BTC" => (40_000.0, Some(19_600_000.0), 1.2e9),
        "ETH" => (2_500.0, Some(120_200_000.0), 6.0e8),
        _ => (100.0, None, 5.0e7),
    }
}

/// FNV-1a of the coin code, mixed into the seed so coins get different paths.
fn coin_hash(coin: &str) -> u64 {
    coin.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Checks a requested window against the range the generator covers.
fn check_window(start: i64, end: i64) -> Result<()> {
    if start < ORIGIN_MS || end > LIMIT_MS {
        return Err(ExtractError::Usage(format!(
            "synthetic data covers {} .. {}; asked for {} .. {}",
            fmt_ms(ORIGIN_MS),
            fmt_ms(LIMIT_MS),
            fmt_ms(start),
            fmt_ms(end)
        )));
    }
    Ok(())
}

/// The ticks of `coin` with `start <= ts < end` (both rounded down to the hour), ascending.
pub fn observations(coin: &str, seed: u64, start: i64, end: i64) -> Result<Vec<Observation>> {
    let (start, end) = (
        start.div_euclid(HOUR_MS) * HOUR_MS,
        end.div_euclid(HOUR_MS) * HOUR_MS,
    );
    check_window(start, end)?;
    let mut out = Vec::with_capacity(((end - start).max(0) / HOUR_MS) as usize * TICKS_PER_HOUR);
    let mut path = Path::new(coin, seed);
    let mut hour = [Observation {
        ts: 0,
        rate: 0.0,
        volume: None,
        cap: None,
    }; TICKS_PER_HOUR];
    let mut ts = ORIGIN_MS;
    while ts < end {
        path.next_hour(ts, &mut hour);
        if ts >= start {
            out.extend_from_slice(&hour);
        }
        ts += HOUR_MS;
    }
    Ok(out)
}

/// Hourly bars of `coin` for `start <= ts < end`, labelled `source=synthetic`.
pub fn bars(coin: &str, seed: u64, start: i64, end: i64, ingested_at: i64) -> Result<Vec<Bar>> {
    let obs = observations(coin, seed, start, end)?;
    Ok(resample(coin, obs, Source::Synthetic, ingested_at))
}

/// The state of one coin's path.
struct Path {
    rng: ChaCha8Rng,
    log_price: f64,
    log_level: f64,
    var: f64,
    last_eps: f64,
    supply: Option<f64>,
    base_volume: f64,
}

impl Path {
    fn new(coin: &str, seed: u64) -> Path {
        let (level, supply, base_volume) = coin_profile(coin);
        Path {
            rng: ChaCha8Rng::seed_from_u64(seed ^ coin_hash(coin)),
            log_price: level.ln(),
            log_level: level.ln(),
            var: BASE_VAR,
            last_eps: 0.0,
            supply,
            base_volume,
        }
    }

    /// One Student-t draw: a normal over sqrt(chi-square / df).
    fn student_t(&mut self) -> f64 {
        let z: f64 = StandardNormal.sample(&mut self.rng);
        let chi2: f64 = (0..STUDENT_DF)
            .map(|_| {
                let g: f64 = StandardNormal.sample(&mut self.rng);
                g * g
            })
            .sum();
        z / (chi2 / STUDENT_DF as f64).sqrt().max(1e-12)
    }

    /// Fills `out` with the 12 ticks of the hour starting at `hour_ts`.
    fn next_hour(&mut self, hour_ts: i64, out: &mut [Observation; TICKS_PER_HOUR]) {
        // GARCH(1,1): today's variance from yesterday's shock and variance.
        self.var = BASE_VAR * (1.0 - ALPHA - BETA)
            + ALPHA * self.last_eps * self.last_eps
            + BETA * self.var;
        let tick_sd = (self.var / TICKS_PER_HOUR as f64).sqrt();
        // Student-t(5) has variance 5/3; scale to unit variance.
        let t_scale = ((STUDENT_DF as f64 - 2.0) / STUDENT_DF as f64).sqrt();
        let drift = -KAPPA * (self.log_price - self.log_level) / TICKS_PER_HOUR as f64;
        let jump_tick = if self.rng.random_bool(JUMP_PROB_PER_HOUR) {
            Some(self.rng.random_range(0..TICKS_PER_HOUR))
        } else {
            None
        };
        let open_log = self.log_price;
        let mut eps = 0.0;
        for (k, slot) in out.iter_mut().enumerate() {
            let z = self.student_t() * t_scale;
            let mut step = tick_sd * z;
            eps += step;
            if jump_tick == Some(k) {
                let j: f64 = StandardNormal.sample(&mut self.rng);
                step += JUMP_STD * j;
            }
            self.log_price += drift + step;
            *slot = Observation {
                ts: hour_ts + k as i64 * (HOUR_MS / TICKS_PER_HOUR as i64),
                rate: self.log_price.exp(),
                volume: None,
                cap: self.supply.map(|s| s * self.log_price.exp()),
            };
        }
        self.last_eps = eps;
        let hour_ret = (self.log_price - open_log).abs();
        let noise: f64 = StandardNormal.sample(&mut self.rng);
        let hour_of_day = (hour_ts.rem_euclid(24 * HOUR_MS) / HOUR_MS) as f64;
        // Busiest around 14-15 UTC (Europe and America both open), quietest at night.
        let daily = 1.0 + 0.35 * ((hour_of_day - 8.5) / 24.0 * std::f64::consts::TAU).sin();
        let vol_ratio = (self.var / BASE_VAR).sqrt();
        let volume = self.base_volume
            * (0.4 * noise).exp()
            * vol_ratio.powf(1.2)
            * (1.0 + 25.0 * hour_ret)
            * daily;
        // The hour's volume rides on every tick, so the resampled bar's "last" is it.
        for slot in out.iter_mut() {
            slot.volume = Some(volume);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * HOUR_MS;

    fn logrets(bars: &[Bar]) -> Vec<f64> {
        bars.windows(2)
            .map(|w| (w[1].close / w[0].close).ln())
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_bars_and_another_seed_does_not() {
        let a = bars("BTC", 7, DEFAULT_END_MS - 5 * DAY, DEFAULT_END_MS, 0).unwrap();
        let b = bars("BTC", 7, DEFAULT_END_MS - 5 * DAY, DEFAULT_END_MS, 0).unwrap();
        let c = bars("BTC", 8, DEFAULT_END_MS - 5 * DAY, DEFAULT_END_MS, 0).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 120);
        assert!(
            a.iter()
                .all(|x| x.source == Source::Synthetic && x.points == TICKS_PER_HOUR as u32)
        );
    }

    #[test]
    fn overlapping_windows_agree_hour_for_hour() {
        let long = bars("BTC", 1, DEFAULT_END_MS - 10 * DAY, DEFAULT_END_MS, 0).unwrap();
        let tail = bars("BTC", 1, DEFAULT_END_MS - 3 * DAY, DEFAULT_END_MS, 0).unwrap();
        assert_eq!(&long[long.len() - tail.len()..], &tail[..]);
    }

    #[test]
    fn hourly_returns_have_about_the_real_volatility_and_cluster() {
        let b = bars("BTC", 42, ORIGIN_MS, ORIGIN_MS + 730 * DAY, 0).unwrap();
        let r = logrets(&b);
        let n = r.len() as f64;
        let mean = r.iter().sum::<f64>() / n;
        let sd = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!((0.0065..0.0095).contains(&sd), "hourly log-return sd {sd}");
        // Volatility clustering: squared returns are positively autocorrelated.
        let sq: Vec<f64> = r.iter().map(|x| x * x).collect();
        let m = sq.iter().sum::<f64>() / n;
        let cov = sq.windows(2).map(|w| (w[0] - m) * (w[1] - m)).sum::<f64>() / n;
        let var = sq.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
        assert!(
            cov / var > 0.05,
            "autocorrelation of squared returns {}",
            cov / var
        );
        // Fat tails: some moves beyond 5 standard deviations (jumps), which a normal would not give.
        assert!(r.iter().any(|x| x.abs() > 5.0 * sd));
    }

    #[test]
    fn bars_are_consistent_and_volume_is_positive() {
        let b = bars("ETH", 3, DEFAULT_END_MS - 30 * DAY, DEFAULT_END_MS, 0).unwrap();
        for x in &b {
            assert!(x.low <= x.open.min(x.close) && x.high >= x.open.max(x.close) && x.low > 0.0);
            assert!(x.volume.is_some_and(|v| v > 0.0));
        }
        assert!(
            b.windows(2).all(|w| w[1].ts - w[0].ts == HOUR_MS),
            "no gaps"
        );
    }

    #[test]
    fn a_window_before_the_origin_is_refused() {
        assert!(bars("BTC", 1, ORIGIN_MS - HOUR_MS, ORIGIN_MS + HOUR_MS, 0).is_err());
    }
}
