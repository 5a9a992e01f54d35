//! `rps-monitor drift`, the DAG's drift check: exit 0 on the model's own training data, 3 on
//! a shifted market, 2 on missing input, with its JSON report (moved here from rps-serve's
//! tests with the command).

use rps_core::time::{HOUR_MS, fmt_ms};
use rps_features::spec;
use serde_json::Value;
use tempfile::TempDir;

use crate::helpers::*;

fn read_report(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
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
    let out = drift_cmd(store.path(), &report, rows, None, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = read_report(&report);
    assert_eq!(r["drift"], false, "{r}");
    assert!(r["max_psi"].as_f64().unwrap() < 0.01, "{r}");
    assert_eq!(r["coins"][0]["window_end"], fmt_ms(newest));
    assert_eq!(r["coins"][0]["rows"], rows);
    assert_eq!(r["model_name"], MODEL_NAME);
    assert!(
        r["model_source"].as_str().unwrap().starts_with("dir:"),
        "{r}"
    );
    assert!(stdout.contains("no drift"), "{stdout}");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["drift.json"], "no temp file beside the report");

    // --end bounds the window (exclusive, like Airflow's data interval end).
    let out = drift_cmd(store.path(), &report, 200, Some(newest - 99 * HOUR_MS), &[]);
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = read_report(&report);
    assert_eq!(r["coins"][0]["window_end"], fmt_ms(newest - 100 * HOUR_MS));
    assert_eq!(r["coins"][0]["rows"], 200);
    // The package calibrates 200-hour windows (its 168-hour spread): no feature is skipped,
    // and the slow ones are held to their own, higher limit.
    let c = &r["coins"][0];
    assert_eq!(c["skipped"], serde_json::json!([]), "{r}");
    assert!(c["limits"]["logret_std_168"].as_f64().unwrap() > 1.0, "{r}");
    assert_eq!(c["limits"]["hour_sin"], 0.2, "{r}");

    // The DAG's default: the last week of the training period is not drift, although its
    // rolling features sit far from the whole training distribution.
    let out = drift_cmd(store.path(), &report, 168, None, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r = read_report(&report);
    assert!(r["max_psi"].as_f64().unwrap() > 1.0, "{r}");
    assert_eq!(r["coins"][0]["drifted"], serde_json::json!([]), "{r}");

    // The same hours in a three times more volatile market: drift, exit 3.
    let store = features_store(&amplified(reference, 3.0)).await;
    let out = drift_cmd(store.path(), &report, rows, None, &[]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = read_report(&report);
    assert_eq!(r["drift"], true);
    assert!(r["max_psi"].as_f64().unwrap() > 0.2);
    assert!(r["max_at"].as_str().unwrap().starts_with("BTC/"));
    // And its last week alone: drift too.
    let out = drift_cmd(store.path(), &report, 168, None, &[]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("DRIFT (psi_share fired), retrain"),
        "{stdout}"
    );
    let r = read_report(&report);
    assert!(
        r["coins"][0]["drifted_share"].as_f64().unwrap() >= 0.5,
        "{r}"
    );
}

/// Bars whose high/low ranges are `k` times narrower in log terms, closes unchanged: the
/// market moves as much as before but looks calm to the range-based volatility forecast.
fn narrowed_ranges(src: &[rps_core::Bar], k: f64) -> Vec<rps_core::Bar> {
    src.iter()
        .map(|b| rps_core::Bar {
            high: b.close * (b.high / b.close).powf(k),
            low: b.close * (b.low / b.close).powf(k),
            open: b.close,
            ..b.clone()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intervals_that_stop_covering_fire_the_coverage_and_page_hinkley_signals_without_psi() {
    let tmp = TempDir::new().unwrap();
    let report = tmp.path().join("drift.json");
    // The training bars themselves: no signal fires.
    let store = features_store(reference_bars()).await;
    let out = drift_cmd(store.path(), &report, 168, None, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r = read_report(&report);
    assert_eq!(r["fired"], serde_json::json!([]), "{r}");
    let c = &r["coins"][0]["errors"];
    assert!(c["scored_hours"].as_u64().unwrap() >= 160, "{c}");
    assert!(c["coverage"]["0.8"].as_f64().unwrap() > 0.6, "{c}");
    // The last week's ranges ten times narrower: σ̂ collapses, the intervals (calibrated on
    // the months before) stop covering, errors in σ̂ units grow. One feature's PSI
    // (range_rel) moves, far from the share needed.
    let mut bars = reference_bars().to_vec();
    let week = bars.len() - 168;
    let narrow = narrowed_ranges(&bars[week..], 0.1);
    bars.splice(week.., narrow);
    let store = features_store(&bars).await;
    // ACI wins much of the coverage back within the week (about 0.88 at 95 %): the floor is
    // set for the 95 % level checked here.
    let out = drift_cmd(
        store.path(),
        &report,
        168,
        None,
        &["--coverage-floor", "0.9"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    let r = read_report(&report);
    assert_eq!(
        r["fired"],
        serde_json::json!(["page_hinkley", "coverage"]),
        "{r}"
    );
    assert_eq!(
        r["coins"][0]["drift"], false,
        "PSI alone sees no drift: {r}"
    );
    let e = &r["coins"][0]["errors"];
    assert!(e["coverage_breach"].as_bool().unwrap(), "{e}");
    // The fixture's levels are 0.8 and 0.95: the one nearest 0.9 is checked.
    assert_eq!(e["coverage_level"], 0.95, "{e}");
    assert!(e["coverage"]["0.95"].as_f64().unwrap() < 0.9, "{e}");
    assert!(e["coverage"]["0.8"].as_f64().unwrap() < 0.7, "{e}");
    assert!(e["page_hinkley_alarm"].as_bool().unwrap(), "{e}");
    assert!(
        stdout.contains("DRIFT (page_hinkley, coverage fired)"),
        "{stdout}"
    );
}

#[test]
fn the_drift_command_refuses_a_missing_features_file_with_exit_2() {
    let tmp = TempDir::new().unwrap();
    let report = tmp.path().join("drift.json");
    let out = drift_cmd(tmp.path(), &report, 168, None, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("features/BTC.parquet") && err.contains("rps-transform"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    assert!(!report.exists(), "no report for a failed check");
}
