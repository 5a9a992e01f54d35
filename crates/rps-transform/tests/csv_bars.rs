//! The shared CryptoDataDownload export as raw bars, read with rps-extract's importer (the
//! one CSV reader of the project); shared with the bench and the `gen_store` example
//! through `#[path]`.

use std::path::Path;

use rps_core::Bar;
use rps_extract::csv_import::{CsvOptions, import_file};

/// Reads the file at `path` as bars of `coin` (whatever its `Symbol` column says),
/// ascending by time, as `rps-extract --source csv` would store them (`ingested_at` 0).
///
/// # Panics
/// On a missing or malformed file, or one holding more than one coin (a fixture problem).
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
