//! How tests find the real services `.ci/run` (or `.ci/services start`) runs: the S3 server
//! and the MLflow server. Under CI (`CI=true`) a missing service fails the test loudly; on a
//! developer machine without the service the test says it was skipped.

/// The URL of a service from environment variable `var`, or `None` (printing a skip note)
/// when it is not set outside CI.
///
/// # Panics
/// When `CI` is set and `var` is not: a missing service in CI is a failure, not a skip.
pub fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            let ci = std::env::var("CI")
                .map(|v| !v.is_empty() && v != "false")
                .unwrap_or(false);
            assert!(
                !ci,
                "{var} is not set under CI: start the services with `.ci/services start`"
            );
            eprintln!("skipped: {var} not set (run `.ci/services start` and export it)");
            None
        }
    }
}

/// The S3 test server endpoint (`RPS_TEST_S3_ENDPOINT`, e.g. `http://127.0.0.1:9000`).
pub fn s3_endpoint() -> Option<String> {
    service("RPS_TEST_S3_ENDPOINT")
}

/// The MLflow test server (`RPS_TEST_MLFLOW_URI`, e.g. `http://127.0.0.1:5055`).
pub fn mlflow_uri() -> Option<String> {
    service("RPS_TEST_MLFLOW_URI")
}

/// Path of the shared real data file (`../shared/data/...` from the workspace root), found
/// from the crate's manifest directory so tests run from any crate.
pub fn shared_csv() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = root.join("../shared/data/btc-usd-hourly-bitstamp-2018-2022.csv");
    p.canonicalize().unwrap_or(p)
}
