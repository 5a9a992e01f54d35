//! The flags of rps-extract (each with its `RPS_*` variable) and their translation into the
//! library's [`Config`].

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Parser;
use rps_cli::{CoinList, CommonArgs};
use rps_core::storage::S3Options;
use rps_core::time::parse_utc;
use rps_extract::append::RevisionPolicy;
use rps_extract::csv_import::CsvColumns;
use rps_extract::livecoinwatch::{ClientOptions, DEFAULT_API_BASE, KEY_VAR};
use rps_extract::{Config, LcwSettings, SourceConfig, SourceKind};

/// Brings hourly price bars into the store (raw/<COIN>.parquet), idempotently.
///
/// Sources: `livecoinwatch` (the API; key in LIVE_COIN_WATCH_API_KEY, never logged), `csv`
/// (an exchange/aggregator export, CryptoDataDownload format by default) and `synthetic`
/// (seeded, realistic, labelled source=synthetic; no key, no network). Re-running the same
/// window never duplicates rows; a failed run leaves the store unchanged.
///
/// Exit codes: 0 ok, 2 bad usage or input, 4 an external service (API, S3) failed after
/// retries, 1 internal error.
#[derive(Debug, Parser)]
#[command(name = "rps-extract", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Where bars come from: `livecoinwatch`, `csv` (needs --path) or `synthetic`.
    #[arg(long, env = "RPS_SOURCE", value_enum, default_value_t = SourceKind::Synthetic)]
    source: SourceKind,

    /// The CSV file to import (with --source csv).
    #[arg(long, env = "RPS_CSV_PATH", required_if_eq("source", "csv"))]
    path: Option<PathBuf>,

    /// Coins, comma-separated (e.g. BTC,ETH). Default BTC; for CSV, default every coin of the
    /// file's symbol column (BTC when it has none), and with this flag other coins are skipped.
    #[arg(long, env = "RPS_COINS")]
    coins: Option<CoinList>,

    /// First hour to extract, RFC 3339 UTC (Airflow's data_interval_start). Default:
    /// livecoinwatch continues from the last stored hour (or backfills --backfill-days);
    /// synthetic starts 90 days before --end; csv imports every row.
    #[arg(long, env = "RPS_START", value_parser = parse_utc)]
    start: Option<DateTime<Utc>>,

    /// End of the window (exclusive), RFC 3339 UTC (Airflow's data_interval_end). Default:
    /// livecoinwatch uses the start of the current hour (the last complete hour is the
    /// newest); synthetic uses 2025-01-01T00:00:00Z so the default run is reproducible; csv
    /// imports every row.
    #[arg(long, env = "RPS_END", value_parser = parse_utc)]
    end: Option<DateTime<Utc>>,

    /// LiveCoinWatch API base URL (tests point it at a local server).
    #[arg(long, env = "RPS_API_BASE", default_value = DEFAULT_API_BASE)]
    api_base: String,

    /// Hours of history per LiveCoinWatch request; windows sit on a fixed UTC grid so
    /// backfills and incremental runs fetch each hour the same way.
    #[arg(long, env = "RPS_LCW_WINDOW_HOURS", default_value_t = 24, value_parser = clap::value_parser!(i64).range(1..=24 * 90))]
    window_hours: i64,

    /// Days the first LiveCoinWatch run backfills when no --start is given and nothing is stored.
    #[arg(long, env = "RPS_LCW_BACKFILL_DAYS", default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=3650))]
    backfill_days: i64,

    /// Minimum milliseconds between two API requests (the free tier allows a few per second).
    #[arg(long, env = "RPS_LCW_REQUEST_INTERVAL_MS", default_value_t = 400)]
    request_interval_ms: u64,

    /// Retries after a 429, 5xx, timeout or connection error before giving up (exit 4).
    #[arg(long, env = "RPS_LCW_MAX_RETRIES", default_value_t = 5)]
    max_retries: u32,

    /// First retry delay in milliseconds; doubles per retry with jitter (Retry-After wins).
    #[arg(long, env = "RPS_LCW_RETRY_BASE_MS", default_value_t = 1000)]
    retry_base_ms: u64,

    /// Longest retry delay in milliseconds.
    #[arg(long, env = "RPS_LCW_RETRY_MAX_MS", default_value_t = 60_000)]
    retry_max_ms: u64,

    /// Timeout of one API request in seconds.
    #[arg(long, env = "RPS_LCW_TIMEOUT_SECS", default_value_t = 30)]
    timeout_secs: u64,

    /// Ask `credits` first when a run needs more requests than this, and refuse a backfill
    /// that would exceed the credits left today.
    #[arg(long, env = "RPS_LCW_CREDITS_CHECK_ABOVE", default_value_t = 10)]
    credits_check_above: u64,

    /// CSV column with the bar open time (unix seconds or ms, auto-detected, or ISO date-time).
    #[arg(long, env = "RPS_CSV_TS_COLUMN", default_value = "unix")]
    ts_column: String,

    /// CSV column with the open price (USD).
    #[arg(long, env = "RPS_CSV_OPEN_COLUMN", default_value = "Open")]
    open_column: String,

    /// CSV column with the high price (USD).
    #[arg(long, env = "RPS_CSV_HIGH_COLUMN", default_value = "High")]
    high_column: String,

    /// CSV column with the low price (USD).
    #[arg(long, env = "RPS_CSV_LOW_COLUMN", default_value = "Low")]
    low_column: String,

    /// CSV column with the close price (USD).
    #[arg(long, env = "RPS_CSV_CLOSE_COLUMN", default_value = "Close")]
    close_column: String,

    /// CSV column with the volume in USD (optional: bars get no volume when it is absent).
    #[arg(long, env = "RPS_CSV_VOLUME_COLUMN", default_value = "Volume USD")]
    volume_column: String,

    /// CSV column with the pair (e.g. BTC/USD -> coin BTC); optional, --coins names the coin
    /// when it is absent.
    #[arg(long, env = "RPS_CSV_SYMBOL_COLUMN", default_value = "Symbol")]
    symbol_column: String,

    /// Seed of the synthetic generator (same seed, same bars).
    #[arg(long, env = "RPS_SEED", default_value_t = 42)]
    seed: u64,

    /// Largest change, in percent, a re-observed hour may make to a stored open, high, low
    /// or close; a run that would revise more is refused and writes nothing (every accepted
    /// revision is listed in the summary).
    #[arg(long, env = "RPS_REVISION_TOLERANCE", default_value_t = 1.0, value_parser = parse_pct)]
    revision_tolerance: f64,

    /// Accept revisions of stored hours beyond --revision-tolerance (each is listed and
    /// logged as a warning), e.g. to re-import a corrected export.
    #[arg(long, env = "RPS_ALLOW_REVISIONS")]
    allow_revisions: bool,
}

