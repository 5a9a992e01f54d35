//! The same storage behaviour on the local backend and on the S3 test server: import, read
//! back, idempotent re-run, and a failed run leaving every object as it was.

use rps_core::parquet_io::{read_bars, stored_coins};
use rps_core::storage::layout;
use rps_extract::{Config, SourceConfig};

use crate::common::*;

async fn import_read_back_and_rerun(b: &Backend) {
    let csv = rps_testkit::fixture::path();
    let out = extract_on(
        b,
        &["--source", "csv", "--path", csv.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let store = b.store();
    let bars = read_bars(&store, "BTC").await.unwrap();
    assert_eq!(bars.len(), 33_259);
    assert!(bars.windows(2).all(|w| w[0].ts < w[1].ts));
    let bytes = store.get(&layout::raw("BTC")).await.unwrap().unwrap();

    let again = extract_on(
        b,
        &["--source", "csv", "--path", csv.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("unchanged=33259"), "{}", again.stdout);
    assert_eq!(
        store.get(&layout::raw("BTC")).await.unwrap().unwrap(),
        bytes
    );
    assert_eq!(read_bars(&store, "BTC").await.unwrap().len(), 33_259);
}

async fn a_failed_run_changes_nothing(b: &Backend) {
    // Two coins stored by the library (in-process), then a bad import through the binary.
    for coin in ["BTC", "ETH"] {
        let cfg = Config {
            store: b.location(),
            s3: b.s3_options(),
            source: SourceConfig::Synthetic { seed: 5 },
            coins: Some(vec![coin.into()]),
            start: Some(rps_extract::synthetic::DEFAULT_END_MS - 3 * DAY),
            end: None,
            revisions: Default::default(),
        };
        rps_extract::run(cfg).await.unwrap();
    }
    assert_eq!(stored_coins(&b.store()).await.unwrap(), vec!["BTC", "ETH"]);
    let before = b.snapshot().await;
    let dir = tempfile::tempdir().unwrap();
    let lines = rps_testkit::fixture::head(30);
    let mut bad = lines.clone();
    bad[17] = bad[17].replacen(",BTC/USD,", ",BTC/USD,oops", 1);
    let p = write_lines(dir.path(), "bad.csv", &bad);
    let out = extract_on(b, &["--source", "csv", "--path", p.to_str().unwrap()], &[]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.error_line().contains("row 17") && out.error_line().contains("field 'Open'"),
        "{}",
        out.error_line()
    );
    assert_eq!(b.snapshot().await, before, "every object keeps its bytes");
}

async fn synthetic_bars_land_labelled(b: &Backend) {
    let out = extract_on(
        b,
        &["--coins", "BTC,ETH", "--start", "2024-12-25T00:00:00Z"],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    for coin in ["BTC", "ETH"] {
        let bars = read_bars(&b.store(), coin).await.unwrap();
        assert_eq!(bars.len(), 7 * 24);
        assert!(bars.iter().all(|x| x.source == rps_core::Source::Synthetic));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_import_round_trips_and_reruns_idempotently_on_the_local_backend() {
    import_read_back_and_rerun(&Backend::local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server; scripts/test starts it"]
async fn csv_import_round_trips_and_reruns_idempotently_on_s3() {
    let b = Backend::s3("csv-round-trip").await;
    import_read_back_and_rerun(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_leaves_the_local_store_unchanged() {
    a_failed_run_changes_nothing(&Backend::local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server; scripts/test starts it"]
async fn a_failed_run_leaves_the_s3_store_unchanged() {
    let b = Backend::s3("failed-run").await;
    a_failed_run_changes_nothing(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthetic_bars_land_labelled_on_the_local_backend() {
    synthetic_bars_land_labelled(&Backend::local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server; scripts/test starts it"]
async fn synthetic_bars_land_labelled_on_s3() {
    let b = Backend::s3("synthetic").await;
    synthetic_bars_land_labelled(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server; scripts/test starts it"]
async fn a_missing_bucket_is_an_external_failure_on_s3() {
    let b = Backend::s3("missing-bucket").await;
    let Backend::S3 { endpoint, .. } = &b else {
        unreachable!()
    };
    let env = b.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = extract(
        &[
            "--store",
            "s3://rps-no-such-bucket-x9/p",
            "--end",
            "2024-12-02T00:00:00Z",
            "--start",
            "2024-12-01T00:00:00Z",
        ],
        &env,
    )
    .await;
    assert_eq!(out.code, 4, "{endpoint}: {}", out.stderr);
}
