//! The report on the S3 test server (`RPS_TEST_S3_ENDPOINT`, started by `.ci/services start`;
//! ignored unless scripts/test runs it): with `--report s3://…` a stage on another host can
//! read what this one found, as the Airflow DAG's tasks do on many workers.

use std::process::Command;

use rps_core::Store;
use rps_core::storage::S3Options;
use rps_testkit::service::create_bucket;
use rps_validate::{Report, Status};

use crate::common::{bars, block_on};

fn run(endpoint: &str, args: &[&str]) -> std::process::Output {
    // A fresh working directory: nothing local is read or written.
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rps-validate"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RPS_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(rps_testkit::service::s3_env(endpoint))
        .args(args)
        .current_dir(cwd.path())
        .output()
        .unwrap()
}

#[test]
#[ignore = "needs the S3 test server; scripts/test starts it"]
fn the_report_goes_to_an_object_url_and_a_failed_run_still_writes_it() {
    let endpoint = rps_testkit::service::s3_endpoint();
    // This process writes the fixture bars itself, with the keys the test server takes.
    for (k, v) in rps_testkit::service::s3_env(&endpoint) {
        if std::env::var_os(k).is_none() {
            // SAFETY: std's environment functions hold a process-wide lock, and no code in
            // this test binary reads the environment through libc directly.
            #[allow(unsafe_code)]
            unsafe {
                std::env::set_var(k, v)
            };
        }
    }
    let bucket = create_bucket(&endpoint, "validate");
    let location = format!("s3://{bucket}/rps");
    let s3 = S3Options {
        endpoint: Some(endpoint.clone()),
    };
    let store = Store::open_with(&location, &s3).unwrap();
    let good = bars("BTC", "2024-01-01T00:00:00Z", 200);
    let mut bad = bars("ETH", "2024-01-01T00:00:00Z", 200);
    bad[7].high = bad[7].low * 0.5; // high below low: the ohlc check fails
    block_on(rps_core::parquet_io::write_bars(&store, "BTC", &good)).unwrap();
    block_on(rps_core::parquet_io::write_bars(&store, "ETH", &bad)).unwrap();
    let read = |key: &str| -> Option<Report> {
        block_on(store.get(key))
            .unwrap()
            .map(|b| serde_json::from_slice(&b).unwrap())
    };

    let url = format!("{location}/reports/validation/BTC.json");
    let out = run(
        &endpoint,
        &["--store", &location, "--coins", "BTC", "--report", &url],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("report {url}")));
    let report = read("reports/validation/BTC.json").expect("report object written");
    assert_eq!(report.status, Status::Pass);
    assert_eq!(report.summary.rows, 200);
    assert_eq!(report.store, location);

    // exit 3, and the report that says why is in the store for the next reader
    let url = format!("{location}/reports/validation/ETH.json");
    let out = run(
        &endpoint,
        &["--store", &location, "--coins", "ETH", "--report", &url],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = read("reports/validation/ETH.json").expect("failed run's report written");
    assert_eq!(report.status, Status::Fail);
    let ohlc = report
        .coin("ETH")
        .unwrap()
        .checks
        .iter()
        .find(|c| c.name == "ohlc")
        .unwrap();
    assert_eq!((ohlc.status, ohlc.count), (Status::Fail, 1));

    // a URL naming no object is bad input, and nothing is written
    let out = run(
        &endpoint,
        &[
            "--store",
            &location,
            "--coins",
            "BTC",
            "--report",
            &format!("s3://{bucket}/"),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no object name"));
}
