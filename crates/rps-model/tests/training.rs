//! Training behaviour: gradients are right (it reaches the best achievable error on a series
//! with a known signal) and training is reproducible.

use std::ops::ControlFlow;

use rps_model::{FitConfig, Windows, fit, predict_windows};

/// An AR(1) series y_t = 0.3·y_{t-1} + e_t (e uniform): the best one-step predictor has
/// MSE var(e) = 0.91·var(y), so a standardised MSE of 0.91 is the floor and 1.0 is the
/// "predict the mean" baseline.
fn ar_series(n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut y = vec![0f32; n];
    let mut s = 0f32;
    for (t, v) in y.iter_mut().enumerate() {
        let e = ((t as f32 * 12.9898).sin() * 43_758.547).fract() * 2.0 - 1.0;
        s = 0.3 * s + e;
        *v = s;
    }
    let std = (y.iter().map(|v| v * v).sum::<f32>() / n as f32).sqrt();
    let x: Vec<f32> = y.iter().map(|v| v / std).collect();
    // Target at row t is the next value.
    let mut target = x[1..].to_vec();
    target.push(0.0);
    (x, target)
}

fn setup() -> (Vec<f32>, Vec<f32>, Vec<usize>, Vec<usize>) {
    let n = 6000;
    let (x, y) = ar_series(n);
    let ends: Vec<usize> = (7..n - 1).collect();
    let (train, val) = ends.split_at(5000);
    (x, y, train.to_vec(), val.to_vec())
}

#[test]
fn training_reaches_the_best_possible_error_on_a_real_signal() {
    let (x, y, train, val) = setup();
    let data = Windows {
        x: &x,
        n_features: 1,
        y: &y,
        lookback: 8,
    };
    let cfg = FitConfig {
        hidden: 8,
        epochs: 6,
        batch_size: 32,
        lr: 3e-3,
        ..FitConfig::default()
    };
    let mut seen = Vec::new();
    let out = fit(&data, &train, &val, &cfg, &mut |s| {
        seen.push(s.epoch);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seen, (1..=seen.len()).collect::<Vec<_>>());
    let mean_y = val.iter().map(|&e| f64::from(y[e])).sum::<f64>() / val.len() as f64;
    let var = val
        .iter()
        .map(|&e| (f64::from(y[e]) - mean_y).powi(2))
        .sum::<f64>()
        / val.len() as f64;
    let rel = out.best_val_loss / var;
    assert!(
        rel < 0.95,
        "validation MSE / variance = {rel:.3} (floor 0.91, mean-only 1.0)"
    );
    // The returned weights are the best epoch's: re-predicting gives the same loss.
    let p = predict_windows(&out.weights, &data, &val).unwrap();
    let mse = p
        .iter()
        .zip(&val)
        .map(|(p, &e)| (f64::from(*p) - f64::from(y[e])).powi(2))
        .sum::<f64>()
        / val.len() as f64;
    assert!((mse - out.best_val_loss).abs() < 1e-6 * out.best_val_loss.max(1.0));
}

#[test]
fn the_same_seed_gives_identical_weights_and_another_seed_does_not() {
    let (x, y, train, val) = setup();
    let data = Windows {
        x: &x,
        n_features: 1,
        y: &y,
        lookback: 8,
    };
    let cfg = FitConfig {
        hidden: 4,
        epochs: 2,
        batch_size: 64,
        ..FitConfig::default()
    };
    let a = fit(
        &data,
        &train,
        &val,
        &cfg,
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap();
    let b = fit(
        &data,
        &train,
        &val,
        &cfg,
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap();
    let c = fit(
        &data,
        &train,
        &val,
        &FitConfig {
            seed: 43,
            ..cfg.clone()
        },
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap();
    assert_eq!(a.weights, b.weights);
    assert_eq!(
        a.history.iter().map(|h| h.val_loss).collect::<Vec<_>>(),
        b.history.iter().map(|h| h.val_loss).collect::<Vec<_>>()
    );
    assert_ne!(a.weights, c.weights);
}

#[test]
fn early_stopping_keeps_the_best_epoch() {
    let (x, y, train, val) = setup();
    let data = Windows {
        x: &x,
        n_features: 1,
        y: &y,
        lookback: 8,
    };
    // A learning rate this high overshoots, so validation stops improving quickly.
    let cfg = FitConfig {
        hidden: 4,
        epochs: 40,
        batch_size: 32,
        lr: 0.05,
        patience: 2,
        ..FitConfig::default()
    };
    let out = fit(
        &data,
        &train,
        &val,
        &cfg,
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap();
    let best = out
        .history
        .iter()
        .map(|h| h.val_loss)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(out.best_val_loss, best);
    assert_eq!(out.history[out.best_epoch - 1].val_loss, best);
    if out.stopped_early {
        assert_eq!(out.history.len(), out.best_epoch + 2);
    }
}

#[test]
fn the_caller_can_stop_training_after_an_epoch() {
    let (x, y, train, val) = setup();
    let data = Windows {
        x: &x,
        n_features: 1,
        y: &y,
        lookback: 8,
    };
    let cfg = FitConfig {
        hidden: 4,
        epochs: 5,
        ..FitConfig::default()
    };
    let mut n = 0;
    let r = fit(&data, &train, &val, &cfg, &mut |_| {
        n += 1;
        ControlFlow::Break(())
    });
    assert_eq!(n, 1);
    assert!(
        r.unwrap_err()
            .to_string()
            .contains("stopped by the caller after epoch 1")
    );
}
