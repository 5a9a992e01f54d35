//! Test fixtures: the real-data fixture turned into a feature store (once per test
//! process), and running the real `rps-train` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use rps_core::Store;

/// A local store holding `features/BTC.parquet` computed from the real-data fixture; built once and
/// shared by every test of the process (read-only for them).
pub fn feature_store() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("rps-train-store")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
        let frame = rps_features::compute("BTC", rps_testkit::fixture::bars());
        assert!(
            frame.len() > 30_000,
            "features from the shared file: {} rows",
            frame.len()
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = Store::open(dir.to_str().unwrap()).unwrap();
            rps_features::write_frame(&store, &frame).await.unwrap();
        });
        dir
    })
}

/// A short training configuration (a few seconds of training on the shared data).
/// `args` with `more` appended.
pub fn with(mut args: Vec<String>, more: &[&str]) -> Vec<String> {
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

pub fn short_args(store: &Path, out: &Path) -> Vec<String> {
    [
        "--store",
        store.to_str().unwrap(),
        "--registry",
        out.join("registry").to_str().unwrap(),
        "--report-dir",
        out.join("reports").to_str().unwrap(),
        "--metrics",
        out.join("metrics.json").to_str().unwrap(),
        "--package-out",
        out.join("package").to_str().unwrap(),
        "--epochs",
        "4",
        "--hidden",
        "16",
        "--lookback",
        "24",
        "--batch-size",
        "64",
        "--lr",
        "0.003",
        "--max-train-rows",
        "4000",
        "--seed",
        "7",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs `rps-train` with `args`; `mlflow` sets MLFLOW_TRACKING_URI (else it is removed so the
/// local registry is used).
pub fn train(args: &[String], mlflow: Option<&str>, extra_env: &[(&str, &str)]) -> Output {
    command(args, mlflow, extra_env)
        .output()
        .expect("rps-train runs")
}

/// The `rps-train` command [`train`] runs, to spawn it instead (under a
/// `rps_testkit::process::ChildGuard`).
pub fn command(args: &[String], mlflow: Option<&str>, extra_env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rps-train"));
    cmd.args(args)
        .env_remove("MLFLOW_TRACKING_URI")
        .env("RUST_LOG", "info");
    for v in [
        "RPS_STORE",
        "RPS_REGISTRY",
        "RPS_MODEL_NAME",
        "RPS_EXPERIMENT",
        "RPS_COINS",
    ] {
        cmd.env_remove(v);
    }
    if let Some(uri) = mlflow {
        cmd.env("MLFLOW_TRACKING_URI", uri);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd
}

/// Asserts success and returns stdout, printing both streams on failure.
pub fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "rps-train failed ({:?})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The metrics JSON a run wrote.
pub fn metrics(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("metrics.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}
