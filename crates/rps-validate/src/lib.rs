//! rps-validate: data-quality and schema checks of the stored raw bars, the JSON report and
//! the pass/warn/fail decision (exit 0 pass or warn, 3 fail, 2 bad input). Never modifies data.
//!
//! ```text
//! $ rps-validate --store ./data --coins BTC --report reports/validation.json
//! BTC: 33259 rows, 2018-05-15T06:00:00Z .. 2022-03-01T00:00:00Z: WARN
//!   warn  outlier_returns       135  135 of 33258 hourly log returns beyond robust z 10 (...)
//!   warn  volume_units        20143  20143 rows in 3 runs whose volume looks like a coin amount, not USD (...)
//!   pass  staleness               0  no --end given: newest bar 2022-03-01T00:00:00Z (not checked)
//! validation WARN: 1 coin(s), 33259 rows, 17 checks: 15 pass, 2 warn, 0 fail; report reports/validation.json
//! ```
//!
//! # Checks
//! Every check has a severity: an `error` check that finds something fails the run, a
//! `warning` check only warns. The decision is taken once, at the end, from the counted
//! summary (`Report::status`).
//!
//! | name | severity | counts |
//! | --- | --- | --- |
//! | `readable` | error | only recorded when the coin's raw file is missing, empty or does not decode as raw bars (wrong column type, missing column, not Parquet): bad input, the run exits 2 after writing the report |
//! | `schema` | warning | a decodable file whose columns differ from the contract (extra columns, other time zone) |
//! | `coin` | error | rows whose `coin` is not the file's coin |
//! | `hour_alignment` | error | rows whose `ts` is not the start of a UTC hour |
//! | `null_ratio.<col>` | error (prices), warning (`volume`, `cap`) | nulls per column (`open`, `high`, `low`, `close`, `volume`, `cap`; NaN counts as null); a price column fails above `--max-null-ratio` and warns below it; the optional columns (`volume`, `cap`: no feature needs them) only warn, and pass as "not provided by the source" when null in every row |
//! | `duplicates` | error | rows repeating an earlier (`coin`, `ts`) |
//! | `ordering` | error | rows whose `ts` is earlier than the previous row's |
//! | `gaps` | warning | missing hours between the first and last bar, each listed in `gaps[]` |
//! | `ohlc` | error | rows violating `0 < low <= min(open, close) <= max(open, close) <= high` or with infinite prices (rows with a null price are counted by `null_ratio` only) |
//! | `non_negative` | error | rows with a negative `volume` or `cap` |
//! | `outlier_returns` | warning | hourly log returns whose robust z-score (median/MAD) exceeds `--outlier-z` |
//! | `volume_units` | warning | rows whose `volume` is a coin amount rather than USD (swapped volume columns, see below) |
//! | `staleness` | error | with `--end`: the newest bar opens more than `--max-staleness-hours` before `--end`; without `--end` the newest bar is reported and the check passes, so historical imports pass |
//!
//! ## `volume_units`: swapped volume columns
//! Exchange exports carry two volumes, in coins and in USD; some rows have them swapped (the
//! shared Bitstamp file has 20,143 such rows, in a few long runs). Raw bars keep only the USD
//! volume, so a swapped row stores the *coin amount* as `volume`. The evidence per row is
//! `0 < volume < close`: an hour's USD turnover below the price of one coin, which is what a
//! coin amount looks like for any coin whose price exceeds its typical hourly coin volume
//! (BTC, ETH) and is rare for a real USD volume. Single hours with tiny real volume exist,
//! and so do hours whose coin amount exceeds the price (crash days), so the evidence is
//! smoothed: a row is flagged when more than half of the rows with a positive volume within
//! [`VOLUME_WINDOW`] such rows on either side (itself included) show it; a tie keeps the row's
//! own evidence. A rolling median of `volume / close` cannot do this: swapped rows come in
//! runs of thousands, so the median inside a run is itself swapped. Zero volumes are neither
//! evidence nor flagged. The check is conservative for cheap coins (price below the hourly
//! coin volume): it then finds nothing rather than false alarms.
//!
//! # Report (`--report FILE.json`)
//! ```json
//! {
//!   "tool": "rps-validate", "version": "0.1.0", "store": "./data",
//!   "settings": { "end": "2024-01-01T00:00:00Z" | null, "max_null_ratio": 0.01,
//!                 "max_staleness_hours": 2.0, "outlier_z": 10.0 },
//!   "status": "pass" | "warn" | "fail",
//!   "summary": { "coins": 1, "rows": 33259, "checks": 17, "passed": 15, "warned": 2, "failed": 0,
//!                "unreadable": 0 },
//!   "coins": [ {
//!     "coin": "BTC", "key": "raw/BTC.parquet", "rows": 33259,
//!     "range": { "start": "2018-05-15T06:00:00Z", "end": "2022-03-01T00:00:00Z" } | null,
//!     "status": "warn",
//!     "checks": [ { "name": "volume_units", "severity": "warning" | "error",
//!                   "status": "pass" | "warn" | "fail", "count": 20143, "details": "...",
//!                   "examples": [ { "row": 0, "ts": "2018-05-15T06:00:00Z", "note": "..." } ] } ],
//!     "gaps": [ { "start": "2024-01-01T05:00:00Z", "end": "2024-01-01T07:00:00Z", "missing_hours": 3 } ]
//!   } ]
//! }
//! ```
//! `row` is the 0-based row in the stored file; `ts`/`start`/`end` are RFC 3339 UTC hours;
//! a gap's `start` and `end` are the first and last *missing* hour (inclusive). At most
//! [`MAX_EXAMPLES`] examples per check. A coin whose file is unreadable appears with
//! `rows: 0` and a failed `readable` check (counted in `summary.unreadable`) and the run exits 2. The report holds no
//! wall-clock time, so re-running on the same data writes the same bytes.

