//! Fixtures: raw stores written with rps-core, and a runner for the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use rps_core::time::{HOUR_MS, parse_utc};
use rps_core::{Bar, Source, Store};
use rps_validate::Report;

/// Opens a local store in `dir`.
pub fn store(dir: &Path) -> Store {
    Store::open(dir.to_str().unwrap()).unwrap()
}

/// Runs a future to completion (the fixtures are written through the async store).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Milliseconds of an RFC 3339 time.
pub fn ms(s: &str) -> i64 {
    parse_utc(s).unwrap().timestamp_millis()
}

/// `n` consistent hourly bars of `coin` from `start`: a deterministic random walk with
/// ~0.8% hourly moves, OHLC consistent, USD volume = price × 50..150 coins, a market cap.
pub fn bars(coin: &str, start: &str, n: usize) -> Vec<Bar> {
    let t0 = ms(start);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut uniform = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut close = 30_000.0;
    (0..n)
        .map(|i| {
            let open = close;
            close = open * (0.016 * (uniform() - 0.5)).exp();
            Bar {
                ts: t0 + i as i64 * HOUR_MS,
                coin: coin.to_string(),
                open,
                high: open.max(close) * 1.002,
                low: open.min(close) * 0.998,
                close,
                volume: Some(close * (50.0 + 100.0 * uniform())),
                cap: Some(close * 19.0e6),
                points: 0,
                source: Source::Synthetic,
                ingested_at: 0,
            }
        })
        .collect()
}

/// Writes `bars` as the raw file of `coin` with rps-core.
pub fn write(dir: &Path, coin: &str, bars: &[Bar]) {
    block_on(rps_core::parquet_io::write_bars(&store(dir), coin, bars)).unwrap();
}

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub report: Option<Report>,
}

impl Outcome {
    /// The `error: ...` line the binary printed.
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or("")
    }
}

/// Runs `rps-validate --store <store> --report <tmp>/report.json <args>` with no `RPS_*`
/// variables inherited, and reads the report back if one was written.
pub fn validate(store: &Path, args: &[&str]) -> Outcome {
    let out_dir = tempfile::tempdir().unwrap();
    let report_path: PathBuf = out_dir.path().join("reports/validation.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rps-validate"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RPS_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .arg("--store")
        .arg(store)
        .arg("--report")
        .arg(&report_path)
        .args(args)
        .output()
        .unwrap();
    let report = std::fs::read(&report_path)
        .ok()
        .map(|b| serde_json::from_slice::<Report>(&b).unwrap());
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report,
    }
}
