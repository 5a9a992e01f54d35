//! Test fixtures: the shared real bars, a model package trained on them (once per test
//! binary), stores of their features, and running the binary under a process guard.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use rps_core::Bar;
use rps_core::time::fmt_ms;
use rps_features::compute;
use rps_testkit::ChildGuard;
use rps_testkit::model::{FixtureModel, Spec};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_rps-monitor");
pub const COIN: &str = "BTC";
pub const MODEL_NAME: &str = "rps-monitor-test-forecaster";

/// The fixture package (rps-testkit's, trained once per test binary).
fn fixture() -> &'static FixtureModel {
    rps_testkit::model::fixture(&Spec {
        label: "rps-monitor",
        model_name: MODEL_NAME,
        tmp_dir: env!("CARGO_TARGET_TMPDIR"),
    })
}

/// A model package trained on the shared data (once per test binary).
pub fn package() -> &'static Path {
    &fixture().package
}

/// The bars whose feature rows the fixture's reference histograms were fitted on (the
/// training split, plus the feature warm-up before it).
pub fn reference_bars() -> &'static [Bar] {
    fixture().reference_bars()
}

/// The same bars in a market whose hourly log returns (and bar ranges) are `k` times larger.
pub fn amplified(src: &[Bar], k: f64) -> Vec<Bar> {
    let mut out: Vec<Bar> = Vec::with_capacity(src.len());
    let mut close = src[0].close;
    for (i, bar) in src.iter().enumerate() {
        if i > 0 {
            close *= ((bar.close / src[i - 1].close).ln() * k).exp();
        }
        let r = |v: f64| close * (v / bar.close).powf(k);
        out.push(Bar {
            open: r(bar.open),
            high: r(bar.high),
            low: r(bar.low),
            close,
            ..bar.clone()
        });
    }
    out
}

/// A store holding `features/BTC.parquet` computed from `bars`.
pub async fn features_store(bars: &[Bar]) -> TempDir {
    let dir = TempDir::new().unwrap();
    let store = rps_core::Store::open(dir.path().to_str().unwrap()).unwrap();
    rps_features::write_frame(&store, &compute(COIN, bars))
        .await
        .unwrap();
    dir
}

/// `rps-monitor drift` on `store` against the fixture package, writing `report`; `extra`
/// flags last (a repeated flag is refused by clap, so they add, not override).
pub fn drift_cmd(
    store: &Path,
    report: &Path,
    window_hours: u32,
    end: Option<i64>,
    extra: &[&str],
) -> Output {
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
        .args(extra)
        .env_remove("MLFLOW_TRACKING_URI");
    if let Some(e) = end {
        cmd.arg("--end").arg(fmt_ms(e));
    }
    run(&mut cmd)
}

/// Runs `cmd` to completion under a [`ChildGuard`] (killed if the test panics meanwhile) and
/// collects its output.
pub fn run(cmd: &mut Command) -> Output {
    let mut guard = ChildGuard::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut err = guard.child().stderr.take().unwrap();
    let mut out = guard.child().stdout.take().unwrap();
    // Both pipes drained at once, so a chatty child cannot block on a full one.
    let stderr = std::thread::spawn(move || {
        let mut b = Vec::new();
        err.read_to_end(&mut b).unwrap();
        b
    });
    let mut stdout = Vec::new();
    out.read_to_end(&mut stdout).unwrap();
    let stderr = stderr.join().unwrap();
    Output {
        status: guard.wait(),
        stdout,
        stderr,
    }
}
