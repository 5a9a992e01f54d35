//! Feature files (`features/<COIN>.parquet`): their Arrow schema, the conversion of a
//! [`FeatureFrame`] to and from record batches, and the Parquet writer and reader —
//! deterministic bytes whether a frame is written whole or computed and written block by
//! block.

use std::sync::Arc;
use std::sync::LazyLock;

use arrow::array::{
    Array, ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use rps_core::{CoreError, Result};

use crate::engine::{Blocks, Counts};
use crate::frame::{BLOCK, FeatureBlock, FeatureFrame, columns_of};
use crate::spec::{FEATURES, TARGET_CLOSE, TARGET_LOGRET, meta, spec, spec_metadata};

const UTC: &str = "UTC";

/// Arrow schema of feature files: `ts`, `coin`, `close`, the features in spec order
/// (float64), then the two targets (nullable float64: null where NaN). The schema metadata
/// carries the spec hash, version and names.
pub fn feature_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let sp = spec();
        let mut fields = vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())),
                false,
            ),
            Field::new("coin", DataType::Utf8, false),
            Field::new("close", DataType::Float64, false),
        ];
        fields.extend(
            sp.names
                .iter()
                .map(|n| Field::new(n, DataType::Float64, false)),
        );
        fields.push(Field::new(TARGET_LOGRET, DataType::Float64, true));
        fields.push(Field::new(TARGET_CLOSE, DataType::Float64, true));
        Arc::new(
            Schema::new(fields).with_metadata(
                spec_metadata()
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>(),
            ),
        )
    });
    SCHEMA.clone()
}

impl FeatureFrame {
    /// One record batch in the [`feature_schema`], with [`FeatureFrame::metadata`] as
    /// schema metadata.
    pub fn to_batch(&self) -> Result<RecordBatch> {
        self.batch_of(0..self.len())
    }

    /// The rows `rows` as a record batch (see [`FeatureFrame::to_batch`]).
    fn batch_of(&self, rows: std::ops::Range<usize>) -> Result<RecordBatch> {
        let n = rows.len();
        let nf = self.n_features();
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(nf + 5);
        cols.push(Arc::new(
            TimestampMillisecondArray::from_iter_values(self.ts[rows.clone()].iter().copied())
                .with_timezone(UTC),
        ));
        cols.push(Arc::new(StringArray::from_iter_values(
            std::iter::repeat_n(self.coin.as_str(), n),
        )));
        cols.push(Arc::new(Float64Array::from_iter_values(
            self.close[rows.clone()].iter().copied(),
        )));
        for col in columns_of(&self.values[rows.start * nf..rows.end * nf], nf) {
            cols.push(Arc::new(Float64Array::from(col)));
        }
        let nullable = |v: &[f64]| -> ArrayRef {
            Arc::new(Float64Array::from_iter(
                v.iter().map(|x| x.is_finite().then_some(*x)),
            ))
        };
        cols.push(nullable(&self.target_logret_1h[rows.clone()]));
        cols.push(nullable(&self.target_close_1h[rows]));
        let schema = feature_schema();
        let schema = Arc::new(
            Schema::new(schema.fields().clone()).with_metadata(
                self.metadata()
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>(),
            ),
        );
        RecordBatch::try_new(schema, cols).map_err(|e| CoreError::Encode {
            key: format!("features of {}", self.coin),
            reason: e.to_string(),
        })
    }

