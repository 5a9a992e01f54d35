//! Crash safety: a write interrupted between the temporary file and the rename leaves the
//! previous file readable, and the next run succeeds.

use rps_core::parquet_io::{read_bars, stored_coins};
use rps_core::storage::layout;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_interrupted_before_the_rename_leaves_the_previous_file_readable() {
    let b = Backend::local();
    let dir = tempfile::tempdir().unwrap();
    let v1 = write_lines(dir.path(), "v1.csv", &rps_testkit::fixture::head(100));
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
    let store = b.store();
    let v1_bars = read_bars(&store, "BTC").await.unwrap();
    let v1_bytes = store.get(&layout::raw("BTC")).await.unwrap().unwrap();

    // What a process killed mid-write leaves behind: object_store's local backend writes
    // `<file>#<n>` and renames it into place; the crash happened before the rename, with half
    // of the new file written.
    let v2 = write_lines(dir.path(), "v2.csv", &rps_testkit::fixture::head(3000));
    let opts = rps_extract::csv_import::CsvOptions::default();
    let v2_bars = &rps_extract::csv_import::import_file(&v2, &opts, 0)
        .unwrap()
        .bars["BTC"];
    let full = rps_core::parquet_io::encode(
        rps_core::schema::raw_schema(),
        &[rps_core::schema::bars_to_batch(v2_bars).unwrap()],
        &[],
        "x",
    )
    .unwrap();
    let Backend::Local(root) = &b else {
        unreachable!()
    };
    let raw = root.path().join("data").join("raw");
    std::fs::write(raw.join("BTC.parquet#1"), &full[..full.len() / 2]).unwrap();

    // Readers still see the previous, complete file, and the staging file is not a coin.
    assert_eq!(read_bars(&store, "BTC").await.unwrap(), v1_bars);
    assert_eq!(stored_coins(&store).await.unwrap(), vec!["BTC"]);
    assert_eq!(
        store.get(&layout::raw("BTC")).await.unwrap().unwrap(),
        v1_bytes
    );

    // The next run succeeds and replaces the file completely.
    let out = extract_on(
        &b,
        &["--source", "csv", "--path", v2.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("inserted=2900 replaced=0 unchanged=100"),
        "{}",
        out.stdout
    );
    assert_eq!(read_bars(&store, "BTC").await.unwrap().len(), 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_process_at_any_moment_leaves_either_the_old_or_the_new_file() {
    let b = Backend::local();
    let dir = tempfile::tempdir().unwrap();
    let v1 = write_lines(dir.path(), "v1.csv", &rps_testkit::fixture::head(100));
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
    let store = b.store();
    let old = read_bars(&store, "BTC").await.unwrap();
    let csv = rps_testkit::fixture::path();

    // Kill a full import at a spread of moments (from "before it read anything" to "after it
    // finished"). Whatever the moment, readers find a complete file: the old or the new one.
    let mut outcomes = (0, 0);
    for delay_ms in [0u64, 5, 15, 30, 50, 80, 120, 200, 400, 1500] {
        let loc = b.location();
        let child = rps_testkit::ChildGuard::spawn(
            std::process::Command::new(env!("CARGO_BIN_EXE_rps-extract"))
                .args([
                    "--store",
                    &loc,
                    "--source",
                    "csv",
                    "--path",
                    csv.to_str().unwrap(),
                ])
                .env_clear()
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        );
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        drop(child); // kills and reaps it

        let bars = read_bars(&store, "BTC")
            .await
            .expect("the file always decodes");
        match bars.len() {
            100 => {
                assert_eq!(bars, old);
                outcomes.0 += 1;
            }
            33_259 => outcomes.1 += 1,
            n => panic!("a reader saw {n} bars: a half-written file"),
        }
    }
    eprintln!(
        "kill outcomes: old file {} times, new file {} times",
        outcomes.0, outcomes.1
    );
    // And a plain re-run afterwards completes.
    let out = extract_on(
        &b,
        &["--source", "csv", "--path", csv.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(read_bars(&store, "BTC").await.unwrap().len(), 33_259);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failing_for_a_later_coin_puts_back_the_files_already_written() {
    let b = Backend::local();
    let dir = tempfile::tempdir().unwrap();
    let btc = write_lines(dir.path(), "btc.csv", &rps_testkit::fixture::head(10));
    assert_eq!(
        extract_on(
            &b,
            &["--source", "csv", "--path", btc.to_str().unwrap()],
            &[]
        )
        .await
        .code,
        0
    );

    // A file with more BTC hours and some ETH hours; ETH's file cannot be written because a
    // non-empty directory sits where it goes. BTC is written first (coins in order), then ETH fails.
    let mut both = rps_testkit::fixture::head(20);
    both.extend(
        rps_testkit::fixture::head(5)[1..]
            .iter()
            .map(|l| l.replace("BTC/USD", "ETH/USD")),
    );
    let both = write_lines(dir.path(), "both.csv", &both);
    let Backend::Local(root) = &b else {
        unreachable!()
    };
    let blocker = root.path().join("data/raw/ETH.parquet");
    std::fs::create_dir_all(&blocker).unwrap();
    std::fs::write(blocker.join("keep"), b"x").unwrap();
    let before = b.snapshot().await;

    let out = extract_on(
        &b,
        &["--source", "csv", "--path", both.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.error_line().contains("raw/ETH.parquet"),
        "{}",
        out.error_line()
    );
    assert!(
        out.stderr
            .contains("restoring the files this run already wrote"),
        "{}",
        out.stderr
    );
    assert_eq!(
        b.snapshot().await,
        before,
        "BTC's file was put back byte for byte"
    );
    assert_eq!(read_bars(&b.store(), "BTC").await.unwrap().len(), 10);
}
