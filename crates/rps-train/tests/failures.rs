//! Failure behaviour: exit codes, clear messages, and nothing half-written.

use crate::support::{feature_store, short_args, train};

#[test]
fn an_unreachable_mlflow_exits_4_after_retries_and_registers_nothing() {
    // A port nobody listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = tempfile::tempdir().unwrap();
    let uri = format!("http://127.0.0.1:{port}");
    let o = train(
        &short_args(feature_store(), out.path()),
        Some(&uri),
        &[
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
            ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0.1"),
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "stderr: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("MLflow") && last.contains("3 attempt"),
        "{last}"
    );
    assert!(!out.path().join("package").exists(), "no package written");
    assert!(
        !out.path().join("metrics.json").exists(),
        "no metrics written"
    );
    assert!(
        !out.path().join("registry").exists(),
        "the local registry is not used as a fallback"
    );
}

#[test]
fn missing_features_exit_2_naming_the_file() {
    let empty = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = train(&short_args(empty.path(), out.path()), None, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("features/BTC.parquet") && stderr.contains("rps-transform"),
        "{stderr}"
    );
    assert!(
        !out.path().join("registry/runs.jsonl").exists(),
        "no run was started"
    );
}

#[test]
fn split_fractions_without_a_test_split_are_refused_before_any_run() {
    let out = tempfile::tempdir().unwrap();
    let mut args = short_args(feature_store(), out.path());
    args.extend(["--train-fraction", "0.9"].map(String::from));
    let o = train(&args, None, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("test split"), "{stderr}");
    assert!(!out.path().join("registry/runs.jsonl").exists());
}
