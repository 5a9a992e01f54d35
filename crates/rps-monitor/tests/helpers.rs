//! Test fixtures: the shared real bars, a model package trained on them (once per test
//! binary), stores of their features, and running the binary under a process guard.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use rps_core::Bar;
use rps_core::time::{HOUR_MS, fmt_ms};
use rps_features::compute;
use rps_testkit::ChildGuard;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_rps-monitor");
pub const COIN: &str = "BTC";
pub const MODEL_NAME: &str = "rps-monitor-test-forecaster";

/// 2019-01-01T00:00:00Z, the start of the fixture model's feature data.
const TRAIN_START: i64 = 1_546_300_800_000;
/// 2019-07-01T00:00:00Z, its end (exclusive).
const TRAIN_END: i64 = 1_561_939_200_000;

/// The fixture: a package trained by rps-train, and the first and last hour of the feature
/// rows its reference histograms were fitted on.
struct Fixture {
    package: PathBuf,
    reference: (i64, i64),
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    // Trained on its own thread and runtime: callers may be inside a tokio runtime.
    FIXTURE.get_or_init(|| {
        std::thread::spawn(train_fixture)
            .join()
            .expect("fixture training")
    })
}

/// A model package trained on the shared data (once per test binary).
pub fn package() -> &'static Path {
    &fixture().package
}

/// The bars whose feature rows the fixture's reference histograms were fitted on (the
/// training split, plus the feature warm-up before it).
pub fn reference_bars() -> &'static [Bar] {
    let (first, last) = fixture().reference;
    let at = rps_testkit::fixture::index_at;
    &rps_testkit::fixture::bars()[at(first) - rps_features::spec().warmup..=at(last)]
}

/// Trains the fixture with rps-train's library on the first half of 2019, tiny configuration.
fn train_fixture() -> Fixture {
    use rps_features::{spec, write_frame};
    // Kept for the whole test process, under target/tmp.
    let dir = tempfile::Builder::new()
        .prefix("rps-monitor-fixture-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
        .keep();
    let at = rps_testkit::fixture::index_at;
    let bars = rps_testkit::fixture::bars();
    let frame = compute(COIN, &bars[at(TRAIN_START) - spec().warmup..at(TRAIN_END)]);
    let lookback = 24;
    let cfg = rps_train::Config {
        store: dir.join("store").to_str().unwrap().into(),
        coins: vec![COIN.into()],
        registry: dir.join("registry"),
        model_name: MODEL_NAME.into(),
        experiment: "rps-monitor-tests".into(),
        run_name: Some("fixture".into()),
        model_kind: rps_model::kinds::DEFAULT.into(),
        epochs: 2,
        hidden: 8,
        lookback,
        batch_size: 64,
        lr: 3e-3,
        weight_decay: 1e-2,
        patience: 5,
        seed: 7,
        max_train_rows: None,
        split: rps_train::data::SplitFractions {
            train: 0.7,
            val: 0.1,
            calib: 0.1,
        },
        levels: vec![0.8, 0.95],
        metrics: None,
        package_out: Some(dir.join("model")),
        report_dir: dir.join("reports"),
        profile: None,
        force_promote: true,
        walk_forward: 0,
        min_gate_rows: 168,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let summary = rt.block_on(async {
        let store = rps_core::Store::open(&cfg.store).unwrap();
        write_frame(&store, &frame).await.unwrap();
        rps_train::run(&cfg)
            .await
            .expect("rps-train trains the fixture")
    });
    let split = &summary.evaluation.splits["1_train"];
    let ms = |s: &str| rps_core::time::parse_utc(s).unwrap().timestamp_millis();
    let first = ms(&split.start) - (lookback as i64 - 1) * HOUR_MS;
    Fixture {
        package: dir.join("model"),
        reference: (first, ms(&split.end)),
    }
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
