//! The flags of rps-validate (each with its `RPS_*` variable), their value checks, and their
//! translation into the library's [`Config`].

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Parser;
use rps_cli::{CoinList, CommonArgs};
use rps_core::time::parse_utc;
use rps_validate::{Config, Settings};

/// Check the stored raw bars (schema, nulls, duplicates, order, gaps, OHLC sanity, outlier
/// returns, staleness, volume units), write a JSON report and a short summary.
///
/// Exit codes: 0 pass (warnings allowed), 3 a check failed, 2 bad input (no raw data for a
/// coin, unreadable file), 4 the store (S3) failed. Never modifies data.
#[derive(Debug, Parser)]
#[command(name = "rps-validate", version, about, long_about)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Coins to validate, comma-separated (e.g. BTC,ETH); default: every coin with raw bars
    /// in the store.
    #[arg(long, env = "RPS_COINS")]
    coins: Option<CoinList>,

    /// End of the data interval (RFC 3339 UTC, e.g. Airflow's data_interval_end). With it, a
    /// newest bar older than --max-staleness-hours fails; without it staleness is only reported.
    #[arg(long, env = "RPS_END", value_parser = parse_utc)]
    end: Option<DateTime<Utc>>,

    /// Write the JSON report here, replaced atomically: a local file (parent directories are
    /// created) or an object URL `s3://bucket/prefix/name.json` (one PUT, with the AWS_*
    /// settings of --store), which a stage on another host can read.
    #[arg(long, env = "RPS_REPORT")]
    report: Option<PathBuf>,

    /// Largest tolerated share of nulls per column, 0..1 (NaN prices count as nulls).
    #[arg(long, env = "RPS_MAX_NULL_RATIO", default_value_t = 0.01, value_parser = ratio)]
    max_null_ratio: f64,

    /// How many hours before --end the newest bar may open before the data counts as stale.
    #[arg(long, env = "RPS_MAX_STALENESS_HOURS", default_value_t = 2.0, value_parser = non_negative)]
    max_staleness_hours: f64,

    /// Robust z-score (median/MAD of hourly log returns) above which a return is flagged as
    /// an outlier (a warning, never a failure).
    #[arg(long, env = "RPS_OUTLIER_Z", default_value_t = 10.0, value_parser = positive)]
    outlier_z: f64,
}

fn number(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| format!("'{s}' is not a number"))
}

fn ratio(s: &str) -> Result<f64, String> {
    number(s).and_then(|x| {
        (0.0..=1.0)
            .contains(&x)
            .then_some(x)
            .ok_or_else(|| format!("{x} is not within 0..1"))
    })
}

fn non_negative(s: &str) -> Result<f64, String> {
    number(s).and_then(|x| {
        (x >= 0.0)
            .then_some(x)
            .ok_or_else(|| format!("{x} is negative"))
    })
}

fn positive(s: &str) -> Result<f64, String> {
    number(s).and_then(|x| {
        (x > 0.0)
            .then_some(x)
            .ok_or_else(|| format!("{x} is not > 0"))
    })
}

impl Args {
    /// The run's configuration.
    pub fn into_config(self) -> Config {
        Config {
            store: self.common.store,
            coins: self.coins.map(|c| c.0),
            report: self.report,
            settings: Settings {
                end: self.end,
                max_null_ratio: self.max_null_ratio,
                max_staleness_hours: self.max_staleness_hours,
                outlier_z: self.outlier_z,
            },
        }
    }
}
