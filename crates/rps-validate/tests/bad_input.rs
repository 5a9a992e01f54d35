//! Bad input: exit 2 with one line naming the file (or coin), data untouched.

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use rps_core::parquet_io;
use rps_core::storage::layout;
use rps_validate::Status;

use crate::common::{bars, block_on, store, validate, write};

#[test]
fn a_file_with_the_wrong_schema_is_bad_input_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "BTC", &bars("BTC", "2024-01-01T00:00:00Z", 24));
    let schema = Arc::new(Schema::new(vec![
        Field::new("timestamp", DataType::Int64, false),
        Field::new("price", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1_700_000_000, 1_700_003_600])),
            Arc::new(Float64Array::from(vec![1.0, 2.0])),
        ],
    )
    .unwrap();
    let key = layout::raw("ETH");
    block_on(parquet_io::write(
        &store(dir.path()),
        &key,
        schema,
        &[batch],
        &[],
    ))
    .unwrap();
    let before = std::fs::read(dir.path().join(&key)).unwrap();

    let out = validate(dir.path(), &[]);

    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    let line = out.error_line();
    assert!(
        line.contains("raw/ETH.parquet") && line.contains("missing column 'ts'"),
        "{line}"
    );
    // The other coin is still validated and the report says which coin was unreadable.
    let report = out.report.unwrap();
    assert_eq!(report.coin("BTC").unwrap().status, Status::Pass);
    let eth = report.coin("ETH").unwrap();
    assert_eq!(
        (eth.rows, eth.check("readable").unwrap().status),
        (0, Status::Fail)
    );
    assert_eq!(report.summary.unreadable, 1);
    assert!(
        out.stdout.contains("validation ERROR (bad input"),
        "{}",
        out.stdout
    );
    assert_eq!(std::fs::read(dir.path().join(&key)).unwrap(), before);
}

#[test]
fn a_price_column_of_the_wrong_type_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let b = bars("BTC", "2024-01-01T00:00:00Z", 3);
    let batch = rps_core::schema::bars_to_batch(&b).unwrap();
    // Same columns, but `close` as text.
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut cols = batch.columns().to_vec();
    let i = fields.iter().position(|f| f.name() == "close").unwrap();
    fields[i] = Field::new("close", DataType::Utf8, false);
    cols[i] = Arc::new(arrow::array::StringArray::from(vec!["1", "2", "3"]));
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    block_on(parquet_io::write(
        &store(dir.path()),
        &layout::raw("BTC"),
        schema,
        &[batch],
        &[],
    ))
    .unwrap();

    let out = validate(dir.path(), &["--coins", "BTC"]);

    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    let line = out.error_line();
    assert!(
        line.contains("raw/BTC.parquet") && line.contains("column 'close' has type Utf8"),
        "{line}"
    );
}

#[test]
fn a_file_that_is_not_parquet_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("raw")).unwrap();
    std::fs::write(dir.path().join("raw/BTC.parquet"), b"unix,close\n1,2\n").unwrap();
    let out = validate(dir.path(), &["--coins", "BTC"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    let line = out.error_line();
    assert!(
        line.contains("raw/BTC.parquet") && line.contains("not a readable Parquet file"),
        "{line}"
    );
}

#[test]
fn a_coin_without_raw_data_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "BTC", &bars("BTC", "2024-01-01T00:00:00Z", 24));
    let out = validate(dir.path(), &["--coins", "BTC,ETH"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    let line = out.error_line();
    assert!(
        line.contains("raw/ETH.parquet") && line.contains("no raw bars for coin ETH"),
        "{line}"
    );
}

#[test]
fn an_empty_store_is_bad_input_and_a_missing_one_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let out = validate(dir.path(), &[]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.error_line().contains("no raw bars stored"),
        "{}",
        out.stderr
    );

    let missing = dir.path().join("nowhere");
    let out = validate(&missing, &[]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.error_line().contains("does not exist"),
        "{}",
        out.stderr
    );
    assert!(!missing.exists());
}

#[test]
fn bad_flags_are_bad_usage() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "BTC", &bars("BTC", "2024-01-01T00:00:00Z", 24));
    for args in [
        &["--end", "yesterday"][..],
        &["--max-null-ratio", "1.5"],
        &["--coins", "BTC/USD"],
    ] {
        let out = validate(dir.path(), args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.report.is_none());
    }
}