#![deny(missing_docs)]

pub mod checks;
pub mod location;
pub mod report;
pub mod volume;

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rps_core::parquet_io;
use rps_core::schema::{batch_to_bars, raw_schema};
use rps_core::storage::{Store, layout};
use rps_core::{CoreError, ExitCode};

pub use checks::{Settings, validate_bars};
pub use report::{Check, CoinReport, Example, Gap, Report, Severity, Status};

/// How many rows with a positive volume on each side of a row `volume_units` looks at.
pub const VOLUME_WINDOW: usize = 12;
/// At most this many examples are listed per check.
pub const MAX_EXAMPLES: usize = 5;

/// Result alias for rps-validate.
pub type Result<T, E = ValidateError> = std::result::Result<T, E>;

/// Why validation could not be carried out (as opposed to data that fails a check).
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The store or a raw file could not be read or decoded. (Boxed: keeps `Result` small.)
    #[error("coin {coin}: {source}")]
    Read {
        /// The coin whose raw file was being read.
        coin: String,
        /// The storage or decoding error.
        #[source]
        source: Box<CoreError>,
    },
    /// The store location is unusable.
    #[error(transparent)]
    Store(Box<CoreError>),
    /// A requested coin has no raw bars.
    #[error("{location}/{key}: no raw bars for coin {coin} (run rps-extract first)")]
    NoData {
        /// The store's location.
        location: String,
        /// The raw file's key (`raw/<COIN>.parquet`), missing or without rows.
        key: String,
        /// The coin asked for.
        coin: String,
    },
    /// The local store directory does not exist (validate never creates it).
    #[error("store {location}: directory does not exist")]
    NoStore {
        /// The store location as given.
        location: String,
    },
    /// The store holds no raw bars at all and no coin was named.
    #[error("store {location}: no raw bars stored under '{dir}/' (run rps-extract first)")]
    NoCoins {
        /// The store's location.
        location: String,
        /// The directory searched for raw files (`raw`).
        dir: String,
    },
    /// The report file could not be written.
    #[error("report {path}: {source}")]
    Report {
        /// The local report file (`--report`).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The report could not be written to its object URL (`--report s3://…`).
    #[error("report {url}: {source}")]
    ReportObject {
        /// The report's URL as given.
        url: String,
        /// The storage error.
        #[source]
        source: Box<CoreError>,
    },
    /// The report could not be serialised (a bug).
    #[error("report: cannot serialise: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl From<CoreError> for ValidateError {
    fn from(e: CoreError) -> Self {
        ValidateError::Store(Box::new(e))
    }
}

impl ValidateError {
    /// The exit code of this error (crates/rps-core/src/exit.rs).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ValidateError::Read { source, .. }
            | ValidateError::Store(source)
            | ValidateError::ReportObject { source, .. } => source.exit_code(),
            ValidateError::NoData { .. }
            | ValidateError::NoStore { .. }
            | ValidateError::NoCoins { .. }
            | ValidateError::Report { .. } => ExitCode::BadInput,
            ValidateError::Serialize(_) => ExitCode::Internal,
        }
    }
}

