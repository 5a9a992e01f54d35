//! The idempotent append of new bars to `raw/<COIN>.parquet`: merge by primary key
//! (`coin`, `ts`), a later observation of an hour replaces the earlier one, and a re-run of the
//! same window leaves the file byte-for-byte as it was (bars equal but for `ingested_at` are
//! kept, not rewritten, and an unchanged file is not written at all).
//!
//! Everything that can fail on input (reading and decoding the stored files, merging,
//! encoding) happens in [`prepare`] for every coin before [`commit`] writes anything. Each write
//! is atomic (see `rps_core::storage`); if a later coin's write fails, the files already
//! written in this run are put back to their previous bytes, so a failed run leaves the store
//! as it found it.

use std::collections::HashMap;

use bytes::Bytes;
use rps_core::parquet_io::{decode, encode};
use rps_core::schema::{MergeStats, bars_to_batch, batch_to_bars, merge_bars, raw_schema};
use rps_core::storage::layout;
use rps_core::{Bar, CoreError, Store};

use crate::error::{ExtractError, Result};

/// What a coin's raw file held before this run.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// The exact bytes of the file, kept to restore it if a later write fails.
    pub bytes: Option<Bytes>,
    /// Its bars, ascending by `ts`.
    pub bars: Vec<Bar>,
}

impl Stored {
    /// The open time of the newest stored hour.
    pub fn last_ts(&self) -> Option<i64> {
        self.bars.iter().map(|b| b.ts).max()
    }
}

/// Reads and decodes `raw/<COIN>.parquet` (empty when it does not exist). A file that exists
/// but does not decode is an error: it is never silently replaced.
pub async fn load(store: &Store, coin: &str) -> Result<Stored> {
    let key = layout::raw(coin);
    let Some(bytes) = store.get(&key).await? else {
        return Ok(Stored::default());
    };
    let name = format!("{}/{key}", store.location());
    let decoded = decode(bytes.clone(), &name)?;
    let mut bars = Vec::new();
    for b in &decoded.batches {
        bars.extend(batch_to_bars(b, &name)?);
    }
    if let Some(other) = bars.iter().find(|b| b.coin != coin) {
        return Err(CoreError::BadFile {
            key: name,
            reason: format!("holds a bar of coin '{}', expected only {coin}", other.coin),
        }
        .into());
    }
    Ok(Stored {
        bytes: Some(bytes),
        bars,
    })
}

/// Counts of one coin's append.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AppendStats {
    /// Hours that were not stored before.
    pub inserted: usize,
    /// Stored hours whose values changed (a later observation replaced the earlier one).
    pub replaced: usize,
    /// Hours whose new bar equals the stored one (except `ingested_at`); left as stored.
    pub unchanged: usize,
    /// Rows in the file after the append.
    pub stored_rows: usize,
}

/// A coin's append, merged and encoded, ready to write.
#[derive(Debug)]
pub struct Prepared {
    /// The coin's symbol.
    pub coin: String,
    /// The raw file's key in the store (`raw/<COIN>.parquet`).
    pub key: String,
    previous: Option<Bytes>,
    /// The new file, or `None` when nothing changed (no write).
    encoded: Option<Bytes>,
    /// What the merge did (inserted, replaced, unchanged, rows after).
    pub stats: AppendStats,
}

/// Merges `new` bars (one coin) into what is stored and encodes the result. No I/O.
pub fn prepare(coin: &str, stored: Stored, new: Vec<Bar>) -> Result<Prepared> {
    let key = layout::raw(coin);
    if let Some(b) = new.iter().find(|b| b.coin != coin) {
        return Err(ExtractError::Internal(format!(
            "bar of coin {} in the append of {coin}",
            b.coin
        )));
    }
    let by_ts: HashMap<i64, &Bar> = stored.bars.iter().map(|b| (b.ts, b)).collect();
    let mut unchanged = 0;
    let changed: Vec<Bar> = new
        .into_iter()
        .filter(|b| match by_ts.get(&b.ts) {
            Some(old) if same_except_ingestion(old, b) => {
                unchanged += 1;
                false
            }
            _ => true,
        })
        .collect();
    drop(by_ts);
    let (merged, MergeStats { inserted, replaced }) = merge_bars(stored.bars, changed);
    let stats = AppendStats {
        inserted,
        replaced,
        unchanged,
        stored_rows: merged.len(),
    };
    let encoded = if inserted + replaced > 0 {
        let batch = bars_to_batch(&merged)?;
        Some(encode(raw_schema(), &[batch], &[], &key)?)
    } else {
        None
    };
    Ok(Prepared {
        coin: coin.to_string(),
        key,
        previous: stored.bytes,
        encoded,
        stats,
    })
}

