//! Data test on the real Bitstamp fixture (`tests/data/`): it passes, with a warning that counts exactly
//! its swapped-volume rows.

use rps_core::time::{HOUR_MS, fmt_ms};
use rps_core::{Bar, Source};
use rps_validate::{Status, VOLUME_WINDOW};

use crate::common::{validate, write};

/// One CSV row: the bar as rps-extract stores it (`Volume USD` -> `volume`) and whether the
/// row's two volume columns are swapped, decided independently of the validator: the USD
/// amount of a trade always exceeds its BTC amount (the price is far above 1 USD), so a row
/// whose `Volume BTC` exceeds its `Volume USD` has them swapped.
fn read_fixture() -> (Vec<Bar>, Vec<bool>) {
    let mut rdr = csv::Reader::from_reader(rps_testkit::fixture::text().as_bytes());
    let headers = rdr.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (unix, open, high, low, close) = (
        col("unix"),
        col("Open"),
        col("High"),
        col("Low"),
        col("Close"),
    );
    let (vbtc, vusd) = (col("Volume BTC"), col("Volume USD"));
    let mut rows: Vec<(Bar, bool)> = rdr
        .records()
        .map(|r| {
            let r = r.unwrap();
            let f = |i: usize| r[i].parse::<f64>().unwrap();
            let bar = Bar {
                ts: r[unix].parse::<i64>().unwrap() * 1000,
                coin: "BTC".into(),
                open: f(open),
                high: f(high),
                low: f(low),
                close: f(close),
                volume: Some(f(vusd)),
                cap: None,
                points: 0,
                source: Source::Csv,
                ingested_at: 0,
            };
            (bar, f(vbtc) > f(vusd))
        })
        .collect();
    rows.sort_by_key(|(b, _)| b.ts); // the export is newest first; the store ascends
    rows.into_iter().unzip()
}

#[test]
fn the_shared_file_passes_with_a_warning_counting_its_swapped_volume_rows() {
    let (bars, swapped) = read_fixture();
    let independent = swapped.iter().filter(|s| **s).count();
    assert_eq!(
        independent, 20_143,
        "the shared file's README states 20,143 swapped rows"
    );
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "BTC", &bars);
    let before = std::fs::read(dir.path().join("raw/BTC.parquet")).unwrap();

    let out = validate(dir.path(), &["--coins", "BTC"]);

    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let report = out.report.unwrap();
    assert_eq!(report.status, Status::Warn);
    let btc = report.coin("BTC").unwrap();
    assert_eq!(btc.rows, 33_259);
    assert_eq!(btc.gaps, vec![]);
    let range = btc.range.as_ref().unwrap();
    assert_eq!(
        (range.start.as_str(), range.end.as_str()),
        ("2018-05-15T06:00:00Z", "2022-03-01T00:00:00Z")
    );
    let vol = btc.check("volume_units").unwrap();
    assert_eq!((vol.status, vol.count), (Status::Warn, independent));
    // The first swapped run is the first 7,003 hours of the file.
    assert_eq!(vol.examples[0].ts.as_deref(), Some("2018-05-15T06:00:00Z"));
    assert!(
        vol.examples[0].note.starts_with("7003 rows to "),
        "{:?}",
        vol.examples[0]
    );
    assert!(
        btc.checks.iter().all(|c| c.status != Status::Fail),
        "{:#?}",
        btc.checks
    );
    assert_eq!(report.summary.failed, 0);
    assert!(out.stdout.contains("volume_units"), "{}", out.stdout);
    assert!(out.stdout.contains("validation WARN"), "{}", out.stdout);
    // Validation never modifies data.
    assert_eq!(
        std::fs::read(dir.path().join("raw/BTC.parquet")).unwrap(),
        before
    );
}

#[test]
fn the_volume_rule_flags_exactly_the_swapped_rows_of_the_shared_file() {
    let (bars, swapped) = read_fixture();
    assert!(bars.windows(2).all(|w| w[1].ts - w[0].ts == HOUR_MS));
    let pairs: Vec<_> = bars.iter().map(|b| (b.volume, b.close)).collect();
    let flags = rps_validate::volume::swapped_rows(&pairs, VOLUME_WINDOW);
    let wrong: Vec<String> = flags
        .iter()
        .zip(&swapped)
        .zip(&bars)
        .filter(|((f, s), _)| f != s)
        .map(|((f, _), b)| format!("{} flagged={f}", fmt_ms(b.ts)))
        .collect();
    assert!(wrong.is_empty(), "rows classified differently: {wrong:?}");
}
