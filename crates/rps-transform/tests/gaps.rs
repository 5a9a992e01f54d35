//! Gap handling: no feature row's window spans a missing hour, and every dropped row is
//! counted exactly once, as gap or warm-up.

use rps_core::Store;
use rps_core::time::HOUR_MS;
use rps_features as features;

use crate::support::{bars_at, config, fixture_bars, put_raw};

#[tokio::test]
async fn a_three_hour_hole_drops_exactly_the_rows_whose_window_spans_it() {
    let dir = tempfile::tempdir().unwrap();
    // Hours 0..=199, then 200, 201, 202 are missing, then 203..=402.
    let bars = bars_at("BTC", (0..200).chain(203..403));
    let t0 = bars[0].ts;
    put_raw(dir.path(), "BTC", &bars).await;
    let s = rps_transform::run(config(dir.path())).await.unwrap();
    let c = &s.coins["BTC"];
    assert_eq!(c.rows_in, 400);
    assert_eq!(c.dropped_warmup, 168);
    assert_eq!(
        c.dropped_gap, 168,
        "the 168 bars after the hole cannot see a full window"
    );
    assert_eq!(c.rows_out, 400 - 168 - 168);
    assert_eq!((c.gaps, c.missing_hours), (1, 3));

    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let f = features::read_frame(&store, "BTC").await.unwrap().unwrap();
    assert_eq!(f.len(), 64);
    let warm = features::spec().warmup as i64;
    let (hole_start, hole_end) = (t0 + 200 * HOUR_MS, t0 + 202 * HOUR_MS);
    for (i, &ts) in f.ts.iter().enumerate() {
        let window_start = ts - warm * HOUR_MS;
        assert!(
            ts < hole_start || window_start > hole_end,
            "row {i} spans the hole"
        );
    }
    // The last hour before the hole has no next hour: its targets are missing, not faked.
    let before =
        f.ts.iter()
            .position(|&t| t == t0 + 199 * HOUR_MS)
            .expect("hour 199 row");
    assert!(f.target_close_1h[before].is_nan() && f.target_logret_1h[before].is_nan());
    assert!(f.target_close_1h[before - 1].is_finite());
    // First row after the hole: hour 203 + 168.
    assert_eq!(f.ts[before + 1], t0 + (203 + 168) * HOUR_MS);
}

#[test]
fn a_hole_in_the_real_file_costs_exactly_one_warmup_of_rows() {
    let mut bars = fixture_bars();
    bars.drain(10_000..10_003);
    let f = features::compute("BTC", &bars);
    assert_eq!(f.dropped_gap, 168);
    assert_eq!(f.dropped_warmup, 168);
    assert_eq!(f.len(), 33_256 - 336);
    assert_eq!(f.rows_in, f.len() + f.dropped_gap + f.dropped_warmup);
}

#[test]
fn two_holes_closer_than_a_window_drop_the_whole_run_between_them() {
    // Runs: 0..300 (300 bars), 303..350 (47 bars, shorter than the warm-up), 352..600.
    let bars = bars_at("BTC", (0..300).chain(303..350).chain(352..600));
    let f = features::compute("BTC", &bars);
    assert_eq!(f.dropped_warmup, 168);
    assert_eq!(f.dropped_gap, 47 + 168);
    assert_eq!(f.len(), (300 - 168) + (248 - 168));
}

#[test]
fn unusable_prices_and_duplicate_hours_break_the_series_like_gaps() {
    let mut bars = bars_at("BTC", 0..600);
    bars[250].close = f64::NAN;
    let f = features::compute("BTC", &bars);
    // The NaN bar itself, then the first 168 bars after it.
    assert_eq!(f.dropped_gap, 1 + 168);
    assert_eq!(f.len(), (250 - 168) + (349 - 168));
    assert!(f.values.iter().all(|v| v.is_finite()));

    // Hour 300 twice: the run restarts at the duplicate (100 bars, all short of a window).
    let mut dup = bars_at("BTC", 0..400);
    let copy = dup[300].clone();
    dup.insert(301, copy);
    let f = features::compute("BTC", &dup);
    assert_eq!(
        (f.rows_in, f.dropped_warmup, f.dropped_gap),
        (401, 168, 100)
    );
    assert_eq!(f.len(), 301 - 168);
    assert!(f.ts.windows(2).all(|w| w[1] > w[0]));
}
