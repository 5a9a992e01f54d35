//! The idempotent append of new bars to `raw/<COIN>.parquet`: merge by primary key
//! (`coin`, `ts`), a later observation of an hour replaces the earlier one, and a re-run of the
//! same window leaves the file byte-for-byte as it was (bars equal but for `ingested_at` are
//! kept, not rewritten, and an unchanged file is not written at all).
//!
//! A replacement is a revision of stored history: every one is listed in [`Prepared::revisions`]
//! (hour, old and new close), and one that moves a stored price by more than
//! [`RevisionPolicy::tolerance`] refuses the whole run ([`ExtractError::Revision`]) unless the
//! policy allows it — a mistaken re-import (wrong file, wrong unit, wrong coin) cannot rewrite
//! the history the model was trained on without the operator saying so.
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

/// How far a re-observed hour may move a stored price before the run is refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RevisionPolicy {
    /// Largest accepted relative change of a stored open, high, low or close (0.01 = 1 %).
    pub tolerance: f64,
    /// Accept larger revisions too (they are still listed and logged as warnings).
    pub allow: bool,
}

impl Default for RevisionPolicy {
    fn default() -> Self {
        RevisionPolicy {
            tolerance: 0.01,
            allow: false,
        }
    }
}

/// One stored hour that this run replaces.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Revision {
    /// The hour's open time, ms since the epoch (UTC).
    pub ts: i64,
    /// The stored close.
    pub old_close: f64,
    /// The new close.
    pub new_close: f64,
    /// The largest relative change of open, high, low or close (0.5 = 50 %); infinite when
    /// a stored price was zero or not finite.
    pub change: f64,
}

impl Revision {
    fn between(old: &Bar, new: &Bar) -> Revision {
        let rel = |o: f64, n: f64| {
            if o == n {
                0.0
            } else if o.is_finite() && o != 0.0 && n.is_finite() {
                ((n - o) / o).abs()
            } else {
                f64::INFINITY
            }
        };
        let change = [
            rel(old.open, new.open),
            rel(old.high, new.high),
            rel(old.low, new.low),
            rel(old.close, new.close),
        ]
        .into_iter()
        .fold(0.0, f64::max);
        Revision {
            ts: new.ts,
            old_close: old.close,
            new_close: new.close,
            change,
        }
    }

    /// The signed relative change of the close, in percent.
    pub fn close_change_pct(&self) -> f64 {
        (self.new_close - self.old_close) / self.old_close * 100.0
    }
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
    /// Every stored hour replaced, ascending by hour.
    pub revisions: Vec<Revision>,
}

/// Merges `new` bars (one coin) into what is stored and encodes the result. No I/O.
///
/// # Errors
/// [`ExtractError::Revision`] when a replaced hour moves a stored price by more than the
/// policy's tolerance and the policy does not allow it; encoding errors.
pub fn prepare(
    coin: &str,
    stored: Stored,
    new: Vec<Bar>,
    policy: RevisionPolicy,
) -> Result<Prepared> {
    let key = layout::raw(coin);
    if let Some(b) = new.iter().find(|b| b.coin != coin) {
        return Err(ExtractError::Internal(format!(
            "bar of coin {} in the append of {coin}",
            b.coin
        )));
    }
    let by_ts: HashMap<i64, &Bar> = stored.bars.iter().map(|b| (b.ts, b)).collect();
    let mut unchanged = 0;
    let mut revisions = Vec::new();
    let changed: Vec<Bar> = new
        .into_iter()
        .filter(|b| match by_ts.get(&b.ts) {
            Some(old) if same_except_ingestion(old, b) => {
                unchanged += 1;
                false
            }
            Some(old) => {
                revisions.push(Revision::between(old, b));
                true
            }
            None => true,
        })
        .collect();
    drop(by_ts);
    revisions.sort_by_key(|r| r.ts);
    let over: Vec<&Revision> = revisions
        .iter()
        .filter(|r| r.change.is_nan() || r.change > policy.tolerance)
        .collect();
    if let Some(first) = over.first() {
        if !policy.allow {
            return Err(ExtractError::Revision {
                coin: coin.to_string(),
                hours: over.len(),
                first_ts: rps_core::time::fmt_ms(first.ts),
                old_close: first.old_close,
                new_close: first.new_close,
                pct: first.close_change_pct(),
                tolerance_pct: policy.tolerance * 100.0,
            });
        }
        for r in &over {
            tracing::warn!(
                coin,
                hour = %rps_core::time::fmt_ms(r.ts),
                old_close = r.old_close,
                new_close = r.new_close,
                change_pct = format!("{:.2}", r.change * 100.0),
                "revising a stored hour beyond the tolerance (--allow-revisions)"
            );
        }
    }
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
        revisions,
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
        let p = prepare(
            "BTC",
            stored,
            vec![bar(0, 1.0, 9), bar(1, 2.0, 9)],
            RevisionPolicy::default(),
        )
        .unwrap();
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
        let allow = RevisionPolicy {
            allow: true,
            ..RevisionPolicy::default()
        };
        let p = prepare("BTC", stored, vec![bar(1, 2.5, 9), bar(2, 3.0, 9)], allow).unwrap();
        assert_eq!(
            p.revisions,
            [Revision {
                ts: 1,
                old_close: 2.0,
                new_close: 2.5,
                change: 0.25
            }]
        );
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

    #[test]
    fn a_revision_beyond_the_tolerance_is_refused_unless_allowed_and_small_ones_pass_listed() {
        let stored = || Stored {
            bytes: None,
            bars: vec![bar(0, 100.0, 5), bar(3_600_000, 100.0, 5)],
        };
        let policy = RevisionPolicy::default();
        let small = prepare("BTC", stored(), vec![bar(0, 100.5, 9)], policy).unwrap();
        assert_eq!(small.stats.replaced, 1);
        assert_eq!(small.revisions.len(), 1);
        assert!((small.revisions[0].change - 0.005).abs() < 1e-12);

        let big = vec![bar(0, 100.0 / 48_000.0, 9), bar(3_600_000, 0.002, 9)];
        let err = prepare("BTC", stored(), big.clone(), policy).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, ExtractError::Revision { hours: 2, .. }),
            "{msg}"
        );
        assert!(
            msg.contains("1970-01-01T00:00:00Z") && msg.contains("nothing was written"),
            "{msg}"
        );
        assert_eq!(err.exit_code(), rps_core::ExitCode::BadInput);

        let allowed = prepare(
            "BTC",
            stored(),
            big,
            RevisionPolicy {
                allow: true,
                ..policy
            },
        )
        .unwrap();
        assert_eq!(allowed.stats.replaced, 2);

        // A stored price of zero cannot be revised "by a small fraction".
        let zero = Stored {
            bytes: None,
            bars: vec![bar(0, 0.0, 5)],
        };
        assert!(prepare("BTC", zero, vec![bar(0, 1.0, 9)], policy).is_err());
    }
}