/// Bars are the same observation of the hour when every value but `ingested_at` matches
/// (NaN compares equal to NaN here, so a stored NaN does not count as a change forever).
fn same_except_ingestion(a: &Bar, b: &Bar) -> bool {
    let eq = |x: f64, y: f64| x == y || (x.is_nan() && y.is_nan());
    let eq_opt = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => eq(x, y),
        (None, None) => true,
        _ => false,
    };
    a.ts == b.ts
        && a.coin == b.coin
        && eq(a.open, b.open)
        && eq(a.high, b.high)
        && eq(a.low, b.low)
        && eq(a.close, b.close)
        && eq_opt(a.volume, b.volume)
        && eq_opt(a.cap, b.cap)
        && a.points == b.points
        && a.source == b.source
}

/// Writes every prepared append. If one write fails, the files this call already wrote are
/// restored to their previous bytes (or deleted if they did not exist) before the error is
/// returned.
pub async fn commit(store: &Store, prepared: &[Prepared]) -> Result<()> {
    let mut written: Vec<&Prepared> = Vec::new();
    for p in prepared {
        let Some(bytes) = &p.encoded else { continue };
        if let Err(e) = store.put(&p.key, bytes.clone()).await {
            let original = ExtractError::from(e);
            if written.is_empty() {
                return Err(original);
            }
            tracing::warn!(error = %original, "write failed; restoring the files this run already wrote");
            let mut failed = Vec::new();
            let mut last_err = None;
            for w in written.iter().rev() {
                let res = match &w.previous {
                    Some(prev) => store.put(&w.key, prev.clone()).await,
                    None => store.delete(&w.key).await,
                };
                if let Err(re) = res {
                    failed.push(w.key.clone());
                    last_err = Some(re);
                }
            }
            return Err(match last_err {
                None => original,
                Some(rollback) => ExtractError::RollbackFailed {
                    original: Box::new(original),
                    keys: failed.join(","),
                    rollback: Box::new(rollback),
                },
            });
        }
        written.push(p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rps_core::Source;

    fn bar(ts: i64, close: f64, ingested_at: i64) -> Bar {
        Bar {
            ts,
            coin: "BTC".into(),
            open: close,
            high: close,
            low: close,
            close,
            volume: Some(1.0),
            cap: None,
            points: 0,
            source: Source::Csv,
            ingested_at,
        }
    }

    #[test]
    fn re_appending_the_same_bars_changes_nothing_and_writes_nothing() {
        let stored = Stored {
            bytes: Some(Bytes::from_static(b"old")),
            bars: vec![bar(0, 1.0, 5), bar(1, 2.0, 5)],
        };
        let p = prepare("BTC", stored, vec![bar(0, 1.0, 9), bar(1, 2.0, 9)]).unwrap();
        assert_eq!(
            p.stats,
            AppendStats {
                inserted: 0,
                replaced: 0,
                unchanged: 2,
                stored_rows: 2
            }
        );
        assert!(p.encoded.is_none());
    }

    #[test]
    fn a_changed_hour_replaces_and_a_new_hour_inserts() {
        let stored = Stored {
            bytes: None,
            bars: vec![bar(0, 1.0, 5), bar(1, 2.0, 5)],
        };
        let p = prepare("BTC", stored, vec![bar(1, 2.5, 9), bar(2, 3.0, 9)]).unwrap();
        assert_eq!(
            p.stats,
            AppendStats {
                inserted: 1,
                replaced: 1,
                unchanged: 0,
                stored_rows: 3
            }
        );
        let decoded = decode(p.encoded.unwrap(), "t").unwrap();
        let bars = batch_to_bars(&decoded.batches[0], "t").unwrap();
        assert_eq!(
            bars.iter().map(|b| b.close).collect::<Vec<_>>(),
            vec![1.0, 2.5, 3.0]
        );
        assert_eq!(
            bars[0].ingested_at, 5,
            "untouched hours keep their ingestion time"
        );
    }
}
