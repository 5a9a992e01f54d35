//! The serving path on feature frames computed by rps-core.

use rps_core::time::HOUR_MS;
use rps_features::{compute, spec};
use rps_model::{Forecaster, ModelError};

use crate::bars;
use crate::package::package;

fn forecaster(lookback: usize) -> (tempfile::TempDir, Forecaster) {
    let dir = tempfile::tempdir().unwrap();
    package(lookback, 8).save(dir.path()).unwrap();
    let fc = Forecaster::load(dir.path()).unwrap();
    (dir, fc)
}

#[test]
fn a_forecast_is_for_the_next_hour_with_nested_intervals_around_it() {
    let (_d, fc) = forecaster(24);
    assert_eq!(fc.min_bars(), spec().warmup + 24);
    let frame = compute("BTC", &bars(0..fc.min_bars() as i64 + 50));
    let f = fc.predict(&frame).unwrap();
    let last = frame.len() - 1;
    assert_eq!(f.based_on_ts, frame.ts[last]);
    assert_eq!(f.for_ts, frame.ts[last] + HOUR_MS);
    assert_eq!(f.last_close, frame.close[last]);
    assert!((f.close - f.last_close * f.logret.exp()).abs() < 1e-9);
    assert_eq!(f.intervals.len(), 3);
    for w in f.intervals.windows(2) {
        assert!(
            w[1].lower < w[0].lower && w[0].upper < w[1].upper,
            "{:?}",
            f.intervals
        );
    }
    assert!(
        f.intervals
            .iter()
            .all(|i| i.lower < f.close && f.close < i.upper)
    );
    // The same window through the batch path gives the same number.
    assert_eq!(fc.predict_logrets(&frame, &[last]).unwrap(), vec![f.logret]);
}

#[test]
fn exactly_min_bars_are_enough_and_one_fewer_is_refused() {
    let (_d, fc) = forecaster(24);
    let ok = compute("BTC", &bars(0..fc.min_bars() as i64));
    assert_eq!(ok.len(), 24);
    fc.predict(&ok).unwrap();
    let short = compute("BTC", &bars(0..fc.min_bars() as i64 - 1));
    match fc.predict(&short) {
        Err(ModelError::Input { reason, .. }) => {
            assert!(reason.contains("consecutive hours"), "{reason}")
        }
        other => panic!("expected an input error, got {other:?}"),
    }
}

#[test]
fn a_gap_inside_the_last_window_is_refused_not_bridged() {
    let (_d, fc) = forecaster(24);
    // 10 rows after a 3-hour hole: the last 24 rows span the hole.
    let hours: Vec<i64> = (0..400)
        .chain(403..403 + spec().warmup as i64 + 10)
        .collect();
    let frame = compute("BTC", &bars(hours));
    match fc.predict(&frame) {
        Err(ModelError::Input { reason, .. }) => {
            assert!(reason.contains("not consecutive"), "{reason}")
        }
        other => panic!("expected an input error, got {other:?}"),
    }
}

#[test]
fn the_forecast_does_not_depend_on_rows_before_the_window() {
    let (_d, fc) = forecaster(24);
    let n = fc.min_bars() as i64 + 300;
    let long = compute("BTC", &bars(0..n));
    // Same last 24 feature rows, much shorter history.
    let short_bars: Vec<_> = bars(0..n).into_iter().skip(300).collect();
    let short = compute("BTC", &short_bars);
    let (a, b) = (fc.predict(&long).unwrap(), fc.predict(&short).unwrap());
    assert_eq!((a.based_on_ts, a.last_close), (b.based_on_ts, b.last_close));
    // Rolling features may differ in the last bits with a different history length.
    assert!(
        (a.logret - b.logret).abs() < 1e-9,
        "{} vs {}",
        a.logret,
        b.logret
    );
}
