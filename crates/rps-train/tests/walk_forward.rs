//! Walk-forward evaluation on the shared real data: folds are disjoint, in time order and
//! expanding, each fold's persistence RMSE matches an independent computation from the CSV,
//! and the folds reach the metrics file, the HTML report and the tracked metrics.

use std::collections::HashMap;

use crate::support::{feature_store, metrics, ok, short_args, train};

fn parse_ts(s: &str) -> i64 {
    rps_core::time::parse_utc(s).unwrap().timestamp_millis()
}

#[test]
fn two_folds_are_chronological_disjoint_and_scored_honestly() {
    let out = tempfile::Builder::new()
        .prefix("rps-train-walk")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let mut args = short_args(feature_store(), out.path());
    // One epoch per fit keeps the three trainings (main run + 2 folds) short.
    let epochs = args.iter().position(|a| a == "--epochs").unwrap();
    args[epochs + 1] = "1".into();
    args.extend(["--walk-forward".to_string(), "2".to_string()]);
    ok(&train(&args, None, &[]));

    let m = metrics(out.path());
    let wf = &m["walk_forward"];
    let folds = wf["folds"].as_array().unwrap();
    assert_eq!(folds.len(), 2);
    let close: HashMap<i64, f64> = rps_testkit::fixture::bars()
        .iter()
        .map(|b| (b.ts, b.close))
        .collect();
    let hour = 3_600_000;
    let mut previous_test_end = i64::MIN;
    let mut sum_rmse = 0.0;
    for (k, f) in folds.iter().enumerate() {
        assert_eq!(f["fold"].as_u64().unwrap(), k as u64 + 1);
        let t = |key: &str| parse_ts(f[key].as_str().unwrap());
        let (train_start, train_end) = (t("train_start"), t("train_end"));
        let (test_start, test_end) = (t("test_start"), t("test_end"));
        assert!(train_start <= train_end && train_end < test_start && test_start <= test_end);
        assert!(
            test_start > previous_test_end,
            "fold {} test block overlaps the previous one",
            k + 1
        );
        previous_test_end = test_end;
        // Persistence straight from the CSV over the fold's test hours.
        let (mut se, mut n) = (0.0, 0usize);
        let mut h = test_start;
        while h <= test_end {
            let d = close[&(h + hour)] - close[&h];
            se += d * d;
            n += 1;
            h += hour;
        }
        assert_eq!(n as u64, f["test_windows"].as_u64().unwrap());
        let expected = (se / n as f64).sqrt();
        let reported = f["persistence"]["rmse"].as_f64().unwrap();
        assert!(
            (reported - expected).abs() < 1e-6 * expected,
            "fold {}: reported {reported}, independent {expected}",
            k + 1
        );
        let model = f["model"]["rmse"].as_f64().unwrap();
        assert!(model.is_finite() && model > 0.0);
        assert_eq!(f["model"]["rows"], f["test_windows"]);
        sum_rmse += model;
    }
    // The second fold trains on more history than the first (expanding window).
    assert!(folds[1]["train_windows"].as_u64() >= folds[0]["train_windows"].as_u64());
    let mean = wf["mean_rmse"].as_f64().unwrap();
    assert!((mean - sum_rmse / 2.0).abs() < 1e-9 * mean);

    let html = std::fs::read_to_string(out.path().join("reports/evaluation.html")).unwrap();
    assert!(html.contains("Walk-forward (2 expanding-window folds)"));
    // Tracked as run metrics (the local registry appends them to the run's metrics.jsonl).
    let tracked = find_files(&out.path().join("registry"), "metrics.jsonl")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<String>();
    for key in [
        "fold_1_rmse",
        "fold_2_persistence_rmse",
        "walk_forward_mean_skill",
    ] {
        assert!(tracked.contains(&format!("\"{key}\"")), "{key} not tracked");
    }
}

fn find_files(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(find_files(&path, name));
        } else if path.file_name().is_some_and(|n| n == name) {
            found.push(path);
        }
    }
    found
}
