//! Bit-identity of the LSTM: a tiny model trained with a fixed seed on the real-data fixture
//! must reproduce the recorded weights file, loss history and predictions (batched training
//! path and batch-1 serving path) to the last bit. The expected digests were captured from
//! the code before the model-kind refactor; a change of any of them means the model computes
//! something else, not "close enough".
//!
//! The digests depend on the SIMD level the kernels dispatch to (AVX-512 and AVX2/FMA sum in
//! different orders), so they are recorded per level; on a CPU of another level the test still
//! checks reproducibility and the agreement of the two prediction paths, and says which
//! digests it would need.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use rps_core::time::HOUR_MS;
use rps_features::{FeatureFrame, compute, spec};
use rps_model::package::{FORMAT_VERSION, WEIGHTS_FILE};
use rps_model::{
    ConformalQuantile, DataInfo, FitConfig, Forecaster, MODEL_INPUTS, ModelMetadata, ModelPackage,
    Scaler, Windows, fit, predict_windows,
};
use sha2::{Digest, Sha256};

const LOOKBACK: usize = 12;

/// Digests recorded on an AVX-512 machine (`pulp::x86::V4` available), before the refactor.
const EXPECTED_V4: Expected = Expected {
    weights_file: "289ca63f867e0dca058824e78ce40ce02a512a5b051dbe21e68134484219f0a6",
    history: "9f4d1e3e81601d75a50abffcc505187e3dfa677c1f0c7161a2893da69a782211",
    batch_predictions: "528047a708111fd8b7437bac7a838eda2d2b5680db0dcbc5e569b779fb61c2cb",
    serving_predictions: "27ac4ce832de719f6dadf850238756dee5d6596b3197543b091181410b21f0fa",
    best_epoch: 3,
};

#[derive(Debug, PartialEq, Eq)]
struct Expected {
    /// sha256 of `model.safetensors` as the package writes it.
    weights_file: &'static str,
    /// sha256 of the per-epoch train and validation losses (f64 bits, little endian).
    history: &'static str,
    /// sha256 of the standardised test predictions of the batched path (f32 bits).
    batch_predictions: &'static str,
    /// sha256 of the log-return predictions of the loaded package's serving path (f64 bits).
    serving_predictions: &'static str,
    best_epoch: usize,
}

/// The SIMD level the kernels run at on this CPU.
fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if pulp::x86::V4::try_new().is_some() {
            return "x86-v4";
        }
        if pulp::x86::V3::try_new().is_some() {
            return "x86-v3";
        }
    }
    "other"
}

fn sha(bytes: impl IntoIterator<Item = u8>) -> String {
    let mut h = Sha256::new();
    h.update(bytes.into_iter().collect::<Vec<u8>>());
    hex::encode(h.finalize())
}

/// Feature rows of the first 3000 fixture hours, standardised on the first 70 % of windows.
struct Data {
    frame: FeatureFrame,
    scaler: Scaler,
    x: Vec<f32>,
    y: Vec<f32>,
    train: Vec<usize>,
    val: Vec<usize>,
    test: Vec<usize>,
}

fn data() -> Data {
    let frame = compute("BTC", &rps_testkit::fixture::bars()[..3000]);
    let sp = spec();
    let columns: Vec<usize> = MODEL_INPUTS.iter().map(|n| sp.index(n).unwrap()).collect();
    let n = frame.len();
    let ends: Vec<usize> = (LOOKBACK - 1..n)
        .filter(|&e| {
            frame.ts[e] - frame.ts[e + 1 - LOOKBACK] == (LOOKBACK as i64 - 1) * HOUR_MS
                && frame.target_logret_1h[e].is_finite()
        })
        .collect();
    let (a, b) = (ends.len() * 7 / 10, ends.len() * 85 / 100);
    let (train, val, test) = (ends[..a].to_vec(), ends[a..b].to_vec(), ends[b..].to_vec());
    let last_train_row = train[train.len() - 1];
    let cols: Vec<Vec<f64>> = columns
        .iter()
        .map(|&c| (0..=last_train_row).map(|r| frame.row(r)[c]).collect())
        .collect();
    let targets: Vec<f64> = train.iter().map(|&e| frame.target_logret_1h[e]).collect();
    let scaler = Scaler::fit(&cols, &targets);
    let mut x = Vec::with_capacity(n * columns.len());
    let mut y = Vec::with_capacity(n);
    for r in 0..n {
        for (j, &c) in columns.iter().enumerate() {
            let v = scaler.x(j, frame.row(r)[c]);
            x.push(if v.is_finite() { v as f32 } else { 0.0 });
        }
        let t = scaler.y(frame.target_logret_1h[r]);
        y.push(if t.is_finite() { t as f32 } else { 0.0 });
    }
    Data {
        frame,
        scaler,
        x,
        y,
        train,
        val,
        test,
    }
}

