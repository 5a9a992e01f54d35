//! rps-extract: brings hourly price bars into the store's `raw/<COIN>.parquet` from one of
//! three sources — the LiveCoinWatch API, a CSV export, or a seeded synthetic generator — and
//! appends them idempotently (primary key `coin`, `ts`).
//!
//! [`run`] is the whole stage: it reads, checks and merges everything first and writes only
//! when all of it succeeded, so a failed run leaves the store byte-for-byte as it was.
//!
//! The time window comes from `start`/`end` (Airflow's data interval), never from the clock,
//! with two documented defaults: the LiveCoinWatch source ends at the start of the current
//! hour when no `end` is given (the last complete hour is the newest it can fetch), and the
//! synthetic source ends at the fixed [`synthetic::DEFAULT_END_MS`] so the embedded default
//! run is reproducible.
//!
//! ```text
//! $ rps-extract --store ./data                      # synthetic: the embedded default
//! extract source=synthetic coins=BTC bars=2160 inserted=2160 replaced=0 unchanged=0 range=2024-10-03T00:00:00Z..2024-12-31T23:00:00Z stored=BTC:2160 store=./data
//! $ rps-extract --store ./data-real --source csv --path tests/data/btc-usd-hourly-bitstamp-2018-2022.csv.gz
//! extract source=csv coins=BTC bars=33259 inserted=33259 replaced=0 unchanged=0 range=2018-05-15T06:00:00Z..2022-03-01T00:00:00Z stored=BTC:33259 store=./data-real
//! $ LIVE_COIN_WATCH_API_KEY=... rps-extract --source livecoinwatch --coins BTC,ETH --end 2025-01-01T00:00:00Z
//! ```

#![deny(missing_docs)]

pub mod append;
pub mod csv_import;
pub mod error;
pub mod livecoinwatch;
pub mod resample;
pub mod synthetic;

use std::path::PathBuf;
use std::time::Instant;

use rps_core::storage::S3Options;
use rps_core::time::{HOUR_MS, floor_hour, fmt_ms};
use rps_core::{Bar, Source, Store};
use secrecy::SecretString;

use crate::append::{AppendStats, Revision, RevisionPolicy, Stored};
use crate::csv_import::{CsvColumns, CsvOptions};
pub use crate::error::{ExtractError, Result, classify};
use crate::livecoinwatch::{Client, ClientOptions, KEY_VAR, plan_windows};
use crate::resample::resample;

/// Which source to extract from (`--source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// The LiveCoinWatch API (needs LIVE_COIN_WATCH_API_KEY).
    Livecoinwatch,
    /// A CSV export of hourly bars (`--path`).
    Csv,
    /// The seeded synthetic generator (no key, no network).
    Synthetic,
}

/// Settings of the LiveCoinWatch source.
#[derive(Debug, Clone)]
pub struct LcwSettings {
    /// The key (from LIVE_COIN_WATCH_API_KEY); `None` fails the run with a message naming it.
    pub api_key: Option<SecretString>,
    /// Base URL, spacing, retries, timeout.
    pub client: ClientOptions,
    /// Hours per `history` request.
    pub window_hours: i64,
    /// How far back the first run goes when no `start` is given and nothing is stored.
    pub backfill_days: i64,
    /// Check `credits` before a run that needs more requests than this.
    pub credits_check_above: u64,
}

impl Default for LcwSettings {
    fn default() -> Self {
        LcwSettings {
            api_key: None,
            client: ClientOptions::default(),
            window_hours: 24,
            backfill_days: 30,
            credits_check_above: 10,
        }
    }
}

/// Where the bars come from, with that source's settings.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// The LiveCoinWatch API.
    Livecoinwatch(LcwSettings),
    /// A CSV export, plain or gzip-compressed.
    Csv {
        /// The local CSV file (`--path`).
        path: PathBuf,
        /// Which header names hold which field.
        columns: CsvColumns,
    },
    /// The seeded synthetic generator.
    Synthetic {
        /// Seed of the generator (same seed, same bars).
        seed: u64,
    },
}

/// Everything one extract run needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// `./data` or `s3://bucket/prefix`.
    pub store: String,
    /// S3 settings beyond the `AWS_*` variables.
    pub s3: S3Options,
    /// The source and its settings.
    pub source: SourceConfig,
    /// Coins (`--coins`); `None` is BTC, or for CSV every coin of the file.
    pub coins: Option<Vec<String>>,
    /// First hour to extract (ms, inclusive; rounded down to the hour).
    pub start: Option<i64>,
    /// End of the window (ms, exclusive; rounded down to the hour).
    pub end: Option<i64>,
    /// How far a re-observed stored hour may move before the run is refused.
    pub revisions: RevisionPolicy,
}

/// What one coin's run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CoinSummary {
    /// The coin's symbol (`BTC`).
    pub coin: String,
    /// Bars the source produced for the window.
    pub bars: usize,
    /// Open time of the first of those bars, ms since the epoch (UTC); `None` when there is none.
    pub first_ts: Option<i64>,
    /// Open time of the last of those bars, ms since the epoch (UTC); `None` when there is none.
    pub last_ts: Option<i64>,
    /// What the append did with them (serialized inline, not as a nested object).
    #[serde(flatten)]
    pub append: AppendStats,
    /// Every stored hour this run replaced (old and new close).
    pub revisions: Vec<Revision>,
}

