//! Evaluation honesty on the shared real data: baselines on the same rows, an independently
//! recomputed persistence RMSE, interval coverage, and the written reports.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::support::{feature_store, metrics, ok, short_args, train, with};

/// One training run shared by the evaluation tests (they only read its outputs).
fn run() -> &'static (PathBuf, serde_json::Value, serde_json::Value) {
    static RUN: OnceLock<(PathBuf, serde_json::Value, serde_json::Value)> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = tempfile::Builder::new()
            .prefix("rps-train-eval")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
        // The report of this model, not of a persistence champion replacing it.
        let args = with(
            short_args(feature_store(), &out),
            &["--no-persistence-champion"],
        );
        ok(&train(&args, None, &[]));
        let ev: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("reports/evaluation.json")).unwrap(),
        )
        .unwrap();
        let m = metrics(&out);
        (out, ev, m)
    })
}

fn parse_ts(s: &str) -> i64 {
    rps_core::time::parse_utc(s).unwrap().timestamp_millis()
}

#[test]
fn persistence_rmse_on_the_test_split_matches_an_independent_computation() {
    let (_, ev, m) = run();
    let test = &ev["splits"]["4_test"];
    let (start, end) = (
        parse_ts(test["start"].as_str().unwrap()),
        parse_ts(test["end"].as_str().unwrap()),
    );
    // Straight from the CSV: next close vs this close for every test hour.
    let close: HashMap<i64, f64> = rps_testkit::fixture::bars()
        .iter()
        .map(|b| (b.ts, b.close))
        .collect();
    let hour = 3_600_000;
    let (mut se, mut n) = (0.0, 0usize);
    let mut t = start;
    while t <= end {
        let d = close[&(t + hour)] - close[&t];
        se += d * d;
        n += 1;
        t += hour;
    }
    let expected = (se / n as f64).sqrt();
    let reported = m["test"]["persistence"]["rmse"].as_f64().unwrap();
    // Walk-forward is off by default: no section, no extra trainings.
    assert!(m.get("walk_forward").is_none());
    assert_eq!(
        n as u64,
        test["windows"].as_u64().unwrap(),
        "the shared file has no gaps: one window per hour"
    );
    assert!(
        (reported - expected).abs() < 1e-6 * expected,
        "reported {reported}, independent {expected}"
    );
    assert!(
        reported > 50.0,
        "a real BTC hourly persistence error is tens to hundreds of USD"
    );
}

#[test]
fn model_and_baselines_are_scored_on_the_same_rows_with_skill_against_persistence() {
    let (_, _, m) = run();
    let t = &m["test"];
    let rows = t["model"]["rows"].as_u64().unwrap();
    assert!(rows > 1000);
    assert_eq!(t["persistence"]["rows"].as_u64(), Some(rows));
    assert_eq!(t["rolling_mean_5"]["rows"].as_u64(), Some(rows));
    let (rm, rp) = (
        t["model"]["rmse"].as_f64().unwrap(),
        t["persistence"]["rmse"].as_f64().unwrap(),
    );
    let skill = t["model"]["skill"].as_f64().unwrap();
    assert!((skill - (1.0 - rm / rp)).abs() < 1e-9);
    // Persistence never predicts a move, so it has no directional accuracy.
    assert!(t["persistence"]["directional_accuracy"].is_null());
    // The seed-style rolling mean lags the price: worse than persistence on hourly BTC.
    assert!(t["rolling_mean_5"]["rmse"].as_f64().unwrap() > rp);
}

#[test]
fn the_90_percent_interval_covers_80_to_98_percent_of_test_hours_and_widths_grow_with_level() {
    let (_, _, m) = run();
    let iv = &m["intervals"];
    let cov = iv["90"]["coverage"].as_f64().unwrap();
    assert!(
        (0.80..=0.98).contains(&cov),
        "90% interval coverage on test: {cov}"
    );
    // The interval score is the width plus the penalty of every miss; a month-long window
    // never covers more than the whole test split's best case.
    let (score, width) = (
        iv["90"]["interval_score_usd"].as_f64().unwrap(),
        iv["90"]["mean_width_usd"].as_f64().unwrap(),
    );
    assert!(score > width, "score {score} vs width {width}");
    let rows = m["test_windows"].as_u64().unwrap();
    if rows >= 720 {
        let worst = iv["90"]["worst_720h_coverage"].as_f64().unwrap();
        assert!(worst <= cov && worst > 0.0, "worst {worst} vs {cov}");
    }
    assert!(iv["90"]["longest_miss_run_hours"].as_u64().unwrap() >= 1);
    let w: Vec<f64> = ["80", "90", "95"]
        .iter()
        .map(|l| iv[*l]["mean_width_usd"].as_f64().unwrap())
        .collect();
    assert!(w[0] < w[1] && w[1] < w[2], "widths {w:?}");
}

#[test]
fn the_report_plots_and_learning_curve_are_written() {
    let (out, ev, _) = run();
    let html = std::fs::read_to_string(out.join("reports/evaluation.html")).unwrap();
    assert!(
        html.contains("persistence") && html.matches("<svg").count() == 3,
        "self-contained HTML with 3 plots"
    );
    for f in ["learning_curve.svg", "predictions.svg", "coverage.svg"] {
        let svg = std::fs::read_to_string(out.join("reports").join(f)).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("polyline"),
            "{f} has drawn lines"
        );
    }
    let history = ev["training"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 4, "4 epochs (patience 5 never triggers)");
    assert!(
        history
            .iter()
            .all(|h| h["train_loss"].as_f64().unwrap().is_finite())
    );
}
