//! Shared helpers: stores in temp dirs, synthetic hourly bars, running the binary.

use std::path::Path;
use std::process::Output;

use rps_core::time::HOUR_MS;
use rps_core::{Bar, Source, Store, parquet_io};

/// The real-data fixture as BTC bars.
pub fn fixture_bars() -> Vec<Bar> {
    rps_testkit::fixture::bars().to_vec()
}

/// Synthetic bars at the given hours (a smooth, positive price with some volume).
pub fn bars_at(coin: &str, hours: impl IntoIterator<Item = i64>) -> Vec<Bar> {
    hours
        .into_iter()
        .map(|h| {
            let x = h as f64;
            let close = 20_000.0 + (x * 0.37).sin() * 150.0 + x;
            Bar {
                ts: 1_600_000_000_000 / HOUR_MS * HOUR_MS + h * HOUR_MS,
                coin: coin.to_string(),
                open: close - 3.0,
                high: close + 20.0,
                low: close - 25.0,
                close,
                volume: Some(1e6 + (x * 1.3).cos() * 2e5),
                cap: None,
                points: 0,
                source: Source::Synthetic,
                ingested_at: 0,
            }
        })
        .collect()
}

/// Writes raw bars of one coin into a local store.
pub async fn put_raw(dir: &Path, coin: &str, bars: &[Bar]) {
    let store = Store::open(dir.to_str().expect("utf-8 temp path")).expect("open store");
    parquet_io::write_bars(&store, coin, bars)
        .await
        .expect("write raw bars");
}

/// Runs the real binary with `args`.
pub fn run_bin(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rps-transform"))
        .args(args)
        .env_remove("RPS_STORE")
        .env_remove("RPS_COINS")
        .env("RUST_LOG", "info")
        .output()
        .expect("run rps-transform")
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A transform config for a local store.
pub fn config(dir: &Path) -> rps_transform::Config {
    rps_transform::Config {
        store: dir.to_str().expect("utf-8 temp path").to_string(),
        coins: None,
        summary: None,
        profile: None,
        validation_report: None,
        jobs: 2,
    }
}
