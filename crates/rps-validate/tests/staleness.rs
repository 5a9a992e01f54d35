//! Staleness: enforced against --end (the data interval end), only reported without it.

use rps_validate::Status;

use crate::common::{bars, validate, write};

/// 48 bars, the newest opening at 2024-01-02T23:00:00Z.
fn store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "BTC", &bars("BTC", "2024-01-01T00:00:00Z", 48));
    dir
}

#[test]
fn without_end_staleness_is_reported_and_passes() {
    let dir = store();
    let out = validate(dir.path(), &["--coins", "BTC"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let report = out.report.unwrap();
    let c = report
        .coin("BTC")
        .unwrap()
        .check("staleness")
        .unwrap()
        .clone();
    assert_eq!(c.status, Status::Pass);
    assert!(
        c.details.contains("no --end") && c.details.contains("2024-01-02T23:00:00Z"),
        "{}",
        c.details
    );
    assert!(out.stdout.contains("staleness"), "{}", out.stdout);
}

#[test]
fn with_end_a_newest_bar_within_the_limit_passes() {
    let dir = store();
    // The bar of 23:00 is complete at 00:00; at 01:00 it is two hours old: the limit.
    let out = validate(
        dir.path(),
        &["--coins", "BTC", "--end", "2024-01-03T01:00:00Z"],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.report.unwrap().settings.end.unwrap().to_rfc3339(),
        "2024-01-03T01:00:00+00:00"
    );
}

#[test]
fn with_end_a_stale_store_fails_and_counts_the_missing_hours() {
    let dir = store();
    let out = validate(
        dir.path(),
        &["--coins", "BTC", "--end", "2024-01-03T06:00:00Z"],
    );
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let report = out.report.unwrap();
    let c = report
        .coin("BTC")
        .unwrap()
        .check("staleness")
        .unwrap()
        .clone();
    // Bars of 00:00 .. 05:00 are missing; the newest opened 7 h before --end.
    assert_eq!((c.status, c.count), (Status::Fail, 6));
    assert!(c.details.contains("7.0 h"), "{}", c.details);

    // A looser limit (flag) passes the same store.
    let out = validate(
        dir.path(),
        &[
            "--end",
            "2024-01-03T06:00:00Z",
            "--max-staleness-hours",
            "8",
        ],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}
