//! Times training epochs and batch-1 inference of the fused-op LSTM on synthetic data of a
//! given shape, for comparison with PyTorch (`bench/torch_lstm.py`) at the same shape.
//!
//! `cargo run --release -p rps-model --example epoch_speed -- WINDOWS STEPS INPUTS HIDDEN BATCH EPOCHS`
//! prints one JSON line. Run with `RAYON_NUM_THREADS=1` (what `rps-train` sets).

use std::time::Instant;

use rps_model::kinds::lstm::{InferenceWeights, LstmWeights, Scratch};
use rps_model::{FitConfig, Windows, fit};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let get = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (windows, steps, inputs, hidden, batch, epochs) = (
        get(0, 20_000),
        get(1, 24),
        get(2, 4),
        get(3, 64),
        get(4, 64),
        get(5, 3),
    );
    // An AR(1)-like series so the loss has something to learn.
    let rows = windows + steps;
    let mut x = vec![0f32; rows * inputs];
    let mut y = vec![0f32; rows];
    let mut state = 0.1f32;
    for r in 0..rows {
        let noise = ((r as f32 * 12.9898).sin() * 43_758.547).fract() * 2.0 - 1.0;
        state = 0.3 * state + noise;
        for k in 0..inputs {
            x[r * inputs + k] = state * (1.0 + k as f32 * 0.01);
        }
        if r > 0 {
            y[r - 1] = state;
        }
    }
    let data = Windows {
        x: &x,
        n_features: inputs,
        y: &y,
        lookback: steps,
    };
    let ends: Vec<usize> = (steps - 1..rows - 1).collect();
    let split = ends.len() * 9 / 10;
    let cfg = FitConfig {
        hidden,
        epochs,
        batch_size: batch,
        patience: epochs,
        ..FitConfig::default()
    };
    let started = Instant::now();
    let mut per_epoch = Vec::new();
    let out = fit(&data, &ends[..split], &ends[split..], &cfg, &mut |s| {
        per_epoch.push(s.seconds);
        std::ops::ControlFlow::Continue(())
    })
    .expect("training runs");
    let total = started.elapsed().as_secs_f64();

    let weights = out
        .weights
        .downcast_ref::<LstmWeights>()
        .expect("the default kind is the LSTM");
    let inf = InferenceWeights::new(weights);
    let mut scratch = Scratch::default();
    let window = &x[..steps * inputs];
    let n = 2_000;
    let t0 = Instant::now();
    let mut acc = 0f32;
    for _ in 0..n {
        acc += inf.predict(std::hint::black_box(window), &mut scratch);
    }
    let infer_us = t0.elapsed().as_secs_f64() / n as f64 * 1e6;
    let mut sorted = per_epoch.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{{\"impl\":\"candle-fused\",\"windows\":{},\"steps\":{steps},\"inputs\":{inputs},\"hidden\":{hidden},\"batch\":{batch},\"epochs\":{},\"s_per_epoch_median\":{:.3},\"s_per_epoch\":{:?},\"total_s\":{total:.2},\"val_loss\":{:.4},\"infer_us_batch1\":{infer_us:.1},\"checksum\":{acc:.3}}}",
        split,
        per_epoch.len(),
        sorted[sorted.len() / 2],
        per_epoch
            .iter()
            .map(|s| (s * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>(),
        out.best_val_loss
    );
}
