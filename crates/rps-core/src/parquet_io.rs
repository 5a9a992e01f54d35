//! Parquet encoding and decoding through the [`Store`]: whole files, written atomically.

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
    let enc = |e: parquet::errors::ParquetError| CoreError::Encode {
        key: key.to_string(),
        reason: e.to_string(),
    };
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
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub metadata: Vec<(String, String)>,
}

/// Decodes a Parquet file held in memory.
pub fn decode(bytes: Bytes, key: &str) -> Result<Decoded> {
    let bad = |e: &dyn std::fmt::Display| CoreError::BadFile {
        key: key.to_string(),
        reason: format!("not a readable Parquet file: {e}"),
    };
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

/// Replaces the stored raw bars of one coin, atomically. Bars must be sorted by `ts`.
pub async fn write_bars(store: &Store, coin: &str, bars: &[Bar]) -> Result<()> {
    let batch = bars_to_batch(bars)?;
    write(store, &layout::raw(coin), raw_schema(), &[batch], &[]).await
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
