//! Helpers shared by the integration tests: finding the MLflow server, unique names, a
//! small model package with a nested directory, and tree comparison.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rps_mlflow::{MlflowClient, RetryPolicy};

/// A name no other test (or earlier run against the shared server) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// A policy that gives up fast, for a server that is down.
pub fn short_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
        request_timeout: Duration::from_secs(30),
        transfer_timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(2),
    }
}

pub fn client(uri: &str) -> MlflowClient {
    MlflowClient::with_retry(uri, short_retry(3)).unwrap()
}

/// Writes a model-package-like directory: binary weights, JSON metadata, an MLmodel file, a
/// name with a space and a nested directory. Returns its path.
pub fn make_package(root: &Path) -> PathBuf {
    let dir = root.join("package");
    std::fs::create_dir_all(dir.join("extra/sub")).unwrap();
    let weights: Vec<u8> = (0..200_003u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    std::fs::write(
        dir.join("metadata.json"),
        br#"{"name":"rps-forecaster","kind":"lstm","lookback":48}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("MLmodel"),
        "artifact_path: model\nflavors:\n  rps:\n    kind: lstm\n",
    )
    .unwrap();
    std::fs::write(dir.join("extra/sub/notes v1.txt"), "nested file\n").unwrap();
    std::fs::write(
        dir.join("extra/scaler.json"),
        br#"{"mean":[0.1],"std":[1.2]}"#,
    )
    .unwrap();
    dir
}

/// Every file under `dir` (relative path -> bytes), optionally ignoring one top-level name.
pub fn tree(dir: &Path, ignore: Option<&str>) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    if let Some(i) = ignore {
        out.remove(i);
    }
    out
}

/// A port nothing listens on: bind an ephemeral port and close it again.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