    /// Decodes feature batches. Checks every column by name and type, and — when the batch
    /// schema carries them (batches from [`FeatureFrame::to_batch`]) — the spec hash and
    /// the row counts. Batches read back from Parquet have lost their schema metadata:
    /// use [`FeatureFrame::from_decoded`] (or [`read_frame`]) for files, which checks the
    /// footer. With no batches the frame is empty and its coin comes from the file name.
    pub fn from_batch(batches: &[RecordBatch], key: &str) -> Result<FeatureFrame> {
        let bad = |reason: String| CoreError::BadFile {
            key: key.to_string(),
            reason,
        };
        let sp = spec();
        let mut frame = FeatureFrame {
            coin: rps_core::storage::layout::coin_of(key)
                .unwrap_or_default()
                .to_string(),
            ..FeatureFrame::default()
        };
        let mut counted = false;
        for batch in batches {
            let md = &batch.schema_ref().metadata;
            counted |= frame.apply_metadata(|k| md.get(k).map(String::as_str), key)?;
            let col = |name: &str| {
                batch
                    .column_by_name(name)
                    .ok_or_else(|| bad(format!("missing column '{name}' (not a feature file?)")))
            };
            let f64col = |name: &str| -> Result<Vec<f64>> {
                let c = col(name)?;
                let a = c.as_any().downcast_ref::<Float64Array>().ok_or_else(|| {
                    bad(format!(
                        "column '{name}' has type {}, expected Float64",
                        c.data_type()
                    ))
                })?;
                Ok((0..a.len())
                    .map(|i| if a.is_null(i) { f64::NAN } else { a.value(i) })
                    .collect())
            };
            let ts = col("ts")?;
            let ts = ts
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .ok_or_else(|| {
                    bad(format!(
                        "column 'ts' has type {}, expected Timestamp(ms)",
                        ts.data_type()
                    ))
                })?;
            let coin = col("coin")?;
            let coin = coin.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
                bad(format!(
                    "column 'coin' has type {}, expected Utf8",
                    coin.data_type()
                ))
            })?;
            if batch.num_rows() > 0 {
                frame.coin = coin.value(0).to_string();
            }
            frame.ts.extend(ts.values().iter().copied());
            frame.close.extend(f64col("close")?);
            let feats = sp
                .names
                .iter()
                .map(|n| f64col(n))
                .collect::<Result<Vec<_>>>()?;
            let start = frame.values.len();
            frame
                .values
                .resize(start + batch.num_rows() * feats.len(), f64::NAN);
            let nf = feats.len();
            let out = &mut frame.values[start..];
            for r0 in (0..batch.num_rows()).step_by(BLOCK) {
                let r1 = (r0 + BLOCK).min(batch.num_rows());
                for (j, c) in feats.iter().enumerate() {
                    for (r, &v) in (r0..r1).zip(&c[r0..r1]) {
                        out[r * nf + j] = v;
                    }
                }
            }
            frame.target_logret_1h.extend(f64col(TARGET_LOGRET)?);
            frame.target_close_1h.extend(f64col(TARGET_CLOSE)?);
        }
        if !counted {
            frame.rows_in = frame.len();
        }
        Ok(frame)
    }

    /// Decodes a feature file read with [`rps_core::parquet_io::decode`]/`read`: the batches,
    /// plus the spec-hash check and row counts from the file footer.
    pub fn from_decoded(
        decoded: &rps_core::parquet_io::Decoded,
        key: &str,
    ) -> Result<FeatureFrame> {
        let mut frame = FeatureFrame::from_batch(&decoded.batches, key)?;
        let get = |k: &str| {
            decoded
                .metadata
                .iter()
                .find(|(mk, _)| mk == k)
                .map(|(_, v)| v.as_str())
        };
        frame.apply_metadata(get, key)?;
        Ok(frame)
    }

    /// Checks the spec hash in file/schema metadata (when present) and takes the row counts
    /// from it. Returns whether counts were found.
    fn apply_metadata<'a>(
        &mut self,
        get: impl Fn(&str) -> Option<&'a str>,
        key: &str,
    ) -> Result<bool> {
        let sp = spec();
        if let Some(h) = get(meta::SPEC_HASH)
            && h != sp.hash
        {
            return Err(CoreError::BadFile {
                key: key.to_string(),
                reason: format!(
                    "features were computed with feature spec {h}, this build uses {} \
                     (re-run rps-transform)",
                    sp.hash
                ),
            });
        }
        let num = |k: &str| get(k).and_then(|v| v.parse::<usize>().ok());
        match (
            num(meta::ROWS_IN),
            num(meta::DROPPED_GAP),
            num(meta::DROPPED_WARMUP),
        ) {
            (Some(a), Some(b), Some(c)) => {
                (self.rows_in, self.dropped_gap, self.dropped_warmup) = (a, b, c);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Reads the stored features of one coin (`features/<COIN>.parquet`); `Ok(None)` if absent.
/// Fails (exit 2) when the file was computed with another feature spec.
pub async fn read_frame(store: &rps_core::Store, coin: &str) -> Result<Option<FeatureFrame>> {
    let key = rps_core::storage::layout::features(coin);
    let Some(decoded) = rps_core::parquet_io::read(store, &key).await? else {
        return Ok(None);
    };
    let mut frame = FeatureFrame::from_decoded(&decoded, &format!("{}/{key}", store.location()))?;
    if frame.is_empty() {
        frame.coin = coin.to_string();
    }
    Ok(Some(frame))
}

/// Rows per Parquet row group of a feature file. The writer holds one row group in memory,
/// so this bounds its buffers (~3 MB) whatever the number of rows.
pub const ROW_GROUP_ROWS: usize = 8_192;

/// Writer settings of feature files (see [`write_frame_to`] for why).
fn writer_props(metadata: Vec<(String, String)>) -> parquet::file::properties::WriterProperties {
    use parquet::basic::Compression;
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    use parquet::schema::types::ColumnPath;

    let kv = metadata
        .into_iter()
        .map(|(k, v)| KeyValue::new(k, v))
        .collect();
    WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_column_statistics_enabled(ColumnPath::from("ts"), EnabledStatistics::Page)
        .set_column_dictionary_enabled(ColumnPath::from("coin"), true)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by("rps".to_string())
        .set_key_value_metadata(Some(kv))
        .build()
}

/// Writes one feature file into `W` a row group at a time: [`FeatureFileWriter::write_block`]
/// per block (one row group each), then [`FeatureFileWriter::finish`]. Settings as
/// [`write_frame_to`]; the footer carries the [`Counts`] given at the start.
pub struct FeatureFileWriter<W: std::io::Write + Send> {
    w: parquet::file::writer::SerializedFileWriter<W>,
    coin: String,
    coin_values: Vec<parquet::data_type::ByteArray>,
    scratch: Vec<f64>,
    defs: Vec<i16>,
    key: String,
}

impl<W: std::io::Write + Send> std::fmt::Debug for FeatureFileWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureFileWriter")
            .field("coin", &self.coin)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<W: std::io::Write + Send> FeatureFileWriter<W> {
    /// Starts the file of `coin` (schema and settings; `key` names it in errors).
    pub fn new(out: W, coin: &str, counts: &Counts, key: &str) -> Result<Self> {
        use parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
        use parquet::file::writer::SerializedFileWriter;

        let enc = |e: parquet::errors::ParquetError| encode_error(key, e);
        let metadata = counts.metadata();
        // The Arrow schema is embedded as `ArrowWriter` would, with the file metadata as
        // its schema metadata (as `to_batch` gives).
        let schema = Schema::new(feature_schema().fields().clone()).with_metadata(
            metadata
                .iter()
                .cloned()
                .collect::<std::collections::BTreeMap<_, _>>(),
        );
        let mut props = writer_props(metadata);
        add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        let descr = ArrowSchemaConverter::new().convert(&schema).map_err(enc)?;
        let w = SerializedFileWriter::new(out, descr.root_schema_ptr(), Arc::new(props))
            .map_err(enc)?;
        Ok(FeatureFileWriter {
            w,
            coin: coin.to_string(),
            coin_values: Vec::new(),
            scratch: Vec::new(),
            defs: Vec::new(),
            key: key.to_string(),
        })
    }

    /// Writes `block` as one row group (nothing when it is empty).
    pub fn write_block(&mut self, block: &FeatureBlock) -> Result<()> {
        use parquet::data_type::{
            ByteArray, ByteArrayType, DataType as PqType, DoubleType, Int64Type,
        };
        use parquet::file::writer::SerializedRowGroupWriter;

        /// Writes the next column of `rg` (which must be of type `T`).
        fn column<W: std::io::Write + Send, T: PqType>(
            rg: &mut SerializedRowGroupWriter<'_, W>,
            values: &[T::T],
            def_levels: Option<&[i16]>,
        ) -> parquet::errors::Result<()> {
            let mut col = rg.next_column()?.ok_or_else(|| {
                parquet::errors::ParquetError::General("more columns than the schema".into())
            })?;
            col.typed::<T>().write_batch(values, def_levels, None)?;
            col.close()
        }

        let n = block.len();
        if n == 0 {
            return Ok(());
        }
        let key = &self.key;
        let enc = |e: parquet::errors::ParquetError| encode_error(key, e);
        if self.coin_values.len() < n {
            let coin = ByteArray::from(self.coin.as_str());
            self.coin_values.resize(n, coin);
        }
        let mut rg = self.w.next_row_group().map_err(enc)?;
        column::<_, Int64Type>(&mut rg, &block.ts, None).map_err(enc)?;
        column::<_, ByteArrayType>(&mut rg, &self.coin_values[..n], None).map_err(enc)?;
        column::<_, DoubleType>(&mut rg, &block.close, None).map_err(enc)?;
        for j in 0..FEATURES.len() {
            column::<_, DoubleType>(&mut rg, block.column(j), None).map_err(enc)?;
        }
        // Targets are nullable: NaN is written as null.
        for target in [&block.target_logret_1h, &block.target_close_1h] {
            self.scratch.clear();
            self.defs.clear();
            for &x in target {
                self.defs.push(i16::from(x.is_finite()));
                if x.is_finite() {
                    self.scratch.push(x);
                }
            }
            column::<_, DoubleType>(&mut rg, &self.scratch, Some(&self.defs)).map_err(enc)?;
        }
        rg.close().map_err(enc)?;
        Ok(())
    }

    /// Writes the footer and returns the output.
    pub fn finish(self) -> Result<W> {
        let key = self.key;
        self.w.into_inner().map_err(|e| encode_error(&key, e))
    }
}

fn encode_error(key: &str, e: parquet::errors::ParquetError) -> CoreError {
    CoreError::from_parquet(key, e)
}

/// Writes a frame as a feature file into `out`, one row group at a time, and returns `out`.
/// Deterministic: the same frame gives the same bytes — the bytes [`write_blocks_to`]
/// gives for the bars the frame was computed from.
///
/// Writer settings differ from [`rps_core::parquet_io::encode`] on purpose (measured on the
/// shared file, 33k rows): nearly every feature value is a distinct float64, so compression
/// buys little and costs much — uncompressed 12.2 MB, snappy 10.5 MB for 1.6x the encode
/// time, zstd(1) with byte-stream-split 9.4 MB for 5x, zstd(3) with dictionaries 12.2 MB for
/// 14x. Dictionary encoding is off (larger and slower on such data) except for `coin`;
/// min/max statistics are kept only on `ts`, which readers filter on.
///
/// Columns go straight to Parquet's column writers (the Arrow schema is embedded as
/// `ArrowWriter` would, so Arrow readers see the same types and metadata): no Arrow arrays
/// are built, and only one row group is buffered at a time (~3 MB), whatever the number of
/// rows.
pub fn write_frame_to<W: std::io::Write + Send>(
    frame: &FeatureFrame,
    out: W,
    key: &str,
) -> Result<W> {
    let mut w = FeatureFileWriter::new(out, &frame.coin, &frame.counts(), key)?;
    let mut block = FeatureBlock::default();
    let mut start = 0;
    while start < frame.len() {
        let end = (start + ROW_GROUP_ROWS).min(frame.len());
        block.fill_from_frame(frame, start..end);
        w.write_block(&block)?;
        start = end;
    }
    w.finish()
}

/// Computes the features of `coin` block by block (`blocks`, over its bars) and writes
/// each block as one row group into `out` straight away, so no more than one block of
/// features is held. `block` is the (reused) buffer; `each` sees every block before it is
/// written. Same bytes as [`write_frame_to`] of [`crate::compute`]`(coin, bars)`.
pub fn write_blocks_to<W: std::io::Write + Send>(
    coin: &str,
    mut blocks: Blocks<'_>,
    block: &mut FeatureBlock,
    mut each: impl FnMut(&FeatureBlock),
    out: W,
    key: &str,
) -> Result<W> {
    let mut w = FeatureFileWriter::new(out, coin, &blocks.counts(), key)?;
    while blocks.next_block(block) {
        each(block);
        w.write_block(block)?;
    }
    w.finish()
}

/// Encodes a frame as a feature file in memory: deterministic bytes for the same frame
/// (see [`write_frame_to`]).
pub fn encode_frame(frame: &FeatureFrame, key: &str) -> Result<bytes::Bytes> {
    // Room for the uncompressed size up front: the file is never copied into a doubled
    // buffer, and capacity that is never written costs no resident memory.
    let width = (frame.n_features() + 4) * 8;
    let buf = Vec::with_capacity(frame.len() * width + (1 << 16));
    write_frame_to(frame, buf, key).map(bytes::Bytes::from)
}

/// Writes a frame to `features/<COIN>.parquet`, atomically; on a local store it streams
/// to disk row group by row group ([`rps_core::parquet_io::put_streamed`]).
pub async fn write_frame(store: &rps_core::Store, frame: &FeatureFrame) -> Result<()> {
    let key = rps_core::storage::layout::features(&frame.coin);
    rps_core::parquet_io::put_streamed(store, &key, |out| {
        write_frame_to(frame, out, &key).map(drop)
    })
    .await
}

/// Computes and writes the features of `coin` to `features/<COIN>.parquet` block by block
/// ([`write_blocks_to`]), atomically. On a local store only one block of features and one
/// row group are in memory at a time (S3: the file, then one PUT).
pub async fn write_blocks(
    store: &rps_core::Store,
    coin: &str,
    blocks: Blocks<'_>,
    block: &mut FeatureBlock,
    each: impl FnMut(&FeatureBlock),
) -> Result<()> {
    let key = rps_core::storage::layout::features(coin);
    rps_core::parquet_io::put_streamed(store, &key, |out| {
        write_blocks_to(coin, blocks, block, each, out, &key).map(drop)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::compute;
    use crate::test_bars::{bars, gappy_bars};

    #[test]
    fn a_frame_survives_an_arrow_round_trip() {
        let f = compute("BTC", &bars(0..400));
        let batch = f.to_batch().unwrap();
        let back = FeatureFrame::from_batch(&[batch], "features/BTC.parquet").unwrap();
        assert_eq!(back.ts, f.ts);
        assert_eq!(back.values, f.values);
        assert_eq!(back.rows_in, 400);
        assert_eq!(back.dropped_warmup, 168);
        assert!(back.target_close_1h.last().unwrap().is_nan());
    }

    #[test]
    fn a_feature_file_keeps_values_counts_and_the_spec_through_parquet() {
        let f = compute("BTC", &bars((0..300).chain(310..500)));
        let bytes = encode_frame(&f, "features/BTC.parquet").unwrap();
        let decoded = rps_core::parquet_io::decode(bytes, "features/BTC.parquet").unwrap();
        let back = FeatureFrame::from_decoded(&decoded, "features/BTC.parquet").unwrap();
        assert_eq!(back.values, f.values);
        assert_eq!(back.ts, f.ts);
        assert_eq!(
            (back.rows_in, back.dropped_gap, back.dropped_warmup),
            (490, 168, 168)
        );
    }

    #[test]
    fn features_of_another_spec_are_refused() {
        let f = compute("BTC", &bars(0..200));
        let batch = f.to_batch().unwrap();
        let mut md: std::collections::BTreeMap<String, String> = f.metadata().into_iter().collect();
        md.insert(meta::SPEC_HASH.into(), "0123456789abcdef".into());
        let schema = Arc::new(Schema::new(batch.schema().fields().clone()).with_metadata(md));
        let other = RecordBatch::try_new(schema, batch.columns().to_vec()).unwrap();
        let err = FeatureFrame::from_batch(&[other], "features/BTC.parquet").unwrap_err();
        assert!(
            err.to_string().contains("feature spec 0123456789abcdef"),
            "{err}"
        );
    }

    #[test]
    fn a_file_written_block_by_block_has_the_bytes_of_the_whole_frame() {
        let key = "features/BTC.parquet";
        for b in [
            gappy_bars(),
            bars(0..(ROW_GROUP_ROWS as i64 * 2 + 500)),
            bars(0..100),
        ] {
            let whole = encode_frame(&compute("BTC", &b), key).unwrap();
            let mut seen = 0;
            let streamed = write_blocks_to(
                "BTC",
                Blocks::new(&b),
                &mut FeatureBlock::default(),
                |blk| seen += blk.len(),
                Vec::new(),
                key,
            )
            .unwrap();
            assert_eq!(streamed, whole.to_vec());
            assert_eq!(seen, compute("BTC", &b).len());
        }
    }

    /// Accepts `left` bytes, then fails.
    #[derive(Debug)]
    struct FailAfter {
        left: usize,
    }

    impl std::io::Write for FailAfter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if buf.len() > self.left {
                return Err(std::io::Error::other("disk full"));
            }
            self.left -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_error_mid_file_is_an_io_fault_naming_the_file() {
        let b = bars(0..(ROW_GROUP_ROWS as i64 * 4));
        let err = write_blocks_to(
            "BTC",
            Blocks::new(&b),
            &mut FeatureBlock::default(),
            |_| {},
            FailAfter { left: 5 << 20 },
            "features/BTC.parquet",
        )
        .unwrap_err();
        // An I/O failure under the writer (a full disk) is the system's fault (exit 4, which
        // Airflow retries), not an encoding bug (exit 1).
        assert!(matches!(err, CoreError::Io { .. }), "{err}");
        assert_eq!(err.exit_code(), rps_core::ExitCode::External);
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(err.to_string().contains("features/BTC.parquet"), "{err}");
    }

    #[tokio::test]
    async fn a_feature_file_streamed_to_disk_has_the_bytes_encoded_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = rps_core::Store::open(dir.path().to_str().unwrap()).unwrap();
        // More rows than one row group, so several are streamed.
        let frame = compute("ETH", &bars(0..20_000));
        assert!(frame.len() > ROW_GROUP_ROWS * 2);
        write_frame(&store, &frame).await.unwrap();
        let on_disk = store.get("features/ETH.parquet").await.unwrap().unwrap();
        let in_memory = encode_frame(&frame, "features/ETH.parquet").unwrap();
        assert_eq!(on_disk, in_memory);
        let back = read_frame(&store, "ETH").await.unwrap().unwrap();
        assert_eq!(back.values, frame.values);
        assert_eq!(back.ts, frame.ts);
    }
}
