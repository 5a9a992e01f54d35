//! Times batch-1 inference (`InferenceWeights::predict`) at the serving shape.
//! `cargo run --release -p rps-model --example infer_speed -- STEPS INPUTS HIDDEN`
use std::time::Instant;

use rps_model::kinds::lstm::{InferenceWeights, LstmWeights, Scratch};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let get = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (steps, inputs, hidden) = (get(0, 48), get(1, 39), get(2, 64));
    let w = LstmWeights::init(inputs, hidden, 7);
    let inf = InferenceWeights::new(&w);
    let window: Vec<f32> = (0..steps * inputs)
        .map(|i| (i as f32 * 0.37).sin())
        .collect();
    let mut scratch = Scratch::default();
    let mut acc = 0f32;
    for _ in 0..200 {
        acc += inf.predict(&window, &mut scratch);
    }
    // The fastest of 20 rounds: on a shared machine the minimum is the stable figure.
    let n = 1_000;
    let mut best = f64::INFINITY;
    for _ in 0..20 {
        let t0 = Instant::now();
        for _ in 0..n {
            acc += inf.predict(std::hint::black_box(&window), &mut scratch);
        }
        best = best.min(t0.elapsed().as_secs_f64() / n as f64 * 1e6);
    }
    println!(
        "steps {steps} inputs {inputs} hidden {hidden}: {best:.1} us per window, fastest of 20 rounds of {n} (checksum {acc:.4})"
    );
}
