//! The `rps-monitor` command line as the DAG and people meet it: bad flag values are one
//! line naming the flag and exit 2; a drift verdict is exit 3 with the report written.

use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_exit_2_naming_the_flag_and_a_drift_verdict_exits_3_with_its_report() {
    let tmp = TempDir::new().unwrap();
    let report = tmp.path().join("reports/drift.json");
    // Checked before any model or store is opened: neither exists here.
    for (flag, value) in [
        ("--share", "0"),
        ("--share", "1.5"),
        ("--threshold", "-1"),
        ("--window-hours", "0"),
    ] {
        let out = run(Command::new(BIN)
            .args(["drift", "--model-dir", "/nonexistent/model"])
            .arg("--store")
            .arg(tmp.path().join("no-store"))
            .arg("--report")
            .arg(&report)
            .args([flag, value])
            .env_remove("MLFLOW_TRACKING_URI"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(&format!("{flag}: ")),
            "{flag} {value}: {err}"
        );
        assert!(!report.exists(), "no report for bad flags");
    }
    // A value clap cannot parse is exit 2 as well, naming the flag.
    let out = run(Command::new(BIN).args(["drift", "--share", "half"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--share"));

    // A week of a three times more volatile market: drift, exit 3, and the report says so.
    let store = features_store(&amplified(reference_bars(), 3.0)).await;
    let out = drift_cmd(store.path(), &report, 168, None, &["--share", "0.5"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("DRIFT (psi_share fired), retrain"),
        "{stdout}"
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["drift"], true, "{r}");
    assert_eq!(r["share_needed"], 0.5, "{r}");
    assert_eq!(r["window_hours"], 168, "{r}");
}

/// A tracking URI with a password and a token, and a registry that is down: the run fails
/// with exit 4 after its retries, and no byte of either secret reaches stdout or stderr (logs
/// at trace level included), while the host stays named so the error is still useful.
#[test]
fn credentials_in_the_tracking_uri_never_reach_the_output_of_a_failing_run() {
    let tmp = TempDir::new().unwrap();
    let out = run(Command::new(BIN)
        .args(["drift", "--store"])
        .arg(tmp.path().join("store"))
        .arg("--report")
        .arg(tmp.path().join("drift.json"))
        .env(
            "MLFLOW_TRACKING_URI",
            "http://rps:pa55-w0rd@127.0.0.1:9/?token=t0k3n-v4lue",
        )
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        .env("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0.01")
        .env("RUST_LOG", "trace"));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(4), "{all}");
    for secret in ["pa55-w0rd", "t0k3n-v4lue"] {
        assert!(!all.contains(secret), "{secret} printed:\n{all}");
    }
    assert!(
        all.contains("127.0.0.1:9"),
        "the host is still named: {all}"
    );
}
