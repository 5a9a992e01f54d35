//! Integration tests of rps-model: the package format, the serving-side Forecaster on real
//! feature frames, and training behaviour (it learns a real signal, reproducibly).

// Test helpers outside #[test] functions panic on failure too: that is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod forecaster;
mod golden;
mod package;
mod training;

use rps_core::schema::{Bar, Source};
use rps_core::time::HOUR_MS;

/// Hourly bars at the given hour numbers with a deterministic wavy random-walk close.
pub fn bars(hours: impl IntoIterator<Item = i64>) -> Vec<Bar> {
    let mut close = 30_000.0f64;
    hours
        .into_iter()
        .map(|h| {
            let shock = ((h as f64 * 12.9898).sin() * 43_758.547).fract() - 0.5;
            close *= 1.0 + 0.01 * shock;
            Bar {
                ts: (450_000 + h) * HOUR_MS,
                coin: "BTC".into(),
                open: close,
                high: close * 1.004,
                low: close * 0.996,
                close,
                volume: Some(1.0e6 * (1.0 + 0.3 * shock)),
                cap: None,
                points: 0,
                source: Source::Synthetic,
                ingested_at: 0,
            }
        })
        .collect()
}
