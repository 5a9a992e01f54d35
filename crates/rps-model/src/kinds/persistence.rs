//! The persistence kind: the next close equals the current one (a forecast log return of
//! exactly 0). It has nothing to learn. It is the floor every learnable kind must beat at the
//! promotion gate, and the champion when none does: hourly BTC closes are close to a random
//! walk, and "no change" is the forecast a model must earn its place against.
//!
//! Its one weight is the standardised value of a zero log return
//! ([`FitConfig::target_zero`]), so the shared de-standardisation of every kind gives back no
//! change, and the conformal intervals, the package, serving and the walk-forward evaluation
//! treat it like any other kind.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::fit::{EpochStats, FitConfig, FitOutcome, Windows};
use crate::model::ModelKind;
use crate::package::ModelMetadata;
use crate::{ModelError, Result};

/// The kind's name (`metadata.json`, `--model-kind`).
pub const NAME: &str = "persistence";

/// The tensor name in `model.safetensors`.
const TENSOR: &str = "zero";

/// The standardised prediction of no change.
#[derive(Debug, Clone, PartialEq)]
pub struct PersistenceWeights {
    /// `(0 − target_mean) / target_std` of the package's scaler.
    pub zero: f32,
}

impl PersistenceWeights {
    fn mse(&self, data: &Windows<'_>, ends: &[usize]) -> f64 {
        if ends.is_empty() {
            return 0.0;
        }
        let sum: f64 = ends
            .iter()
            .map(|&e| (f64::from(data.y[e]) - f64::from(self.zero)).powi(2))
            .sum();
        sum / ends.len() as f64
    }
}

impl ModelKind for PersistenceWeights {
    const NAME: &'static str = NAME;
    type Serving = f32;

    fn fit(
        data: &Windows<'_>,
        train: &[usize],
        val: &[usize],
        cfg: &FitConfig,
        on_epoch: &mut dyn FnMut(&EpochStats) -> ControlFlow<()>,
    ) -> Result<FitOutcome<Self>> {
        let weights = PersistenceWeights {
            zero: cfg.target_zero,
        };
        // One "epoch" with the losses of predicting no change, so the learning curve and the
        // run's metrics read like any other kind's.
        let stats = EpochStats {
            epoch: 1,
            train_loss: weights.mse(data, train),
            val_loss: weights.mse(data, val),
            seconds: 0.0,
            windows_per_second: 0.0,
        };
        let _ = on_epoch(&stats);
        Ok(FitOutcome {
            best_val_loss: stats.val_loss,
            weights,
            history: vec![stats],
            best_epoch: 1,
            stopped_early: false,
        })
    }

    fn predict_windows(&self, _data: &Windows<'_>, ends: &[usize]) -> Result<Vec<f32>> {
        Ok(vec![self.zero; ends.len()])
    }

    fn serving(&self) -> f32 {
        self.zero
    }

    fn forecast(serving: &f32, _window: &[f32]) -> f32 {
        *serving
    }

    fn save(&self, path: &Path) -> Result<()> {
        let t = Tensor::from_slice(&[self.zero], 1, &Device::Cpu)
            .map_err(ModelError::candle("building the persistence weight"))?;
        let map: HashMap<String, Tensor> = [(TENSOR.to_string(), t)].into();
        candle_core::safetensors::save(&map, path)
            .map_err(ModelError::candle(format!("writing {}", path.display())))
    }

    fn load(path: &Path, _meta: &ModelMetadata) -> Result<Self> {
        PersistenceWeights::read(path)
    }

    fn check(&self, _meta: &ModelMetadata) -> Option<String> {
        self.problem()
    }
}

impl PersistenceWeights {
    /// Reads the one weight from `model.safetensors`.
    fn read(path: &Path) -> Result<Self> {
        let bad = |reason: String| ModelError::BadPackage {
            path: path.to_path_buf(),
            reason,
        };
        let map = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| bad(format!("unreadable weights: {e}")))?;
        let t = map
            .get(TENSOR)
            .ok_or_else(|| bad(format!("no tensor '{TENSOR}'")))?;
        let v: Vec<f32> = t
            .to_vec1()
            .map_err(|e| bad(format!("tensor '{TENSOR}': {e}")))?;
        match v.as_slice() {
            [zero] => Ok(PersistenceWeights { zero: *zero }),
            _ => Err(bad(format!(
                "tensor '{TENSOR}' holds {} values, expected 1",
                v.len()
            ))),
        }
    }

    fn problem(&self) -> Option<String> {
        (!self.zero.is_finite()).then(|| "the persistence weight is not finite".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_predicts_the_zero_it_was_given_and_its_weight_round_trips() {
        // Three rows of one input; targets standardised around a zero at -0.5.
        let (x, y) = (vec![0.0f32; 3], vec![-0.5f32, 0.5, -1.5]);
        let data = Windows {
            x: &x,
            n_features: 1,
            y: &y,
            lookback: 1,
        };
        let cfg = FitConfig {
            target_zero: -0.5,
            ..FitConfig::default()
        };
        let mut epochs = 0;
        let out = PersistenceWeights::fit(&data, &[0, 1], &[2], &cfg, &mut |_| {
            epochs += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(epochs, 1);
        assert_eq!(out.weights.zero, -0.5);
        assert_eq!(out.history[0].train_loss, 0.5, "(0 + 1) / 2");
        assert_eq!(out.best_val_loss, 1.0);
        assert_eq!(
            out.weights.predict_windows(&data, &[1, 2]).unwrap(),
            [-0.5, -0.5]
        );
        assert_eq!(
            PersistenceWeights::forecast(&out.weights.serving(), &[9.0]),
            -0.5
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        out.weights.save(&path).unwrap();
        assert_eq!(PersistenceWeights::read(&path).unwrap(), out.weights);
        assert!(PersistenceWeights { zero: f32::NAN }.problem().is_some());
    }
}
