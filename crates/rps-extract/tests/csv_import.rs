//! CSV import of the shared real file and of exports in other shapes.

use rps_core::parquet_io::read_bars;
use rps_core::storage::layout;
use rps_core::time::HOUR_MS;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_file_imports_as_33259_ascending_unique_bars_and_again_changes_nothing() {
    let b = Backend::local();
    let csv = rps_testkit::fixture::path();
    let path = csv.to_str().unwrap();
    let out = extract_on(&b, &["--source", "csv", "--path", path], &[]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("inserted=33259")
            && out
                .stdout
                .contains("range=2018-05-15T06:00:00Z..2022-03-01T00:00:00Z"),
        "{}",
        out.stdout
    );

    let bars = read_bars(&b.store(), "BTC").await.unwrap();
    assert_eq!(bars.len(), 33_259);
    assert!(
        bars.windows(2).all(|w| w[0].ts < w[1].ts),
        "strictly ascending: ordered, no duplicates"
    );
    assert_eq!(bars[0].ts, 1_526_364_000_000, "2018-05-15T06:00Z");
    let last = bars.last().unwrap();
    assert_eq!(last.ts, 1_646_092_800_000, "2022-03-01T00:00Z");
    // The file's first line: 1646092800,...,43221.71,43626.49,43185.48,43312.27,52.05632000,2254677.3870464
    assert_eq!(
        (last.open, last.high, last.low, last.close),
        (43221.71, 43626.49, 43185.48, 43312.27)
    );
    assert_eq!(
        last.volume,
        Some(2_254_677.387_046_4),
        "volume is the Volume USD column"
    );
    assert!(
        bars.iter()
            .all(|b| b.source == rps_core::Source::Csv && b.points == 0 && b.coin == "BTC")
    );
    assert!(
        bars.windows(2).all(|w| w[1].ts - w[0].ts == HOUR_MS),
        "the file has no gaps"
    );

    let first_bytes = b.store().get(&layout::raw("BTC")).await.unwrap().unwrap();
    let again = extract_on(&b, &["--source", "csv", "--path", path], &[]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again
            .stdout
            .contains("inserted=0 replaced=0 unchanged=33259"),
        "{}",
        again.stdout
    );
    assert_eq!(read_bars(&b.store(), "BTC").await.unwrap().len(), 33_259);
    let second_bytes = b.store().get(&layout::raw("BTC")).await.unwrap().unwrap();
    assert_eq!(
        first_bytes, second_bytes,
        "a re-run leaves the file byte-for-byte unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shuffled_millisecond_export_with_renamed_columns_gives_the_same_bars() {
    let dir = tempfile::tempdir().unwrap();
    let lines = rps_testkit::fixture::head(500);
    let original = write_lines(dir.path(), "cdd.csv", &lines);

    // The same rows as another exporter would write them: ms times, other names, other order,
    // no symbol column.
    let mut rows: Vec<String> = lines[1..]
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let ms = f[0].parse::<i64>().unwrap() * 1000;
            format!("{},{},{},{},{},{}", f[6], f[3], f[4], ms, f[5], f[8])
        })
        .collect();
    // A fixed shuffle: order by a hash of the row.
    rows.sort_by_key(|r| {
        r.bytes().fold(0u64, |h, b| {
            h.wrapping_mul(1_099_511_628_211).wrapping_add(u64::from(b))
        })
    });
    let mut other = vec!["close,open,high,time,low,quote_volume".to_string()];
    other.extend(rows);
    let other = write_lines(dir.path(), "other.csv", &other);

    let a = Backend::local();
    let b = Backend::local();
    let out_a = extract_on(
        &a,
        &["--source", "csv", "--path", original.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(out_a.code, 0, "{}", out_a.stderr);
    let out_b = extract_on(
        &b,
        &[
            "--source",
            "csv",
            "--path",
            other.to_str().unwrap(),
            "--coins",
            "BTC",
            "--ts-column",
            "time",
            "--open-column",
            "open",
            "--high-column",
            "high",
            "--low-column",
            "low",
            "--close-column",
            "close",
            "--volume-column",
            "quote_volume",
        ],
        &[],
    )
    .await;
    assert_eq!(out_b.code, 0, "{}", out_b.stderr);
    let bars_a = read_bars(&a.store(), "BTC").await.unwrap();
    assert_eq!(bars_a.len(), 500);
    assert_eq!(
        strip(&bars_a),
        strip(&read_bars(&b.store(), "BTC").await.unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_import_of_an_hour_replaces_the_stored_one() {
    let dir = tempfile::tempdir().unwrap();
    let lines = rps_testkit::fixture::head(10);
    let v1 = write_lines(dir.path(), "v1.csv", &lines);
    let mut changed = lines.clone();
    // Row 3 gets a corrected close; a new, later hour is added on top.
    let f: Vec<String> = changed[3].split(',').map(str::to_string).collect();
    changed[3] = format!(
        "{},{},{},{},{},{},12345.5,{},{}",
        f[0], f[1], f[2], f[3], f[4], f[5], f[7], f[8]
    );
    let newest_ts: i64 = lines[1].split(',').next().unwrap().parse().unwrap();
    changed.insert(1, format!("{},x,BTC/USD,1,2,0.5,1.5,1,2", newest_ts + 3600));
    let v2 = write_lines(dir.path(), "v2.csv", &changed);

    let b = Backend::local();
    assert_eq!(
        extract_on(
            &b,
            &["--source", "csv", "--path", v1.to_str().unwrap()],
            &[]
        )
        .await
        .code,
        0
    );
    // The corrected close is a large revision: refused until the operator allows it.
    let before = b.snapshot().await;
    let refused = extract_on(
        &b,
        &["--source", "csv", "--path", v2.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.error_line().contains("--allow-revisions"),
        "{}",
        refused.stderr
    );
    assert_eq!(b.snapshot().await, before, "a refused run writes nothing");

    let out = extract_on(
        &b,
        &[
            "--source",
            "csv",
            "--path",
            v2.to_str().unwrap(),
            "--allow-revisions",
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("inserted=1 replaced=1 unchanged=9"),
        "{}",
        out.stdout
    );
    let ts3: i64 = f[0].parse::<i64>().unwrap() * 1000;
    let listed = format!(
        "replaced BTC {} close {} -> 12345.5 (",
        rps_core::time::fmt_ms(ts3),
        f[6]
    );
    assert!(out.stdout.contains(&listed), "{listed} in {}", out.stdout);
    let bars = read_bars(&b.store(), "BTC").await.unwrap();
    assert_eq!(bars.len(), 11);
    assert_eq!(bars.iter().find(|b| b.ts == ts3).unwrap().close, 12345.5);
}

/// The fixture's first `n` rows with every price multiplied by `factor`.
fn scaled(n: usize, factor: f64) -> Vec<String> {
    let lines = rps_testkit::fixture::head(n);
    let mut out = vec![lines[0].clone()];
    for l in &lines[1..] {
        let mut f: Vec<String> = l.split(',').map(str::to_string).collect();
        for v in &mut f[3..=6] {
            *v = format!("{}", v.parse::<f64>().unwrap() * factor);
        }
        out.push(f.join(","));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_import_that_rewrites_stored_history_is_refused_and_small_revisions_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::local();
    let v1 = write_lines(dir.path(), "v1.csv", &scaled(24, 1.0));
    let first = extract_on(
        &b,
        &["--source", "csv", "--path", v1.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let before = b.snapshot().await;

    // The same 24 hours at prices ~48,000 times lower (e.g. quoted in satoshi-per-cent by
    // mistake): every stored hour would be rewritten.
    let wrong = write_lines(dir.path(), "wrong.csv", &scaled(24, 1.0 / 48_000.0));
    let out = extract_on(
        &b,
        &["--source", "csv", "--path", wrong.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    let line = out.error_line();
    assert!(
        line.contains("BTC: 24 stored hour(s) would change by more than 1 %")
            && line.contains("nothing was written"),
        "{line}"
    );
    assert_eq!(b.snapshot().await, before, "the store is byte-identical");

    // A revision inside the tolerance (0.5 %) passes and every replaced hour is listed.
    let close = write_lines(dir.path(), "close.csv", &scaled(24, 1.005));
    let ok = extract_on(
        &b,
        &["--source", "csv", "--path", close.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(ok.stdout.contains("replaced=24"), "{}", ok.stdout);
    let listed: Vec<&str> = ok
        .stdout
        .lines()
        .filter(|l| l.starts_with("replaced BTC ") && l.ends_with("(+0.50 %)"))
        .collect();
    assert_eq!(listed.len(), 24, "{}", ok.stdout);

    // A tighter tolerance refuses the same kind of change.
    let again = write_lines(dir.path(), "again.csv", &scaled(24, 1.01));
    let tight = extract_on(
        &b,
        &[
            "--source",
            "csv",
            "--path",
            again.to_str().unwrap(),
            "--revision-tolerance",
            "0.1",
        ],
        &[],
    )
    .await;
    assert_eq!(tight.code, 2, "{}", tight.stderr);
    assert!(
        tight.error_line().contains("more than 0.1 %"),
        "{}",
        tight.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_end_limit_an_import_to_the_data_interval() {
    let b = Backend::local();
    let csv = rps_testkit::fixture::path();
    let out = extract_on(
        &b,
        &[
            "--source",
            "csv",
            "--path",
            csv.to_str().unwrap(),
            "--start",
            "2022-02-01T00:00:00Z",
            "--end",
            "2022-02-02T00:00:00Z",
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let bars = read_bars(&b.store(), "BTC").await.unwrap();
    assert_eq!(bars.len(), 24);
    assert_eq!(bars[0].ts, 1_643_673_600_000);
}
