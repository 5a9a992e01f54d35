//! Golden values: feature rows of the shared real file against an independent,
//! first-principles computation written here (direct window sums, two-pass variance,
//! chrono for calendar fields), to 1e-9 relative.

use chrono::{Datelike, Timelike};
use rps_core::{Bar, Store};
use rps_features::{self as features, FeatureFrame};

use crate::support::{config, fixture_bars, put_raw};

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation (n - 1), two passes.
fn std(xs: &[f64]) -> f64 {
    let m = mean(xs);
    (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// Every feature of the row for bar `t`, by name, computed straight from the bars.
fn expected(bars: &[Bar], t: usize) -> Vec<(String, f64)> {
    let c = |i: usize| bars[i].close;
    let lr = |i: usize| (c(i) / c(i - 1)).ln();
    let closes = |w: usize| (t + 1 - w..=t).map(c).collect::<Vec<_>>();
    let logrets = |w: usize| (t + 1 - w..=t).map(lr).collect::<Vec<_>>();
    let when = chrono::DateTime::from_timestamp_millis(bars[t].ts).expect("valid time");
    let hour = when.hour() as f64;
    let dow = when.weekday().num_days_from_monday() as f64;
    let vols: Vec<f64> = (t - 167..=t)
        .map(|i| bars[i].volume.expect("volume in file"))
        .collect();
    let tau = std::f64::consts::TAU;

    let mut out = vec![
        ("lag_1".to_string(), c(t - 1)),
        ("rolling_mean_5".into(), mean(&closes(5))),
        ("hour".into(), hour),
        ("logret".into(), lr(t)),
    ];
    for k in 1..=24 {
        out.push((format!("logret_lag_{k}"), lr(t - k)));
    }
    for w in [6, 24, 168] {
        out.push((format!("logret_mean_{w}"), mean(&logrets(w))));
    }
    for w in [6, 24, 168] {
        out.push((format!("logret_std_{w}"), std(&logrets(w))));
    }
    for w in [24, 168] {
        out.push((format!("close_rel_mean_{w}"), c(t) / mean(&closes(w)) - 1.0));
    }
    out.push(("range_rel".into(), (bars[t].high - bars[t].low) / c(t)));
    out.push((
        "volume_z_168".into(),
        (vols[167] - mean(&vols)) / std(&vols),
    ));
    out.push(("hour_sin".into(), (tau * hour / 24.0).sin()));
    out.push(("hour_cos".into(), (tau * hour / 24.0).cos()));
    out.push(("dow_sin".into(), (tau * dow / 7.0).sin()));
    out.push(("dow_cos".into(), (tau * dow / 7.0).cos()));
    let pk = |i: usize| (bars[i].high / bars[i].low).ln().powi(2) / (4.0 * 2f64.ln());
    out.push(("parkinson".into(), pk(t)));
    for w in [6, 24, 168] {
        let pks: Vec<f64> = (t + 1 - w..=t).map(pk).collect();
        out.push((format!("parkinson_mean_{w}"), mean(&pks)));
    }
    out
}

/// 1e-9 relative; values that are exactly zero in theory (sin 0, an unchanged close) may
/// differ by rounding only, hence the 1e-15 absolute floor.
fn close_enough(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs() || (got - want).abs() <= 1e-15
}

fn check_rows(frame: &FeatureFrame, bars: &[Bar]) {
    let sp = features::spec();
    let warm = sp.warmup;
    let last = bars.len() - 1;
    for t in [warm, warm + 1, 1_000, 9_999, 20_000, 33_000, last - 1, last] {
        let r = t - warm;
        assert_eq!(frame.ts[r], bars[t].ts, "row {r} is bar {t}");
        assert_eq!(frame.close[r], bars[t].close);
        let exp = expected(bars, t);
        assert_eq!(exp.len(), sp.names.len(), "the test covers every feature");
        for (name, want) in exp {
            let got = frame
                .column(&name)
                .unwrap_or_else(|| panic!("no column {name}"))[r];
            assert!(
                close_enough(got, want),
                "bar {t} {name}: got {got:e}, want {want:e}"
            );
        }
        if t < last {
            let want_close = bars[t + 1].close;
            assert_eq!(frame.target_close_1h[r], want_close);
            let want_lr = (want_close / bars[t].close).ln();
            assert!(
                close_enough(frame.target_logret_1h[r], want_lr),
                "bar {t} target"
            );
        } else {
            assert!(frame.target_close_1h[r].is_nan() && frame.target_logret_1h[r].is_nan());
        }
    }
}

#[test]
fn features_of_the_shared_file_match_a_first_principles_computation() {
    let bars = fixture_bars();
    assert_eq!(bars.len(), 33_259);
    let frame = features::compute("BTC", &bars);
    assert_eq!(frame.rows_in, 33_259);
    assert_eq!(frame.dropped_warmup, 168);
    assert_eq!(frame.dropped_gap, 0);
    assert_eq!(frame.len(), 33_259 - 168);
    check_rows(&frame, &bars);
}

#[tokio::test]
async fn the_feature_file_written_by_a_run_holds_the_same_golden_values() {
    let dir = tempfile::tempdir().unwrap();
    let bars = fixture_bars();
    put_raw(dir.path(), "BTC", &bars).await;
    let summary = rps_transform::run(config(dir.path())).await.unwrap();
    assert_eq!(summary.rows_out, 33_259 - 168);
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let frame = features::read_frame(&store, "BTC")
        .await
        .unwrap()
        .expect("features/BTC.parquet");
    assert_eq!(frame.coin, "BTC");
    assert_eq!(
        (frame.rows_in, frame.dropped_warmup, frame.dropped_gap),
        (33_259, 168, 0)
    );
    check_rows(&frame, &bars);
}
