//! Parquet encoding and decoding through the [`Store`]: whole files, written atomically,
//! and [`put_streamed`] for large files written piece by piece.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{CoreError, Result};
use crate::schema::{Bar, bars_to_batch, batch_to_bars, raw_schema};
use crate::storage::{Store, layout};

/// Encodes batches as one Parquet file (zstd, deterministic: no creation timestamps).
/// `metadata` is written as key/value metadata in the file footer.
pub fn encode(
    schema: SchemaRef,
    batches: &[RecordBatch],
    metadata: &[(String, String)],
    key: &str,
) -> Result<Bytes> {
    let enc = |e: parquet::errors::ParquetError| CoreError::from_parquet(key, e);
    let kv = metadata
        .iter()
        .map(|(k, v)| parquet::file::metadata::KeyValue::new(k.clone(), v.clone()))
        .collect::<Vec<_>>();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(enc)?))
        .set_created_by("rps".to_string())
        .set_key_value_metadata(if kv.is_empty() { None } else { Some(kv) })
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, Some(props)).map_err(enc)?;
    for b in batches {
        w.write(b).map_err(enc)?;
    }
    w.close().map_err(enc)?;
    Ok(Bytes::from(buf))
}

/// A decoded Parquet file: its batches and footer key/value metadata.
#[derive(Debug)]
pub struct Decoded {
    /// The file's Arrow schema.
    pub schema: SchemaRef,
    /// Its rows, batch by batch.
    pub batches: Vec<RecordBatch>,
    /// The key-value metadata of its footer, in file order.
    pub metadata: Vec<(String, String)>,
}

/// Decodes a Parquet file held in memory.
pub fn decode(bytes: Bytes, key: &str) -> Result<Decoded> {
    let bad = |e: &dyn std::fmt::Display| not_parquet(key, e);
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| bad(&e))?;
    let metadata = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let schema = builder.schema().clone();
    let reader = builder
        .with_batch_size(65_536)
        .build()
        .map_err(|e| bad(&e))?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    Ok(Decoded {
        schema,
        batches,
        metadata,
    })
}

/// Reads a Parquet object; `Ok(None)` when it does not exist.
pub async fn read(store: &Store, key: &str) -> Result<Option<Decoded>> {
    match store.get(key).await? {
        Some(bytes) => decode(bytes, &format!("{}/{key}", store.location())).map(Some),
        None => Ok(None),
    }
}

/// Writes batches as one Parquet object, atomically.
pub async fn write(
    store: &Store,
    key: &str,
    schema: SchemaRef,
    batches: &[RecordBatch],
    metadata: &[(String, String)],
) -> Result<()> {
    let bytes = encode(schema, batches, metadata, key)?;
    store.put(key, bytes).await
}

/// Reads the stored raw bars of one coin (empty when none are stored yet).
pub async fn read_bars(store: &Store, coin: &str) -> Result<Vec<Bar>> {
    let key = layout::raw(coin);
    let Some(decoded) = read(store, &key).await? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for b in &decoded.batches {
        out.extend(batch_to_bars(b, &format!("{}/{key}", store.location()))?);
    }
    Ok(out)
}

/// [`read_bars`] for a worker that knows which coin it reads.
///
/// Unlike [`read_bars`], every bar's `coin` is left **empty**: all rows of
/// `raw/<COIN>.parquet` are that coin and the caller knows it, and one small string per
/// bar was a tenth of a transform's CPU time (allocation and freeing).
///
/// The file is decoded `BARS_BATCH_ROWS` rows at a time, each batch turned into bars and
/// dropped before the next: only one batch of Arrow arrays is held, not the whole file's.
pub async fn read_bars_here(store: &Store, coin: &str) -> Result<Vec<Bar>> {
    let key = layout::raw(coin);
    let at = format!("{}/{key}", store.location());
    let Some(bytes) = store.get(&key).await? else {
        return Ok(Vec::new());
    };
    let bad = |e: &dyn std::fmt::Display| not_parquet(&at, e);
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| bad(&e))?;
    let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let reader = builder
        .with_batch_size(BARS_BATCH_ROWS)
        .build()
        .map_err(|e| bad(&e))?;
    let mut out = Vec::with_capacity(rows);
    for b in reader {
        let b = b.map_err(|e| bad(&e))?;
        out.extend(batch_to_bars(&without_coin(&b), &at)?);
    }
    Ok(out)
}

/// Rows per decoded batch in [`read_bars_here`].
const BARS_BATCH_ROWS: usize = 8_192;

/// The error of a file that is not readable Parquet.
fn not_parquet(key: &str, e: &dyn std::fmt::Display) -> CoreError {
    CoreError::BadFile {
        key: key.to_string(),
        reason: format!("not a readable Parquet file: {e}"),
    }
}

/// `batch` with its `coin` column (when it is a string column) replaced by empty strings,
/// which become `String::new()` bars: no allocation. Any other column is left for
/// [`batch_to_bars`] to check.
fn without_coin(batch: &RecordBatch) -> RecordBatch {
    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::DataType;
    let Some((i, field)) = batch.schema_ref().column_with_name("coin") else {
        return batch.clone();
    };
    if field.data_type() != &DataType::Utf8 {
        return batch.clone();
    }
    let empty: ArrayRef = std::sync::Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
        "",
        batch.num_rows(),
    )));
    let mut cols = batch.columns().to_vec();
    cols[i] = empty;
    // Same schema, same lengths, a non-null string column: cannot fail; fall back to the
    // original batch (and its allocations) rather than panic if it ever did.
    RecordBatch::try_new(batch.schema(), cols).unwrap_or_else(|_| batch.clone())
}

