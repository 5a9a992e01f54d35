//! The real-data fixture: hourly BTC/USD bars from Bitstamp (CryptoDataDownload export),
//! 2018-05-15 .. 2022-03-01, kept gzip-compressed at
//! `tests/data/btc-usd-hourly-bitstamp-2018-2022.csv.gz` (see `tests/data/README.md`).
//! It is read with rps-extract's importer, the project's one CSV reader, which takes the
//! `.gz` file as it is.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rps_core::Bar;
use rps_extract::csv_import::{CsvOptions, import_file};

/// Rows of the fixture (hourly bars, no gaps, no duplicates).
pub const ROWS: usize = 33_259;
/// Rows whose two volume columns are swapped (a known quirk of the export).
pub const SWAPPED_VOLUME_ROWS: usize = 20_143;

/// The repository root, found from this crate's manifest directory.
pub fn repo_root() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// Path of the compressed fixture file.
pub fn path() -> PathBuf {
    repo_root().join("tests/data/btc-usd-hourly-bitstamp-2018-2022.csv.gz")
}

/// The fixture's CSV text, decompressed (header first, rows newest first, as exported).
///
/// # Panics
/// When the file is missing or not gzip: a broken checkout.
pub fn text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let p = path();
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let plain = rps_extract::csv_import::decompress(&bytes, &p.display().to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8(plain).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    })
}

/// The header line and the first `n` data rows (the newest hours), as lines.
pub fn head(n: usize) -> Vec<String> {
    text().lines().take(n + 1).map(str::to_string).collect()
}

/// The fixture as raw bars of coin BTC, ascending by hour, as `rps-extract --source csv`
/// stores them (`ingested_at` 0). Read once per test process.
pub fn bars() -> &'static [Bar] {
    static BARS: OnceLock<Vec<Bar>> = OnceLock::new();
    BARS.get_or_init(|| {
        let bars = read_csv(&path(), "BTC");
        assert_eq!(bars.len(), ROWS, "the fixture holds {ROWS} BTC bars");
        bars
    })
}

/// Reads any one-coin CSV export (plain or gzip) at `path` as bars of `coin`, whatever its
/// symbol column says, ascending, as `rps-extract --source csv` stores them (`ingested_at`
/// 0). Benches and examples use it to build stores from other files.
///
/// # Panics
/// On a missing or malformed file, or one holding more than one coin.
pub fn read_csv(path: &Path, coin: &str) -> Vec<Bar> {
    let import = import_file(path, &CsvOptions::default(), 0)
        .unwrap_or_else(|e| panic!("cannot import {}: {e}", path.display()));
    assert_eq!(
        import.bars.len(),
        1,
        "{}: expected one coin, got {:?}",
        path.display(),
        import.bars.keys().collect::<Vec<_>>()
    );
    let mut bars = import.bars.into_values().next().unwrap_or_default();
    for b in &mut bars {
        b.coin.clear();
        b.coin.push_str(coin);
    }
    bars
}

/// The fixture's bars relabelled as `coin`.
pub fn bars_as(coin: &str) -> Vec<Bar> {
    bars()
        .iter()
        .cloned()
        .map(|mut b| {
            b.coin = coin.to_string();
            b
        })
        .collect()
}

/// Index of the first fixture bar at or after `ts` (ms).
pub fn index_at(ts: i64) -> usize {
    bars().partition_point(|b| b.ts < ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_is_the_documented_file() {
        use sha2::{Digest, Sha256};
        let digest = hex::encode(Sha256::digest(text().as_bytes()));
        assert_eq!(
            digest, "b181685e45da1fedc1da3af040ba52372a46b8b72bff259df3fa0497fe336ed4",
            "tests/data/README.md states this sha256 of the decompressed CSV"
        );
    }

    #[test]
    fn the_fixture_reads_as_ascending_gapless_hours() {
        let b = bars();
        assert_eq!(b.len(), ROWS);
        assert!(
            b.windows(2)
                .all(|w| w[1].ts - w[0].ts == rps_core::time::HOUR_MS)
        );
        assert_eq!(head(2).len(), 3);
        assert!(head(0)[0].starts_with("unix,"));
    }
}
