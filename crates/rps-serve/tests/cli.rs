//! The `rps-serve` binary: the `drift` command the DAG runs (exit 0, 3 on drift, 2 on bad
//! input, JSON report) and the start-up message of `serve`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use rps_core::Bar;
use rps_core::features::{compute, spec};
use rps_core::time::{HOUR_MS, fmt_ms};
use serde_json::Value;
use tempfile::TempDir;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_rps-serve");

/// A store holding `features/BTC.parquet` computed from `bars`.
async fn features_store(bars: &[Bar]) -> TempDir {
    let dir = TempDir::new().unwrap();
    let store = rps_core::Store::open(dir.path().to_str().unwrap()).unwrap();
    rps_core::features::write_frame(&store, &compute(COIN, bars))
        .await
        .unwrap();
    dir
}

fn drift_cmd(
    store: &Path,
    report: &Path,
    window_hours: u32,
    end: Option<i64>,
) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["drift", "--coins", "BTC", "--threshold", "0.2"])
        .arg("--store")
        .arg(store)
        .arg("--model-dir")
        .arg(package())
        .arg("--window-hours")
        .arg(window_hours.to_string())
        .arg("--report")
        .arg(report)
        .env_remove("MLFLOW_TRACKING_URI");
    if let Some(e) = end {
        cmd.arg("--end").arg(fmt_ms(e));
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drift_command_exits_0_on_training_data_and_3_on_shifted_data_with_a_report() {
    let reference = reference_bars();
    let rows = (reference.len() - spec().warmup) as u32;
    let newest = reference.last().unwrap().ts;
    let tmp = TempDir::new().unwrap();
    let report = tmp.path().join("reports/drift.json");

    // The rows the model's reference was fitted on: no drift.
    let store = features_store(reference).await;
    let out = drift_cmd(store.path(), &report, rows, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["drift"], false, "{r}");
    assert!(r["max_psi"].as_f64().unwrap() < 0.01, "{r}");
    assert_eq!(r["coins"][0]["window_end"], fmt_ms(newest));
    assert_eq!(r["coins"][0]["rows"], rows);
    assert_eq!(r["model_name"], MODEL_NAME);
    assert!(stdout.contains("no drift"), "{stdout}");

    // --end bounds the window (exclusive, like Airflow's data interval end).
    let out = drift_cmd(store.path(), &report, 200, Some(newest - 99 * HOUR_MS));
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["coins"][0]["window_end"], fmt_ms(newest - 100 * HOUR_MS));
    assert_eq!(r["coins"][0]["rows"], 200);
    // A 200-hour window leaves out the features smoothed over more than 50 hours.
    let skipped: Vec<&str> = r["coins"][0]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        skipped.contains(&"logret_std_168") && !skipped.contains(&"logret_std_24"),
        "{skipped:?}"
    );

    // The same hours in a three times more volatile market: drift, exit 3.
    let mut shifted: Vec<Bar> = Vec::new();
    let mut close = reference[0].close;
    for (i, bar) in reference.iter().enumerate() {
        if i > 0 {
            close *= ((bar.close / reference[i - 1].close).ln() * 3.0).exp();
        }
        let r = |v: f64| close * (v / bar.close).powf(3.0);
        shifted.push(Bar {
            open: r(bar.open),
            high: r(bar.high),
            low: r(bar.low),
            close,
            ..bar.clone()
        });
    }
    let store = features_store(&shifted).await;
    let out = drift_cmd(store.path(), &report, rows, None);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["drift"], true);
    assert!(r["max_psi"].as_f64().unwrap() > 0.2);
    assert!(r["max_at"].as_str().unwrap().starts_with("BTC/"));
}

#[test]
fn the_drift_command_refuses_a_missing_features_file_with_exit_2() {
    let tmp = TempDir::new().unwrap();
    let report = tmp.path().join("drift.json");
    let out = drift_cmd(tmp.path(), &report, 168, None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("features/BTC.parquet") && err.contains("rps-transform"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    assert!(!report.exists(), "no report for a failed check");
}

#[test]
fn serve_prints_the_page_url_and_a_curl_example_then_stops_on_sigterm() {
    let tmp = TempDir::new().unwrap();
    let pkg = package().to_str().unwrap().to_string();
    let (mut child, base, text) = start_serve(
        &["--model-dir", &pkg, "--store", tmp.path().to_str().unwrap()],
        &[],
    );
    assert!(
        text.contains(&format!("curl -s -X POST {base}/predict")),
        "{text}"
    );
    let page = http::blocking_get(&format!("{base}/"));
    assert!(page.contains(MODEL_NAME), "the printed URL serves the page");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a clean shutdown on SIGTERM");
}

/// Starts `rps-serve serve` with `args` and `env`; returns the child, the base URL read from
/// its start-up message, and the message.
fn start_serve(args: &[&str], env: &[(&str, &str)]) -> (std::process::Child, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--addr", "127.0.0.1:0"])
        .args(args)
        .env_remove("MLFLOW_TRACKING_URI");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut text = String::new();
    for _ in 0..4 {
        text.push_str(&lines.next().unwrap().unwrap());
        text.push('\n');
    }
    // Keep reading (and the pipe open) for the life of the server.
    std::thread::spawn(move || lines.for_each(drop));
    let url = text
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:") && w.ends_with('/'))
        .unwrap_or_else(|| panic!("no page URL in:\n{text}"))
        .trim_end_matches('/')
        .to_string();
    (child, url, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_loads_the_champion_from_mlflow_and_follows_its_alias() {
    let Some(uri) = rps_core::testenv::mlflow_uri() else {
        return;
    };
    let reg = rps_mlflow::Registry::Mlflow(rps_mlflow::MlflowRegistry::new(
        rps_mlflow::MlflowClient::new(&uri).unwrap(),
    ));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("rps-serve-test-{}-{nanos}", std::process::id());
    let v1 = crate::reload::promote_as(&reg, &name, package()).await;
    let store = TempDir::new().unwrap();
    let (mut child, base, _) = start_serve(
        &[
            "--model-name",
            &name,
            "--poll-interval",
            "200ms",
            "--store",
            store.path().to_str().unwrap(),
        ],
        &[("MLFLOW_TRACKING_URI", &uri)],
    );
    let client = ::reqwest::Client::new();
    let model = |client: &::reqwest::Client| {
        let url = format!("{base}/model");
        let client = client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let m = model(&client).await;
    assert_eq!(m["version"], v1.as_str());
    assert_eq!(m["source"], format!("models:/{name}@champion"));

    let tmp = TempDir::new().unwrap();
    let v2 = crate::reload::promote_as(&reg, &name, &copy_package(&tmp.path().join("model"))).await;
    let followed = eventually(60, || async {
        model(&client).await["version"] == v2.as_str()
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        followed,
        "the server follows models:/{name}@champion to version {v2}"
    );
}

mod http {
    /// A tiny blocking GET (the test is synchronous; reqwest's blocking client is not enabled).
    pub fn blocking_get(url: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
    }
}
