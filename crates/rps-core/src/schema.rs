//! The raw-bar contract (crates/rps-core/src/exit.rs): one row per coin per UTC hour, primary key
//! (`coin`, `ts`), and its Arrow schema.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::{CoreError, Result};

/// Where a bar came from; written into every row so synthetic data is never mistaken for real.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The LiveCoinWatch API.
    Livecoinwatch,
    /// An exchange or aggregator CSV export.
    Csv,
    /// The seeded synthetic generator.
    Synthetic,
}

impl Source {
    /// The label stored in the `source` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Livecoinwatch => "livecoinwatch",
            Source::Csv => "csv",
            Source::Synthetic => "synthetic",
        }
    }

    /// Parses a stored label.
    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "livecoinwatch" => Some(Source::Livecoinwatch),
            "csv" => Some(Source::Csv),
            "synthetic" => Some(Source::Synthetic),
            _ => None,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One hourly OHLC bar of one coin. `ts` is the hour's open time, ms since the epoch (UTC).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bar {
    /// The hour's open time, ms since the epoch (UTC), on a whole hour.
    pub ts: i64,
    /// Coin code (`BTC`).
    pub coin: String,
    /// First price of the hour (USD).
    pub open: f64,
    /// Highest price of the hour (USD).
    pub high: f64,
    /// Lowest price of the hour (USD).
    pub low: f64,
    /// Last price of the hour (USD).
    pub close: f64,
    /// Traded volume in USD, if known.
    pub volume: Option<f64>,
    /// Market capitalisation in USD, if known.
    pub cap: Option<f64>,
    /// How many price observations built the bar (0 for imported bars).
    pub points: u32,
    /// Where the bar came from.
    pub source: Source,
    /// When this row was written (ms since the epoch).
    pub ingested_at: i64,
}

const UTC: &str = "UTC";

/// Parses a comma-separated coin list (`BTC,ETH`): upper-cased, de-duplicated, order kept.
/// A coin code is 1–16 ASCII letters, digits or `_`; the error names the bad entry.
pub fn parse_coins(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for part in s.split(',') {
        let c = part.trim().to_ascii_uppercase();
        if c.is_empty() {
            continue;
        }
        if !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') || c.len() > 16 {
            return Err(format!(
                "'{part}' is not a coin code (letters and digits, e.g. BTC)"
            ));
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    if out.is_empty() {
        return Err("no coin given (e.g. --coins BTC,ETH)".into());
    }
    Ok(out)
}

/// The Arrow schema of raw bars.
pub fn raw_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into()));
        Arc::new(Schema::new(vec![
            Field::new("ts", ts.clone(), false),
            Field::new("coin", DataType::Utf8, false),
            Field::new("open", DataType::Float64, false),
            Field::new("high", DataType::Float64, false),
            Field::new("low", DataType::Float64, false),
            Field::new("close", DataType::Float64, false),
            Field::new("volume", DataType::Float64, true),
            Field::new("cap", DataType::Float64, true),
            Field::new("points", DataType::UInt32, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("ingested_at", ts, false),
        ]))
    });
    SCHEMA.clone()
}

/// Builds a record batch of raw bars (in the given order).
pub fn bars_to_batch(bars: &[Bar]) -> Result<RecordBatch> {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMillisecondArray::from_iter_values(bars.iter().map(|b| b.ts))
                .with_timezone(UTC),
        ),
        Arc::new(StringArray::from_iter_values(
            bars.iter().map(|b| b.coin.as_str()),
        )),
        Arc::new(Float64Array::from_iter_values(bars.iter().map(|b| b.open))),
        Arc::new(Float64Array::from_iter_values(bars.iter().map(|b| b.high))),
        Arc::new(Float64Array::from_iter_values(bars.iter().map(|b| b.low))),
        Arc::new(Float64Array::from_iter_values(bars.iter().map(|b| b.close))),
        Arc::new(Float64Array::from_iter(bars.iter().map(|b| b.volume))),
        Arc::new(Float64Array::from_iter(bars.iter().map(|b| b.cap))),
        Arc::new(UInt32Array::from_iter_values(bars.iter().map(|b| b.points))),
        Arc::new(StringArray::from_iter_values(
            bars.iter().map(|b| b.source.as_str()),
        )),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(bars.iter().map(|b| b.ingested_at))
                .with_timezone(UTC),
        ),
    ];
    RecordBatch::try_new(raw_schema(), cols).map_err(|e| CoreError::Encode {
        key: "raw bars".into(),
        reason: e.to_string(),
    })
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, key: &str, name: &str) -> Result<&'a T> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| CoreError::BadFile {
            key: key.into(),
            reason: format!("missing column '{name}' (not a raw-bar file?)"),
        })?;
    col.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| CoreError::BadFile {
            key: key.into(),
            reason: format!(
                "column '{name}' has type {}, expected the raw-bar schema",
                col.data_type()
            ),
        })
}