fn metadata(scaler: Scaler, hidden: usize) -> ModelMetadata {
    ModelMetadata {
        format_version: FORMAT_VERSION,
        name: "rps-golden".into(),
        version: String::new(),
        run_id: "golden".into(),
        kind: "lstm".into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        feature_spec_hash: spec().hash.clone(),
        feature_spec_version: spec().version,
        inputs: MODEL_INPUTS.iter().map(|s| s.to_string()).collect(),
        lookback: LOOKBACK,
        hidden,
        scaler,
        conformal: vec![ConformalQuantile {
            level: 0.9,
            q: 0.01,
        }],
        volatility: rps_model::intervals::VolatilityModel::constant(0.01),
        calibrator: rps_model::intervals::CalibratorParams::default(),
        calibration: rps_model::intervals::CalibrationState::new(
            &[0.8, 0.9, 0.95],
            (1..=99).map(|i| f64::from(i) / 50.0).collect(),
        ),
        data: DataInfo::default(),
        metrics: BTreeMap::new(),
        params: BTreeMap::new(),
        git_commit: "unknown".into(),
        reference: Vec::new(),
        weights_sha256: None,
    }
}

/// Trains, saves, reloads and predicts; returns the digests.
fn observe() -> Expected {
    let d = data();
    let windows = Windows {
        x: &d.x,
        n_features: MODEL_INPUTS.len(),
        y: &d.y,
        lookback: LOOKBACK,
    };
    let cfg = FitConfig {
        hidden: 8,
        epochs: 3,
        batch_size: 32,
        lr: 1e-3,
        seed: 7,
        ..FitConfig::default()
    };
    let out = fit(&windows, &d.train, &d.val, &cfg, &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let batch = predict_windows(&out.weights, &windows, &d.test).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let pkg = ModelPackage {
        metadata: metadata(d.scaler.clone(), cfg.hidden),
        weights: out.weights.clone(),
    };
    pkg.save(dir.path()).unwrap();
    let weights_file = std::fs::read(dir.path().join(WEIGHTS_FILE)).unwrap();
    let fc = Forecaster::load(dir.path()).unwrap();
    let serving = fc.predict_logrets(&d.frame, &d.test).unwrap();

    // The two prediction paths compute the same network (to f32 rounding).
    for (b, s) in batch.iter().zip(&serving) {
        let b = d.scaler.y_inv(f64::from(*b));
        assert!(
            (b - s).abs() <= 1e-5 * b.abs().max(s.abs()) + 1e-9,
            "{b} vs {s}"
        );
    }
    Expected {
        weights_file: leak(sha(weights_file)),
        history: leak(sha(out
            .history
            .iter()
            .flat_map(|h| [h.train_loss.to_le_bytes(), h.val_loss.to_le_bytes()])
            .flatten())),
        batch_predictions: leak(sha(batch.iter().flat_map(|p| p.to_le_bytes()))),
        serving_predictions: leak(sha(serving.iter().flat_map(|p| p.to_le_bytes()))),
        best_epoch: out.best_epoch,
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[test]
fn the_lstm_trains_and_predicts_bit_identically_to_the_recorded_run() {
    let got = observe();
    // Reproducible within the process whatever the CPU.
    assert_eq!(observe(), got, "the same seed and data trained differently");
    match simd_level() {
        "x86-v4" => assert_eq!(got, EXPECTED_V4, "the LSTM's numbers changed"),
        level => eprintln!(
            "no digests recorded for SIMD level {level}; this CPU gives {got:#?} (only reproducibility was checked)"
        ),
    }
}
