//! Criterion bench: one hour of the online calibrator as serving and the backtest run it —
//! the intervals of three levels from a 4,320-score window, then the outcome (α update,
//! the window slides) — and the volatility forecast of one feature row.
//! `cargo bench -p rps-model --bench calibrator`; bench/backtest.sh measures whole replays.

use criterion::{Criterion, criterion_group, criterion_main};
use rps_model::intervals::{CalibrationState, CalibratorParams, OnlineCalibrator, VolatilityModel};

fn bench(c: &mut Criterion) {
    // Deterministic scores with the spread of real ones (|N(0,1)|-like, 0..3.5).
    let scores: Vec<f64> = (0..4_320u32)
        .map(|i| f64::from(i.wrapping_mul(2_654_435_761) % 10_000) / 10_000.0 * 3.5)
        .collect();
    let state = CalibrationState::new(&[0.8, 0.9, 0.95], scores);
    let mut cal =
        OnlineCalibrator::new(CalibratorParams::default(), &state).expect("a valid state");
    let mut k = 0u32;
    c.bench_function("calibrator_hour_w4320", |b| {
        b.iter(|| {
            k = k.wrapping_add(1);
            let sigma = 0.006;
            let iv = cal.intervals(50_000.0, 0.0, sigma);
            let next = 50_000.0 * (sigma * (f64::from(k % 7) - 3.0) / 2.0).exp();
            std::hint::black_box(cal.observe(&iv, 50_000.0, 0.0, sigma, next))
        })
    });
    let vol = VolatilityModel::constant(0.006);
    let row = vec![1e-5; rps_features::spec().names.len()];
    c.bench_function("volatility_sigma", |b| {
        b.iter(|| vol.sigma(std::hint::black_box(&row)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
