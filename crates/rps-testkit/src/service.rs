//! The one way a test requires a real service. `scripts/test` starts the services
//! (`.ci/services start`) and exports where they listen; tests that need one are marked
//! `#[ignore = "needs …; scripts/test starts it"]` and call these functions, which fail the
//! test with a clear message when the service is not there (so an ignored test run by hand
//! without its service fails; it never passes by returning early).

use std::path::{Path, PathBuf};

/// The value of `var`, which names where a service listens.
///
/// # Panics
/// When `var` is unset or empty: the test needs the service and cannot pass without it.
pub fn require(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{var} is not set: this test needs a running service; run it through scripts/test, \
             or `eval \"$(.ci/services start)\"` first"
        ),
    }
}

/// The S3 test server endpoint (`RPS_TEST_S3_ENDPOINT`, e.g. `http://127.0.0.1:9000`).
pub fn s3_endpoint() -> String {
    require("RPS_TEST_S3_ENDPOINT")
}

/// The MLflow test server (`RPS_TEST_MLFLOW_URI`, e.g. `http://127.0.0.1:5055`).
pub fn mlflow_uri() -> String {
    require("RPS_TEST_MLFLOW_URI")
}

/// An executable on `PATH` (e.g. `promtool` from Debian's `prometheus` package).
///
/// # Panics
/// When it is not installed (`.ci/install-tools` installs it).
pub fn tool(name: &str) -> PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: .ci/install-tools installs it (scripts/test runs that)"
            )
        })
}

/// Credentials and region the S3 test server accepts, as environment pairs for a spawned
/// binary (moto takes any key).
pub fn s3_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID", "rps-test".into()),
        ("AWS_SECRET_ACCESS_KEY", "rps-test-secret".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

/// Creates a fresh bucket `rpst-<label>-<pid>-<nanos>` on the S3 test server at `endpoint`
/// (an unsigned `PUT /<bucket>`, which it accepts) and returns its name.
///
/// # Panics
/// When the server does not answer 200.
pub fn create_bucket(endpoint: &str, label: &str) -> String {
    use std::io::{Read, Write};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let bucket = format!(
        "rpst-{label}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000
    );
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(host).expect("S3 test server answers");
    write!(
        conn,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("request sent");
    let mut resp = String::new();
    conn.read_to_string(&mut resp).expect("response read");
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "create bucket {bucket}: {resp}"
    );
    bucket
}