/// What the run did; its `Display` is the one-line summary the binary prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// The source the bars came from (the label stored in their `source` column).
    pub source: Source,
    /// The store's location.
    pub store: String,
    /// One entry per coin, in the order extracted.
    pub coins: Vec<CoinSummary>,
    /// API requests sent (LiveCoinWatch; each costs a credit).
    pub requests: u64,
    /// API retries among them.
    pub retries: u64,
    /// API points skipped for a null or unusable rate.
    pub skipped_points: usize,
}

impl Summary {
    fn total(&self, f: impl Fn(&CoinSummary) -> usize) -> usize {
        self.coins.iter().map(f).sum()
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let coins: Vec<&str> = self.coins.iter().map(|c| c.coin.as_str()).collect();
        let first = self.coins.iter().filter_map(|c| c.first_ts).min();
        let last = self.coins.iter().filter_map(|c| c.last_ts).max();
        let range = match (first, last) {
            (Some(a), Some(b)) => format!("{}..{}", fmt_ms(a), fmt_ms(b)),
            _ => "none".into(),
        };
        let stored: Vec<String> = self
            .coins
            .iter()
            .map(|c| format!("{}:{}", c.coin, c.append.stored_rows))
            .collect();
        write!(
            f,
            "extract source={} coins={} bars={} inserted={} replaced={} unchanged={} range={} stored={} store={}",
            self.source,
            coins.join(","),
            self.total(|c| c.bars),
            self.total(|c| c.append.inserted),
            self.total(|c| c.append.replaced),
            self.total(|c| c.append.unchanged),
            range,
            stored.join(","),
            self.store,
        )?;
        if self.source == Source::Livecoinwatch {
            write!(
                f,
                " requests={} retries={} skipped_points={}",
                self.requests, self.retries, self.skipped_points
            )?;
        }
        // Every revision of stored history is shown, one line each, below the summary line.
        for c in &self.coins {
            for r in &c.revisions {
                write!(
                    f,
                    "\nreplaced {} {} close {} -> {} ({:+.2} %)",
                    c.coin,
                    fmt_ms(r.ts),
                    r.old_close,
                    r.new_close,
                    r.close_change_pct()
                )?;
            }
        }
        Ok(())
    }
}

/// Runs the stage: opens the store and extracts.
pub async fn run(config: Config) -> Result<Summary> {
    let store = Store::open_with(&config.store, &config.s3)?;
    run_on(&store, config).await
}

/// Runs the stage on an open store.
pub async fn run_on(store: &Store, config: Config) -> Result<Summary> {
    // Metadata only (when the row was written), never used to choose what is processed.
    let ingested_at = chrono::Utc::now().timestamp_millis();
    let start = config.start.map(floor_hour);
    let end = config.end.map(floor_hour);
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        return Err(ExtractError::Usage(format!(
            "--start {} is not before --end {} (after rounding to hours)",
            fmt_ms(s),
            fmt_ms(e)
        )));
    }
    let mut summary = Summary {
        source: Source::Synthetic,
        store: store.location().to_string(),
        coins: Vec::new(),
        requests: 0,
        retries: 0,
        skipped_points: 0,
    };
    // Per coin: the bars the source produced and what was stored before.
    let mut batches: Vec<(String, Vec<Bar>, Stored)> = Vec::new();
    match config.source {
        SourceConfig::Synthetic { seed } => {
            summary.source = Source::Synthetic;
            let end = end.unwrap_or(synthetic::DEFAULT_END_MS);
            let start = start.unwrap_or(end - synthetic::DEFAULT_DAYS * 24 * HOUR_MS);
            for coin in config.coins.unwrap_or_else(|| vec!["BTC".into()]) {
                let bars = synthetic::bars(&coin, seed, start, end, ingested_at)?;
                tracing::info!(coin, bars = bars.len(), seed, from = %fmt_ms(start), to = %fmt_ms(end), "generated synthetic bars");
                let stored = append::load(store, &coin).await?;
                batches.push((coin, bars, stored));
            }
        }
        SourceConfig::Csv { path, columns } => {
            summary.source = Source::Csv;
            let opts = CsvOptions {
                columns,
                coins: config.coins,
                start,
                end,
            };
            let t0 = Instant::now();
            let import = csv_import::import_file(&path, &opts, ingested_at)?;
            tracing::info!(
                file = %path.display(),
                rows = import.rows,
                mb = import.bytes / 1_000_000,
                rows_per_s = (import.rows as f64 / t0.elapsed().as_secs_f64().max(1e-9)) as u64,
                "read CSV"
            );
            for (coin, bars) in import.bars {
                let stored = append::load(store, &coin).await?;
                batches.push((coin, bars, stored));
            }
        }
        SourceConfig::Livecoinwatch(settings) => {
            summary.source = Source::Livecoinwatch;
            let coins = config.coins.unwrap_or_else(|| vec!["BTC".into()]);
            batches = extract_livecoinwatch(
                store,
                settings,
                coins,
                start,
                end,
                ingested_at,
                &mut summary,
            )
            .await?;
        }
    }

    // Everything is read and checked; merge and encode every coin before the first write.
    let mut prepared = Vec::new();
    for (coin, bars, stored) in batches {
        let (first_ts, last_ts) = (bars.first().map(|b| b.ts), bars.last().map(|b| b.ts));
        let n = bars.len();
        let p = append::prepare(&coin, stored, bars, config.revisions)?;
        summary.coins.push(CoinSummary {
            coin,
            bars: n,
            first_ts,
            last_ts,
            append: p.stats,
            revisions: p.revisions.clone(),
        });
        prepared.push(p);
    }
    append::commit(store, &prepared).await?;
    for c in &summary.coins {
        tracing::info!(
            coin = c.coin,
            inserted = c.append.inserted,
            replaced = c.append.replaced,
            unchanged = c.append.unchanged,
            stored = c.append.stored_rows,
            "appended"
        );
    }
    Ok(summary)
}