/// Decodes raw bars from record batches, checking the schema column by column.
/// Nulls in non-nullable price columns are decoded as NaN so validation can count them.
pub fn batch_to_bars(batch: &RecordBatch, key: &str) -> Result<Vec<Bar>> {
    let ts = column::<TimestampMillisecondArray>(batch, key, "ts")?;
    let coin = column::<StringArray>(batch, key, "coin")?;
    let open = column::<Float64Array>(batch, key, "open")?;
    let high = column::<Float64Array>(batch, key, "high")?;
    let low = column::<Float64Array>(batch, key, "low")?;
    let close = column::<Float64Array>(batch, key, "close")?;
    let volume = column::<Float64Array>(batch, key, "volume")?;
    let cap = column::<Float64Array>(batch, key, "cap")?;
    let points = column::<UInt32Array>(batch, key, "points")?;
    let source = column::<StringArray>(batch, key, "source")?;
    let ingested = column::<TimestampMillisecondArray>(batch, key, "ingested_at")?;
    let f = |a: &Float64Array, i: usize| if a.is_null(i) { f64::NAN } else { a.value(i) };
    let o = |a: &Float64Array, i: usize| if a.is_null(i) { None } else { Some(a.value(i)) };
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let src = source.value(i);
        let source = Source::parse(src).ok_or_else(|| CoreError::BadFile {
            key: key.into(),
            reason: format!("row {i}: unknown source '{src}'"),
        })?;
        out.push(Bar {
            ts: ts.value(i),
            coin: coin.value(i).to_string(),
            open: f(open, i),
            high: f(high, i),
            low: f(low, i),
            close: f(close, i),
            volume: o(volume, i),
            cap: o(cap, i),
            points: points.value(i),
            source,
            ingested_at: ingested.value(i),
        });
    }
    Ok(out)
}

/// Merges `new` bars into `existing` by primary key (`coin`, `ts`): a later observation of
/// the same hour replaces the earlier one. Returns the merged bars sorted by (coin, ts) and
/// how many rows were inserted and replaced.
pub fn merge_bars(existing: Vec<Bar>, new: Vec<Bar>) -> (Vec<Bar>, MergeStats) {
    use std::collections::BTreeMap;
    let mut map: BTreeMap<(String, i64), Bar> = BTreeMap::new();
    for b in existing {
        map.insert((b.coin.clone(), b.ts), b);
    }
    let mut stats = MergeStats::default();
    for b in new {
        match map.insert((b.coin.clone(), b.ts), b) {
            Some(_) => stats.replaced += 1,
            None => stats.inserted += 1,
        }
    }
    (map.into_values().collect(), stats)
}

/// Counts from [`merge_bars`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MergeStats {
    /// Rows whose key was not stored before.
    pub inserted: usize,
    /// Stored rows replaced by a row with the same key.
    pub replaced: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coin_lists_are_normalised_and_bad_codes_refused() {
        assert_eq!(parse_coins("btc, ETH,btc").unwrap(), vec!["BTC", "ETH"]);
        assert!(parse_coins("BTC/USD").is_err());
        assert!(parse_coins(" , ").is_err());
    }

    fn bar(ts: i64, close: f64) -> Bar {
        Bar {
            ts,
            coin: "BTC".into(),
            open: close,
            high: close,
            low: close,
            close,
            volume: None,
            cap: Some(1.0),
            points: 3,
            source: Source::Synthetic,
            ingested_at: 7,
        }
    }

    #[test]
    fn bars_survive_an_arrow_round_trip() {
        let bars = vec![bar(0, 1.0), bar(3_600_000, 2.0)];
        let batch = bars_to_batch(&bars).unwrap();
        assert_eq!(batch_to_bars(&batch, "t").unwrap(), bars);
    }

    #[test]
    fn a_later_observation_of_the_same_hour_replaces_the_earlier_one() {
        let (merged, stats) = merge_bars(
            vec![bar(0, 1.0), bar(10, 2.0)],
            vec![bar(10, 3.0), bar(20, 4.0)],
        );
        assert_eq!(
            merged.iter().map(|b| b.close).collect::<Vec<_>>(),
            vec![1.0, 3.0, 4.0]
        );
        assert_eq!(
            stats,
            MergeStats {
                inserted: 1,
                replaced: 1
            }
        );
    }
}
