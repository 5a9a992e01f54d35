//! The real binary on real local stores: determinism, bad inputs and exit codes.

use std::sync::Arc;

use arrow::array::{Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use rps_core::{Store, parquet_io};
use rps_features::{self as features, meta};

use crate::support::{bars_at, fixture_bars, put_raw, run_bin, stderr};

/// Reads a file of a local store directory.
fn read(dir: &std::path::Path, key: &str) -> Vec<u8> {
    std::fs::read(dir.join(key)).unwrap_or_else(|e| panic!("{key}: {e}"))
}

fn store_arg(dir: &tempfile::TempDir) -> String {
    dir.path().to_str().unwrap().to_string()
}

#[tokio::test]
async fn the_same_input_twice_gives_byte_identical_parquet_with_the_spec_in_the_footer() {
    let dir = tempfile::tempdir().unwrap();
    put_raw(dir.path(), "BTC", &fixture_bars()).await;
    let store = store_arg(&dir);
    let first = run_bin(&["--store", &store, "--coins", "BTC"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let a = read(dir.path(), "features/BTC.parquet");
    let second = run_bin(&["--store", &store]);
    assert!(second.status.success(), "{}", stderr(&second));
    let b = read(dir.path(), "features/BTC.parquet");
    assert_eq!(a, b, "two runs, two processes, same bytes");

    let decoded = parquet_io::decode(a.into(), "features/BTC.parquet").unwrap();
    let md: std::collections::BTreeMap<_, _> = decoded.metadata.into_iter().collect();
    assert_eq!(md[meta::SPEC_HASH], features::spec().hash);
    assert_eq!(md[meta::SPEC_VERSION], features::spec().version.to_string());
    let names: Vec<&str> = decoded
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(&names[..3], &["ts", "coin", "close"]);
    assert_eq!(names.len(), 3 + features::spec().names.len() + 2);
    assert_eq!(
        &names[names.len() - 2..],
        &["target_logret_1h", "target_close_1h"]
    );
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("33091 feature rows out"), "{stdout}");
}

#[tokio::test]
async fn a_raw_file_with_the_wrong_schema_exits_2_naming_it_and_keeps_other_outputs() {
    let dir = tempfile::tempdir().unwrap();
    put_raw(dir.path(), "BTC", &bars_at("BTC", 0..300)).await;
    let store = Store::open(&store_arg(&dir)).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "price",
        DataType::Float64,
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Float64Array::from(vec![1.0]))],
    )
    .unwrap();
    parquet_io::write(&store, "raw/XYZ.parquet", schema, &[batch], &[])
        .await
        .unwrap();

    let ok = run_bin(&["--store", &store_arg(&dir), "--coins", "BTC"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let before = read(dir.path(), "features/BTC.parquet");

    let summary = dir.path().join("reports/transform.json");
    let bad = run_bin(&[
        "--store",
        &store_arg(&dir),
        "--summary",
        summary.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let err = stderr(&bad);
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .expect("an error line");
    assert!(
        line.contains("raw/XYZ.parquet") && line.contains("missing column 'ts'"),
        "{line}"
    );
    assert_eq!(
        read(dir.path(), "features/BTC.parquet"),
        before,
        "earlier output intact"
    );
    assert!(!dir.path().join("features/XYZ.parquet").exists());
    assert!(!summary.exists(), "no summary for a failed run");
}

#[tokio::test]
async fn a_file_that_is_not_parquet_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("raw")).unwrap();
    std::fs::write(dir.path().join("raw/BTC.parquet"), b"date,close\n").unwrap();
    let out = run_bin(&["--store", &store_arg(&dir)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("raw/BTC.parquet"));
}

#[tokio::test]
async fn empty_and_too_short_inputs_give_empty_feature_files_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    put_raw(dir.path(), "EMPTY", &[]).await;
    put_raw(dir.path(), "SHORT", &bars_at("SHORT", 0..100)).await;
    let summary = dir.path().join("transform.json");
    let out = run_bin(&[
        "--store",
        &store_arg(&dir),
        "--summary",
        summary.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("WARN") && err.contains("EMPTY: no feature rows"),
        "{err}"
    );
    assert!(
        err.contains("SHORT: no feature rows (100 bars in, 169 needed"),
        "{err}"
    );

    let s: rps_transform::Summary =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s.warnings.len(), 2);
    assert_eq!(s.coins["SHORT"].dropped_warmup, 100);
    assert_eq!(s.coins["EMPTY"].rows_in, 0);
    assert_eq!(s.feature_spec_hash, features::spec().hash);
    assert_eq!(s.features, features::spec().names);

    let store = Store::open(&store_arg(&dir)).unwrap();
    for coin in ["EMPTY", "SHORT"] {
        let f = features::read_frame(&store, coin)
            .await
            .unwrap()
            .expect("file written");
        assert!(f.is_empty());
        assert_eq!(f.coin, coin);
    }
    let short = features::read_frame(&store, "SHORT")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        short.dropped_warmup, 100,
        "counts survive in the footer of an empty file"
    );
}

#[test]
fn an_unknown_coin_or_an_empty_store_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_bin(&["--store", &store_arg(&dir)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no raw bars"), "{}", stderr(&out));
    let out = run_bin(&["--store", &store_arg(&dir), "--coins", "NOPE"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("raw/NOPE.parquet not found"),
        "{}",
        stderr(&out)
    );
    let out = run_bin(&["--store", &store_arg(&dir), "--coins", "BTC/USD"]);
    assert_eq!(out.status.code(), Some(2), "a bad flag value is bad usage");
}
