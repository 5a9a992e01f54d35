//! rps-transform: turns stored raw bars into feature files (`features/<COIN>.parquet`, via
//! [`rps_features`]), a JSON summary for DVC metrics and an optional self-contained
//! HTML data profile.
//!
//! # Outputs
//! - `features/<COIN>.parquet` in the store: columns `ts` (timestamp ms UTC), `coin`,
//!   `close`, the features in spec order (float64), `target_logret_1h` and
//!   `target_close_1h` (nullable float64, null where the next hour is unknown); footer
//!   metadata `feature_spec_hash`, `feature_spec_version`, `feature_names`, `rows_in`,
//!   `dropped_gap`, `dropped_warmup`. Same input, same bytes.
//! - `--summary FILE.json`: per coin rows in/out and drop counts, spec hash and names.
//! - `--profile FILE.html`: see [`profile`].
//!
//! Each report flag (and `--validation-report`, read) takes a local file or an object URL
//! `s3://bucket/prefix/name` ([`rps_validate::location`]), so a stage on another host reads
//! what this one wrote (the Airflow DAG's tasks share nothing but the store on many workers).
//!
//! # Edge cases (decided here)
//! - A coin whose raw file has no rows, or fewer usable contiguous rows than the warmup,
//!   gets an *empty* feature file (schema and metadata only) and a warning; exit 0.
//! - A coin named in `--coins` without a raw file, or a store without any raw file: exit 2.
//! - A raw file with the wrong schema: exit 2 naming the file and column. Coins processed
//!   before it keep their new feature files (each is complete and written atomically);
//!   the summary and profile are only written when the whole run succeeds.

#![deny(missing_docs)]

pub mod charts;
pub mod profile;
pub mod validation;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use rps_core::storage::layout;
use rps_core::time::{HOUR_MS, fmt_ms};
use rps_core::{Bar, CoreError, ExitCode, Store, parquet_io};
use rps_features as features;

/// What can go wrong in a transform run.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// Storage or file-format error from the shared layer (bad raw schema, unreadable store…).
    #[error(transparent)]
    Core(Box<CoreError>),
    /// The store holds no raw bars at all.
    #[error("store {store}: no raw bars under raw/ (run rps-extract first)")]
    NoCoins {
        /// The store's location.
        store: String,
    },
    /// A coin was asked for that has no raw file.
    #[error("store {store}: {key} not found (coin {coin} was never extracted)")]
    MissingCoin {
        /// The store's location.
        store: String,
        /// The coin as given in `--coins`.
        coin: String,
        /// The raw file's key that does not exist (`raw/<COIN>.parquet`).
        key: String,
    },
    /// A local report file could not be written.
    #[error("cannot write {path}: {source}")]
    WriteReport {
        /// The local file being written (`--summary` or `--profile`).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A report could not be written to its object URL (`--summary`/`--profile s3://…`).
    #[error("cannot write {url}: {source}")]
    WriteReportObject {
        /// The report's URL as given.
        url: String,
        /// The storage error.
        #[source]
        source: Box<CoreError>,
    },
    /// The HTML profile could not be rendered (a template or chart bug).
    #[error("rendering the profile: {reason}")]
    Render {
        /// The renderer's or serializer's message.
        reason: String,
    },
    /// A worker task panicked or was cancelled.
    #[error("transform of {coin} did not finish: {reason}")]
    Task {
        /// The coin that was not finished (`-` when no single coin can be named).
        coin: String,
        /// The panic or cancellation message, or how many worker threads panicked.
        reason: String,
    },
}

impl From<CoreError> for TransformError {
    fn from(e: CoreError) -> Self {
        // Boxed: the store errors are large and every Result here would carry their size.
        TransformError::Core(Box::new(e))
    }
}

impl TransformError {
    /// Exit code per `rps_core::ExitCode`.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            TransformError::Core(e) | TransformError::WriteReportObject { source: e, .. } => {
                e.exit_code()
            }
            TransformError::NoCoins { .. }
            | TransformError::MissingCoin { .. }
            | TransformError::WriteReport { .. } => ExitCode::BadInput,
            TransformError::Render { .. } | TransformError::Task { .. } => ExitCode::Internal,
        }
    }
}