/// What a run validates and how strictly.
#[derive(Debug, Clone)]
pub struct Config {
    /// Store location (local directory or `s3://bucket/prefix`).
    pub store: String,
    /// Coins to validate; `None` = every coin with raw bars in the store.
    pub coins: Option<Vec<String>>,
    /// Where to write the JSON report, if anywhere: a local file or an `s3://` object URL
    /// ([`location`]).
    pub report: Option<PathBuf>,
    /// Thresholds and the data interval end.
    pub settings: Settings,
}

impl Config {
    /// A config with the default thresholds.
    pub fn new(store: impl Into<String>) -> Config {
        Config {
            store: store.into(),
            coins: None,
            report: None,
            settings: Settings::default(),
        }
    }

    /// Sets the data interval end.
    pub fn with_end(mut self, end: Option<DateTime<Utc>>) -> Config {
        self.settings.end = end;
        self
    }
}

/// Validates the raw bars of the configured coins, writes the report (if asked), writes the
/// human summary to `out`, and returns the report; its [`Report::exit_code`] is the verdict.
///
/// A coin whose file cannot be read or decoded is bad input: the other coins are still
/// validated and the report written (that coin with a failed `readable` check), then the first
/// such error is returned.
pub async fn run(config: &Config, out: &mut dyn Write) -> Result<Report> {
    if !config.store.contains("://") && !std::path::Path::new(&config.store).is_dir() {
        // Store::open would create the directory; a read-only stage must not.
        return Err(ValidateError::NoStore {
            location: config.store.clone(),
        });
    }
    let store = Store::open(&config.store)?;
    let coins = match &config.coins {
        Some(c) => c.clone(),
        None => {
            let coins = parquet_io::stored_coins(&store).await?;
            if coins.is_empty() {
                return Err(ValidateError::NoCoins {
                    location: store.location().to_string(),
                    dir: layout::RAW_DIR.to_string(),
                });
            }
            coins
        }
    };

    let mut reports = Vec::with_capacity(coins.len());
    let mut first_error = None;
    for coin in &coins {
        match validate_coin(&store, coin, &config.settings).await {
            Ok(r) => {
                tracing::info!(coin = %coin, rows = r.rows, status = ?r.status, "validated");
                reports.push(r);
            }
            Err(e) => {
                tracing::warn!(coin = %coin, error = %e, "cannot validate");
                reports.push(CoinReport::unreadable(
                    coin,
                    &layout::raw(coin),
                    &e.to_string(),
                ));
                first_error.get_or_insert(e);
            }
        }
    }
    let report = Report::new(store.location(), config.settings.clone(), reports);
    if let Some(path) = &config.report {
        report.write_to(path).await?;
    }
    // The summary is a courtesy: the exit code and the report carry the verdict, so a closed
    // stdout must not turn a pass into a failure.
    let _ = out.write_all(report.summary_text(config.report.as_deref()).as_bytes());
    let _ = out.flush();
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Reads and checks one coin's raw file.
async fn validate_coin(store: &Store, coin: &str, settings: &Settings) -> Result<CoinReport> {
    let key = layout::raw(coin);
    let read_err = |source| ValidateError::Read {
        coin: coin.to_string(),
        source: Box::new(source),
    };
    let no_data = || ValidateError::NoData {
        location: store.location().to_string(),
        key: key.clone(),
        coin: coin.to_string(),
    };
    // Same decoding as `parquet_io::read_bars`, keeping the file's schema for the schema check.
    let decoded = parquet_io::read(store, &key)
        .await
        .map_err(read_err)?
        .ok_or_else(no_data)?;
    let name = format!("{}/{key}", store.location());
    let mut bars = Vec::new();
    for batch in &decoded.batches {
        bars.extend(batch_to_bars(batch, &name).map_err(read_err)?);
    }
    if bars.is_empty() {
        return Err(no_data());
    }
    let schema = checks::schema_check(&decoded.schema, &raw_schema());
    Ok(validate_bars(coin, &key, &bars, schema, settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_files_and_missing_data_are_bad_input() {
        let e = ValidateError::Read {
            coin: "BTC".into(),
            source: Box::new(CoreError::BadFile {
                key: "k".into(),
                reason: "missing column 'close'".into(),
            }),
        };
        assert_eq!(e.exit_code(), ExitCode::BadInput);
        let e = ValidateError::NoData {
            location: "d".into(),
            key: "raw/BTC.parquet".into(),
            coin: "BTC".into(),
        };
        assert_eq!(e.exit_code(), ExitCode::BadInput);
        assert!(e.to_string().contains("d/raw/BTC.parquet"));
    }
}