/// A percentage: a finite number >= 0.
fn parse_pct(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a percentage >= 0 (e.g. 1 or 0.5)")),
    }
}

impl Cli {
    /// The run's configuration (the API key is read from its variable here).
    pub fn into_config(self) -> Config {
        let source = match self.source {
            SourceKind::Synthetic => SourceConfig::Synthetic { seed: self.seed },
            SourceKind::Csv => SourceConfig::Csv {
                // clap's required_if_eq guarantees --path with --source csv; an empty path
                // would fail at open with a message naming it.
                path: self.path.unwrap_or_default(),
                columns: CsvColumns {
                    ts: self.ts_column,
                    open: self.open_column,
                    high: self.high_column,
                    low: self.low_column,
                    close: self.close_column,
                    volume: self.volume_column,
                    symbol: self.symbol_column,
                },
            },
            SourceKind::Livecoinwatch => SourceConfig::Livecoinwatch(LcwSettings {
                api_key: std::env::var(KEY_VAR)
                    .ok()
                    .filter(|k| !k.trim().is_empty())
                    .map(Into::into),
                client: ClientOptions {
                    base: self.api_base,
                    request_interval: Duration::from_millis(self.request_interval_ms),
                    max_retries: self.max_retries,
                    retry_base: Duration::from_millis(self.retry_base_ms),
                    retry_max: Duration::from_millis(self.retry_max_ms),
                    timeout: Duration::from_secs(self.timeout_secs),
                },
                window_hours: self.window_hours,
                backfill_days: self.backfill_days,
                credits_check_above: self.credits_check_above,
            }),
        };
        Config {
            store: self.common.store,
            s3: S3Options::default(),
            source,
            coins: self.coins.map(|c| c.0),
            start: self.start.map(|t| t.timestamp_millis()),
            end: self.end.map(|t| t.timestamp_millis()),
            revisions: RevisionPolicy {
                tolerance: self.revision_tolerance / 100.0,
                allow: self.allow_revisions,
            },
        }
    }
}