/// Maps an error in an anyhow chain to its exit code (for `rps_core::exit::finish`).
pub fn classify(err: &(dyn std::error::Error + 'static)) -> Option<ExitCode> {
    err.downcast_ref::<TransformError>()
        .map(TransformError::exit_code)
}

/// Result alias of this crate.
pub type Result<T, E = TransformError> = std::result::Result<T, E>;

/// What a run does.
#[derive(Debug, Clone)]
pub struct Config {
    /// Store location (local directory or `s3://bucket/prefix`).
    pub store: String,
    /// Coins to transform; `None` = every coin with raw bars.
    pub coins: Option<Vec<String>>,
    /// Where to write the JSON summary.
    pub summary: Option<PathBuf>,
    /// Where to write the HTML profile.
    pub profile: Option<PathBuf>,
    /// An rps-validate report to show in the profile.
    pub validation_report: Option<PathBuf>,
    /// Coins processed concurrently (0 = number of CPUs, at most 4).
    pub jobs: usize,
}

/// Per-coin figures of a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CoinSummary {
    /// Raw bars read.
    pub rows_in: usize,
    /// Feature rows written.
    pub rows_out: usize,
    /// Rows dropped because their feature window spans a gap in the hourly bars.
    pub dropped_gap: usize,
    /// Rows dropped because their feature window reaches before the first bar.
    pub dropped_warmup: usize,
    /// Holes in the hourly sequence of the raw bars (steps of more than one hour).
    pub gaps: usize,
    /// Hours missing in those holes, summed over all of them.
    pub missing_hours: i64,
    /// Timestamp of the first raw bar (RFC 3339, UTC), absent for an empty input.
    pub first_ts: Option<String>,
    /// Timestamp of the last raw bar (RFC 3339, UTC), absent for an empty input.
    pub last_ts: Option<String>,
    /// The feature file written.
    pub output: String,
}

/// The JSON summary (`--summary`), deterministic for the same input.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Hash of the feature spec the files were computed with (first 16 hex chars of a
    /// sha256, as in the files' `feature_spec_hash` metadata).
    pub feature_spec_hash: String,
    /// Version of the feature spec (`feature_spec_version` metadata).
    pub feature_spec_version: u32,
    /// Bars needed before a coin's first feature row (longest window - 1).
    pub warmup: usize,
    /// Feature names in column order.
    pub features: Vec<String>,
    /// Raw bars read, summed over the coins.
    pub rows_in: usize,
    /// Feature rows written, summed over the coins.
    pub rows_out: usize,
    /// Rows dropped because their window spans a gap, summed over the coins.
    pub dropped_gap: usize,
    /// Rows dropped for the warmup, summed over the coins.
    pub dropped_warmup: usize,
    /// Per-coin figures, by coin name.
    pub coins: BTreeMap<String, CoinSummary>,
    /// Warnings of the run (a coin that got an empty feature file), also logged.
    pub warnings: Vec<String>,
}

/// Holes in an ascending hourly series: (number of holes, hours missing).
pub fn gap_stats(bars: &[Bar]) -> (usize, i64) {
    let mut gaps = 0;
    let mut missing = 0;
    for w in bars.windows(2) {
        let d = w[1].ts - w[0].ts;
        if d > HOUR_MS {
            gaps += 1;
            missing += d / HOUR_MS - 1;
        }
    }
    (gaps, missing)
}

/// Result of one coin's CPU work.
struct CoinDone {
    coin: String,
    summary: CoinSummary,
    piece: Option<profile::CoinPiece>,
}

