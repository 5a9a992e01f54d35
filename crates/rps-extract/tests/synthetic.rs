//! The synthetic source as the embedded default: no key, no network, reproducible, labelled.

use rps_core::parquet_io::read_bars;
use rps_core::storage::layout;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_run_needs_no_flags_and_gives_the_same_90_days_every_time() {
    let a = Backend::local();
    let out = extract_on(&a, &[], &[]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("source=synthetic coins=BTC bars=2160 inserted=2160")
            && out
                .stdout
                .contains("range=2024-10-03T00:00:00Z..2024-12-31T23:00:00Z"),
        "{}",
        out.stdout
    );
    let bars = read_bars(&a.store(), "BTC").await.unwrap();
    assert!(bars.iter().all(|b| b.source == rps_core::Source::Synthetic));

    // Another store, another run: the same bars. And a re-run changes nothing, not even bytes.
    let b = Backend::local();
    assert_eq!(extract_on(&b, &[], &[]).await.code, 0);
    assert_eq!(
        strip(&bars),
        strip(&read_bars(&b.store(), "BTC").await.unwrap())
    );
    let bytes = a.store().get(&layout::raw("BTC")).await.unwrap().unwrap();
    let again = extract_on(&a, &[], &[]).await;
    assert!(
        again
            .stdout
            .contains("inserted=0 replaced=0 unchanged=2160"),
        "{}",
        again.stdout
    );
    assert_eq!(
        a.store().get(&layout::raw("BTC")).await.unwrap().unwrap(),
        bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_window_extends_the_series_without_touching_stored_hours() {
    let b = Backend::local();
    assert_eq!(extract_on(&b, &["--seed", "9"], &[]).await.code, 0);
    let first = read_bars(&b.store(), "BTC").await.unwrap();
    let out = extract_on(
        &b,
        &[
            "--seed",
            "9",
            "--start",
            "2024-12-31T00:00:00Z",
            "--end",
            "2025-01-02T00:00:00Z",
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("inserted=24 replaced=0 unchanged=24"),
        "{}",
        out.stdout
    );
    let after = read_bars(&b.store(), "BTC").await.unwrap();
    assert_eq!(&after[..first.len()], &first[..]);
    assert_eq!(after.len(), first.len() + 24);
}
