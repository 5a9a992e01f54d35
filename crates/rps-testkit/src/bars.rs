//! Builders of small synthetic hourly bar series for tests that need no real data.

use rps_core::time::HOUR_MS;
use rps_core::{Bar, Source};

/// A bar of `coin` at `ts` (ms) closing at `close`: open at the close, high/low ±1 %,
/// volume 1,000, `source` synthetic.
pub fn bar(coin: &str, ts: i64, close: f64) -> Bar {
    Bar {
        ts,
        coin: coin.to_string(),
        open: close,
        high: close * 1.01,
        low: close * 0.99,
        close,
        volume: Some(1000.0),
        cap: None,
        points: 0,
        source: Source::Synthetic,
        ingested_at: 0,
    }
}

/// `n` consecutive hourly bars of `coin` from `start` (ms), a smooth wave around 100 with a
/// slight trend: every price positive and every step one hour.
pub fn hourly(coin: &str, start: i64, n: usize) -> Vec<Bar> {
    (0..n)
        .map(|i| {
            let close = 100.0 + (i as f64 * 0.7).sin() * 5.0 + i as f64 * 0.01;
            let mut b = bar(coin, start + i as i64 * HOUR_MS, close);
            b.volume = Some(1000.0 + (i % 17) as f64 * 13.0);
            b
        })
        .collect()
}