/// Runs the transform: every coin, then the summary and profile. Returns the summary.
pub async fn run(config: Config) -> Result<Summary> {
    let started = Instant::now();
    let store = Store::open(&config.store)?;
    let coins = match &config.coins {
        Some(c) => {
            for coin in c {
                let key = layout::raw(coin);
                if !store.exists(&key).await? {
                    return Err(TransformError::MissingCoin {
                        store: store.location().to_string(),
                        coin: coin.clone(),
                        key,
                    });
                }
            }
            c.clone()
        }
        None => parquet_io::stored_coins(&store).await?,
    };
    if coins.is_empty() {
        return Err(TransformError::NoCoins {
            store: store.location().to_string(),
        });
    }
    let sp = features::spec();
    tracing::info!(
        store = store.location(),
        coins = coins.len(),
        spec = %sp.hash,
        "transforming"
    );
    let jobs = match config.jobs {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(4),
        j => j,
    };
    let want_profile = config.profile.is_some();
    let sample_per_coin = profile::sample_per_coin(coins.len());

    let mut summary = Summary {
        feature_spec_hash: sp.hash.clone(),
        feature_spec_version: sp.version,
        warmup: sp.warmup,
        features: sp.names.clone(),
        rows_in: 0,
        rows_out: 0,
        dropped_gap: 0,
        dropped_warmup: 0,
        coins: BTreeMap::new(),
        warnings: Vec::new(),
    };
    let mut prof = want_profile.then(profile::Profile::new);
    let mut last_log = Instant::now();
    let n_coins = coins.len();

    // `jobs` worker threads take coins in turn; results are folded in coin order (a small
    // reorder buffer), so the summary and the profile are deterministic.
    let mut pool = Workers::start(
        store,
        coins.clone(),
        jobs.min(n_coins),
        want_profile,
        sample_per_coin,
    );
    let mut pending: BTreeMap<usize, CoinDone> = BTreeMap::new();
    let mut done = 0;
    while done < n_coins {
        let Some((i, res)) = pool.results.recv().await else {
            // Every worker is gone without finishing: one of them panicked.
            let reason = pool
                .finish()
                .await
                .err()
                .map_or_else(|| "a worker stopped early".to_string(), |e| e.to_string());
            return Err(TransformError::Task {
                coin: coins[done].clone(),
                reason,
            });
        };
        let res = match res {
            Ok(r) => r,
            Err(e) => {
                // Coins being written by the other workers are finished (each file is
                // complete and atomic), then the error is reported.
                pool.finish().await.ok();
                return Err(e);
            }
        };
        pending.insert(i, res);
        while let Some(CoinDone {
            coin,
            summary: cs,
            piece,
        }) = pending.remove(&done)
        {
            done += 1;
            if cs.rows_out == 0 {
                let w = format!(
                    "{coin}: no feature rows ({} bars in, {} needed in one gap-free run); wrote an empty {}",
                    cs.rows_in,
                    sp.warmup + 1,
                    cs.output
                );
                tracing::warn!("{w}");
                summary.warnings.push(w);
            }
            summary.rows_in += cs.rows_in;
            summary.rows_out += cs.rows_out;
            summary.dropped_gap += cs.dropped_gap;
            summary.dropped_warmup += cs.dropped_warmup;
            if n_coins <= 10 {
                tracing::info!(
                    coin,
                    rows_in = cs.rows_in,
                    rows_out = cs.rows_out,
                    dropped_gap = cs.dropped_gap,
                    dropped_warmup = cs.dropped_warmup,
                    "wrote {}",
                    cs.output
                );
            }
            if last_log.elapsed().as_secs_f64() >= 2.0 || done == n_coins {
                let secs = started.elapsed().as_secs_f64().max(1e-9);
                tracing::info!(
                    "progress: {done}/{n_coins} coins, {} rows in {secs:.1}s ({:.0} rows/s)",
                    summary.rows_in,
                    summary.rows_in as f64 / secs
                );
                last_log = Instant::now();
            }
            if let (Some(p), Some(piece)) = (prof.as_mut(), piece) {
                p.add(piece);
            }
            summary.coins.insert(coin, cs);
        }
    }
    pool.finish().await?;

    if let Some(path) = &config.summary {
        let json = serde_json::to_vec_pretty(&summary).map_err(|e| TransformError::Render {
            reason: e.to_string(),
        })?;
        write_file(path, json).await?;
        tracing::info!("summary written to {}", path.display());
    }
    if let (Some(path), Some(p)) = (&config.profile, prof) {
        let report = match config.validation_report.as_deref() {
            Some(v) => Some(validation::load_from(v).await),
            None => None,
        };
        let html = p.render(&summary, report.as_ref())?;
        write_file(path, html.into_bytes()).await?;
        tracing::info!("profile written to {}", path.display());
    }
    Ok(summary)
}

