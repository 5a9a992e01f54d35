//! Quality failures: exit 3 with the failing check counted, and warnings that still pass.

use rps_core::parquet_io;
use rps_core::schema::{bars_to_batch, raw_schema};
use rps_core::storage::layout;
use rps_validate::Status;

use crate::common::{bars, block_on, store, validate, write};

#[test]
fn a_clean_store_passes_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "BTC", &bars("BTC", "2024-01-01T00:00:00Z", 500));
    let out = validate(dir.path(), &["--coins", "BTC"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let report = out.report.unwrap();
    assert_eq!(report.status, Status::Pass, "{}", out.stdout);
    assert_eq!(report.summary.failed + report.summary.warned, 0);
}

#[test]
fn nulls_above_one_percent_fail_and_up_to_one_percent_only_warn() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = bars("BTC", "2024-01-01T00:00:00Z", 500);
    for i in [10, 50, 90, 130, 170] {
        b[i].close = f64::NAN; // 5 of 500 = 1.00%: at the limit
    }
    write(dir.path(), "BTC", &b);
    let out = validate(dir.path(), &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let c = out
        .report
        .unwrap()
        .coin("BTC")
        .unwrap()
        .check("null_ratio.close")
        .unwrap()
        .clone();
    assert_eq!((c.status, c.count), (Status::Warn, 5));

    b[210].close = f64::NAN; // 6 of 500 = 1.2%
    write(dir.path(), "BTC", &b);
    let out = validate(dir.path(), &[]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let c = out
        .report
        .unwrap()
        .coin("BTC")
        .unwrap()
        .check("null_ratio.close")
        .unwrap()
        .clone();
    assert_eq!((c.status, c.count), (Status::Fail, 6));
    assert_eq!(c.examples[0].row, Some(10));
    assert!(out.stdout.contains("null_ratio.close"), "{}", out.stdout);

    // The limit is a flag.
    let out = validate(dir.path(), &["--max-null-ratio", "0.02"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

#[test]
fn missing_volumes_warn_and_never_fail_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = bars("BTC", "2024-01-01T00:00:00Z", 200);
    for bar in &mut b[100..103] {
        bar.volume = None; // 3 of 200 = 1.5%
    }
    write(dir.path(), "BTC", &b);
    // Volume is optional (its features treat an unknown hour as unknown): reported, not failed.
    let out = validate(dir.path(), &["--coins", "BTC"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let c = out
        .report
        .unwrap()
        .coin("BTC")
        .unwrap()
        .check("null_ratio.volume")
        .unwrap()
        .clone();
    assert_eq!((c.status, c.count), (Status::Warn, 3));
}

#[test]
fn duplicated_rows_fail_and_the_file_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = bars("BTC", "2024-01-01T00:00:00Z", 300);
    let dup1 = b[40].clone();
    let dup2 = b[41].clone();
    b.insert(42, dup1);
    b.insert(43, dup2);
    let batch = bars_to_batch(&b).unwrap();
    let key = layout::raw("BTC");
    block_on(parquet_io::write(
        &store(dir.path()),
        &key,
        raw_schema(),
        &[batch],
        &[],
    ))
    .unwrap();
    let before = std::fs::read(dir.path().join(&key)).unwrap();

    let out = validate(dir.path(), &["--coins", "BTC"]);

    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let report = out.report.unwrap();
    let btc = report.coin("BTC").unwrap();
    assert_eq!(btc.rows, 302);
    let c = btc.check("duplicates").unwrap();
    assert_eq!((c.status, c.count), (Status::Fail, 2));
    assert_eq!(
        c.examples.iter().map(|e| e.row).collect::<Vec<_>>(),
        vec![Some(42), Some(43)]
    );
    // Rows 42 and 43 go back in time after row 41.
    assert_eq!(btc.check("ordering").unwrap().count, 1);
    assert_eq!(btc.gaps, vec![]);
    assert_eq!(std::fs::read(dir.path().join(&key)).unwrap(), before);
}

#[test]
fn an_ohlc_violation_fails_and_names_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = bars("BTC", "2024-01-01T00:00:00Z", 300);
    b[123].low = b[123].high * 1.01; // low above everything
    write(dir.path(), "BTC", &b);
    let out = validate(dir.path(), &["--coins", "BTC"]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let report = out.report.unwrap();
    let c = report.coin("BTC").unwrap().check("ohlc").unwrap();
    assert_eq!((c.status, c.count), (Status::Fail, 1));
    assert_eq!(c.examples[0].row, Some(123));
    assert_eq!(c.examples[0].ts.as_deref(), Some("2024-01-06T03:00:00Z"));
    assert!(out.stdout.contains("validation FAIL"), "{}", out.stdout);
}

#[test]
fn without_coins_every_stored_coin_is_validated_and_one_failure_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "BTC", &bars("BTC", "2024-01-01T00:00:00Z", 100));
    let mut eth = bars("ETH", "2024-01-01T00:00:00Z", 100);
    eth[7].open = -1.0;
    write(dir.path(), "ETH", &eth);
    let out = validate(dir.path(), &[]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let report = out.report.unwrap();
    assert_eq!(
        report
            .coins
            .iter()
            .map(|c| c.coin.as_str())
            .collect::<Vec<_>>(),
        ["BTC", "ETH"]
    );
    assert_eq!(report.coin("BTC").unwrap().status, Status::Pass);
    assert_eq!(report.coin("ETH").unwrap().status, Status::Fail);
}

#[test]
fn a_swapped_volume_run_warns_but_passes() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = bars("BTC", "2024-01-01T00:00:00Z", 400);
    for bar in &mut b[100..160] {
        bar.volume = bar.volume.map(|v| v / bar.close); // the coin amount stored as USD
    }
    write(dir.path(), "BTC", &b);
    let out = validate(dir.path(), &["--coins", "BTC"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let report = out.report.unwrap();
    let c = report.coin("BTC").unwrap().check("volume_units").unwrap();
    assert_eq!((c.status, c.count), (Status::Warn, 60));
    assert_eq!(c.examples[0].row, Some(100));
}