/// The LiveCoinWatch source: plans windows per coin (from `start`, else from the last stored
/// hour, else `backfill_days` before `end`), checks the coin codes and the credits, fetches
/// every window and resamples. Nothing is written here.
async fn extract_livecoinwatch(
    store: &Store,
    s: LcwSettings,
    coins: Vec<String>,
    start: Option<i64>,
    end: Option<i64>,
    ingested_at: i64,
    summary: &mut Summary,
) -> Result<Vec<(String, Vec<Bar>, Stored)>> {
    let key = s.api_key.ok_or(ExtractError::MissingEnv {
        var: KEY_VAR,
        why: "the livecoinwatch source needs an API key (or use --source synthetic or --source csv)",
    })?;
    // The one documented use of the clock: without --end, fetch up to the last complete hour.
    let end = end.unwrap_or_else(|| floor_hour(chrono::Utc::now().timestamp_millis()));
    let client = Client::new(key, s.client)?;

    // Read what is stored first: a corrupt file fails the run before any credit is spent.
    let mut plans = Vec::new();
    for coin in &coins {
        let stored = append::load(store, coin).await?;
        let from = start
            .or_else(|| stored.last_ts())
            .unwrap_or(end - s.backfill_days * 24 * HOUR_MS);
        let windows = plan_windows(from, end, s.window_hours);
        plans.push((coin.clone(), stored, from, windows));
    }
    let window_requests: u64 = plans.iter().map(|p| p.3.len() as u64).sum();

    let known = client.known_codes(&coins).await?;
    let unknown: Vec<&str> = coins
        .iter()
        .filter(|c| !known.contains(c))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(ExtractError::UnknownCoin {
            codes: unknown.join(","),
            source_name: "livecoinwatch",
            hint: " (coins/map does not list it)".into(),
        });
    }
    if window_requests > s.credits_check_above {
        let credits = client.credits().await?;
        tracing::info!(
            needed = window_requests,
            remaining = credits.daily_credits_remaining,
            limit = credits.daily_credits_limit,
            "checked credits before the backfill"
        );
        if credits.daily_credits_remaining < window_requests {
            return Err(ExtractError::NotEnoughCredits {
                needed: window_requests,
                remaining: credits.daily_credits_remaining,
            });
        }
    }

    let total = window_requests.max(1);
    let log_every = (total / 20).max(1);
    let t0 = Instant::now();
    let mut done = 0u64;
    let mut out = Vec::new();
    for (coin, stored, from, windows) in plans {
        if windows.is_empty() {
            tracing::info!(coin, up_to = %fmt_ms(end), "already up to date");
        }
        let mut obs = Vec::new();
        for (ws, we) in windows {
            let h = client.history(&coin, ws, we).await?;
            summary.skipped_points += h.skipped;
            let lo = ws.max(from);
            let hi = we.min(end);
            let before = obs.len();
            obs.extend(
                h.observations
                    .into_iter()
                    .filter(|o| o.ts >= lo && o.ts < hi),
            );
            if obs.len() == before {
                tracing::warn!(coin, from = %fmt_ms(lo), to = %fmt_ms(hi), "no observations in this window: its hours stay gaps");
            }
            done += 1;
            if done.is_multiple_of(log_every) || done == total {
                let secs = t0.elapsed().as_secs_f64().max(1e-9);
                tracing::info!(
                    windows_done = done,
                    windows_total = total,
                    windows_per_s = format!("{:.2}", done as f64 / secs),
                    eta_s = ((total - done) as f64 * secs / done as f64).round() as u64,
                    "backfill progress"
                );
            }
        }
        let bars = resample(&coin, obs, Source::Livecoinwatch, ingested_at);
        let expected = ((end - from).max(0) / HOUR_MS) as usize;
        if bars.len() < expected {
            tracing::info!(
                coin,
                hours = expected,
                bars = bars.len(),
                gaps = expected - bars.len(),
                "hours without observations stay gaps"
            );
        }
        out.push((coin, bars, stored));
    }
    summary.requests = client.requests();
    summary.retries = client.retries();
    Ok(out)
}