/// The worker threads of a run and the channel their results come back on.
struct Workers {
    results: tokio::sync::mpsc::UnboundedReceiver<(usize, Result<CoinDone>)>,
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Workers {
    /// Starts `jobs` threads (at least one) that transform `coins`, each taking the next
    /// coin not yet taken. Plain threads rather than tokio's blocking pool: a coin's whole
    /// life (read, compute, write) stays on one thread, so the allocator reuses that
    /// thread's memory coin after coin instead of every pool thread that touched a coin
    /// growing its own arena (which tripled the peak RSS of a 100-coin run).
    fn start(
        store: Store,
        coins: Vec<String>,
        jobs: usize,
        want_profile: bool,
        sample: usize,
    ) -> Workers {
        let (tx, results) = tokio::sync::mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicUsize::new(0));
        let coins = Arc::new(coins);
        let handle = tokio::runtime::Handle::current();
        let threads = (0..jobs.max(1))
            .map(|_| {
                let (tx, stop, next, coins, store, handle) = (
                    tx.clone(),
                    stop.clone(),
                    next.clone(),
                    coins.clone(),
                    store.clone(),
                    handle.clone(),
                );
                std::thread::spawn(move || {
                    // One feature block per worker, reused coin after coin.
                    let mut block = features::FeatureBlock::default();
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(coin) = coins.get(i) else { break };
                        let res =
                            transform_coin(&handle, &store, coin, want_profile, sample, &mut block);
                        if res.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        if tx.send((i, res)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        Workers {
            results,
            threads,
            stop,
        }
    }

    /// Stops handing out coins, waits for the coins in progress and the threads.
    async fn finish(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            threads
                .into_iter()
                .map(std::thread::JoinHandle::join)
                .filter(Result::is_err)
                .count()
        })
        .await;
        match joined {
            Ok(0) => Ok(()),
            Ok(n) => Err(TransformError::Task {
                coin: "-".into(),
                reason: format!("{n} worker thread(s) panicked"),
            }),
            Err(e) => Err(TransformError::Task {
                coin: "-".into(),
                reason: e.to_string(),
            }),
        }
    }
}

/// Reads, computes and writes one coin on the calling (worker) thread; `handle` drives the
/// store's async calls (only S3 really waits on it).
fn transform_coin(
    handle: &tokio::runtime::Handle,
    store: &Store,
    coin: &str,
    want_profile: bool,
    sample: usize,
    block: &mut features::FeatureBlock,
) -> Result<CoinDone> {
    let mut bars = handle.block_on(parquet_io::read_bars_here(store, coin))?;
    // The store keeps bars sorted by (coin, ts); sorting again is cheap insurance
    // against a hand-written file, and duplicates are then treated as a break.
    if !bars.is_sorted_by_key(|b| b.ts) {
        bars.sort_by_key(|b| b.ts);
    }
    let key = layout::features(coin);
    let blocks = features::Blocks::new(&bars);
    let counts = blocks.counts();
    let (gaps, missing_hours) = gap_stats(&bars);
    let summary = CoinSummary {
        rows_in: counts.rows_in,
        rows_out: counts.rows_out,
        dropped_gap: counts.dropped_gap,
        dropped_warmup: counts.dropped_warmup,
        gaps,
        missing_hours,
        first_ts: bars.first().map(|b| fmt_ms(b.ts)),
        last_ts: bars.last().map(|b| fmt_ms(b.ts)),
        output: key,
    };
    let mut piece = want_profile.then(|| profile::CoinPiece::start(coin, &bars, &summary, sample));
    // Computed and written one row group at a time (S3: one PUT of the whole file).
    handle.block_on(features::write_blocks(store, coin, blocks, block, |b| {
        if let Some(p) = piece.as_mut() {
            p.add_block(b);
        }
    }))?;
    Ok(CoinDone {
        coin: coin.to_string(),
        summary,
        piece,
    })
}

/// Writes a report atomically: a local file ([`rps_core::fs::write`]) or an object URL
/// (`s3://bucket/prefix/name`, one PUT; [`rps_validate::location`]).
async fn write_file(path: &Path, bytes: Vec<u8>) -> Result<()> {
    if rps_validate::location::is_url(path) {
        return rps_validate::location::write(path, bytes)
            .await
            .map_err(|source| TransformError::WriteReportObject {
                url: path.display().to_string(),
                source: Box::new(source),
            });
    }
    rps_core::fs::write(path, &bytes).map_err(|source| TransformError::WriteReport {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rps_core::Source;

    fn bar(h: i64) -> Bar {
        Bar {
            ts: h * HOUR_MS,
            coin: "BTC".into(),
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: None,
            cap: None,
            points: 0,
            source: Source::Synthetic,
            ingested_at: 0,
        }
    }

    #[test]
    fn holes_are_counted_with_the_hours_they_miss() {
        let bars: Vec<Bar> = [0, 1, 5, 6, 8].into_iter().map(bar).collect();
        assert_eq!(gap_stats(&bars), (2, 4));
    }

    #[test]
    fn bad_input_errors_map_to_exit_code_two() {
        let e = TransformError::MissingCoin {
            store: "s".into(),
            coin: "X".into(),
            key: "raw/X.parquet".into(),
        };
        assert_eq!(e.exit_code(), ExitCode::BadInput);
    }
}
