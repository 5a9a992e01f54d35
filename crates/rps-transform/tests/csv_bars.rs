//! A minimal reader of the shared CryptoDataDownload export (`unix, Date, Symbol, Open,
//! High, Low, Close, Volume BTC, Volume USD`, newest first) into raw bars, oldest first.
//! Written here because rps-extract's importer is developed in parallel; shared with the
//! bench and the `gen_store` example through `#[path]`.

use std::path::Path;

use rps_core::{Bar, Source};

/// Reads the file at `path` as bars of `coin`, ascending by time.
///
/// # Panics
/// On a missing file or a malformed line (a test fixture problem).
pub fn read_csv(path: &Path, coin: &str) -> Vec<Bar> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut bars: Vec<Bar> = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split(',').collect();
            let num = |j: usize| -> f64 {
                f[j].trim().parse().unwrap_or_else(|e| {
                    panic!("{}: line {}: field {j}: {e}", path.display(), i + 2)
                })
            };
            let unix: i64 = f[0].trim().parse().expect("unix seconds");
            Bar {
                ts: unix * 1000,
                coin: coin.to_string(),
                open: num(3),
                high: num(4),
                low: num(5),
                close: num(6),
                volume: Some(num(8)),
                cap: None,
                points: 0,
                source: Source::Csv,
                ingested_at: 0,
            }
        })
        .collect();
    bars.sort_by_key(|b| b.ts);
    bars
}