/// Replaces the stored raw bars of one coin, atomically. Bars must be sorted by `ts`.
pub async fn write_bars(store: &Store, coin: &str, bars: &[Bar]) -> Result<()> {
    let batch = bars_to_batch(bars)?;
    write(store, &layout::raw(coin), raw_schema(), &[batch], &[]).await
}

/// Writes one object by streaming bytes into `write`, atomically.
///
/// - Local store: straight into a hidden temp file next to the target
///   (`<dir>/.<name>.tmp<random>`, [`crate::fs::write_with`]), renamed into place once `write` returned `Ok` and the data
///   is flushed, so memory stays bounded by what `write` buffers and a crash or an error
///   never leaves a half-written file under the final name (the temp file is removed on
///   error). This does blocking file I/O: call it from a blocking thread
///   (`spawn_blocking`) when the runtime matters.
/// - S3: into memory, then one PUT (readers see the old or the new object, never a mix).
pub async fn put_streamed<F>(store: &Store, key: &str, write: F) -> Result<()>
where
    F: FnOnce(&mut (dyn std::io::Write + Send)) -> Result<()>,
{
    if store.is_s3() {
        let mut buf = Vec::new();
        write(&mut buf)?;
        return store.put(key, Bytes::from(buf)).await;
    }
    let io = |source: std::io::Error| CoreError::Io {
        location: format!("{}/{key}", store.location()),
        source,
    };
    let path = std::path::Path::new(store.location()).join(key.trim_start_matches('/'));
    if path.file_name().is_none() {
        return Err(CoreError::BadLocation {
            location: format!("{}/{key}", store.location()),
            reason: "not a file key".into(),
        });
    }
    // Unbuffered: `write` is expected to buffer (Parquet writers do, and hand over whole
    // column chunks), so a buffer here would only add a copy.
    crate::fs::write_with(&path, |file| write(file), io)
}

/// The coins with raw bars in a store (from `raw/<COIN>.parquet` keys), sorted.
pub async fn stored_coins(store: &Store) -> Result<Vec<String>> {
    Ok(store
        .list(layout::RAW_DIR)
        .await?
        .iter()
        .filter_map(|k| layout::coin_of(k).map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::schema::Source;

    fn bars(coin: &str, n: i64) -> Vec<Bar> {
        (0..n)
            .map(|h| Bar {
                ts: h * crate::time::HOUR_MS,
                coin: coin.into(),
                open: 10.0 + h as f64,
                high: 11.0 + h as f64,
                low: 9.0 + h as f64,
                close: 10.5 + h as f64,
                volume: (h % 3 != 0).then_some(100.0 * h as f64),
                cap: None,
                points: 3,
                source: Source::Synthetic,
                ingested_at: 7,
            })
            .collect()
    }

    fn names_in(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn a_streamed_local_write_lands_whole_under_its_name_with_no_temp_file_left() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        put_streamed(&store, "features/X.parquet", |w| {
            w.write_all(b"hello ").unwrap();
            w.write_all(b"world").unwrap();
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(
            store.get("features/X.parquet").await.unwrap().unwrap(),
            Bytes::from_static(b"hello world")
        );
        assert_eq!(names_in(&dir.path().join("features")), ["X.parquet"]);
    }

    #[tokio::test]
    async fn a_failed_streamed_write_keeps_the_previous_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        store
            .put("features/X.parquet", Bytes::from_static(b"old"))
            .await
            .unwrap();
        let err = put_streamed(&store, "features/X.parquet", |w| {
            w.write_all(b"half a file").unwrap();
            Err(CoreError::Encode {
                key: "features/X.parquet".into(),
                reason: "boom".into(),
            })
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
        assert_eq!(
            store.get("features/X.parquet").await.unwrap().unwrap(),
            Bytes::from_static(b"old")
        );
        assert_eq!(names_in(&dir.path().join("features")), ["X.parquet"]);
    }

    #[tokio::test]
    async fn bars_read_here_are_the_stored_bars_without_their_coin_label() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let stored = bars("ETH", 50);
        write_bars(&store, "ETH", &stored).await.unwrap();
        let here = read_bars_here(&store, "ETH").await.unwrap();
        let mut want = read_bars(&store, "ETH").await.unwrap();
        assert_eq!(want, stored);
        want.iter_mut().for_each(|b| b.coin.clear());
        assert_eq!(here, want);
        assert!(read_bars_here(&store, "NOPE").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_raw_file_that_is_not_parquet_is_a_bad_file_when_read_here() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        store
            .put("raw/BAD.parquet", Bytes::from_static(b"not parquet"))
            .await
            .unwrap();
        let err = read_bars_here(&store, "BAD").await.unwrap_err();
        assert!(matches!(err, CoreError::BadFile { .. }), "{err}");
        assert!(err.to_string().contains("raw/BAD.parquet"), "{err}");
    }
}
