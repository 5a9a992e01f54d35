//! Training and batch prediction for every model kind: the data a kind trains on
//! ([`Windows`]), its hyper-parameters ([`FitConfig`], which also names the kind), what
//! training reports ([`EpochStats`], [`FitOutcome`]), and [`fit`] / [`predict_windows`],
//! which check the data and hand over to the kind (see [`crate::kinds`]).

use std::ops::ControlFlow;

use crate::model::Model;
use crate::{ModelError, Result, kinds};

/// Standardised model inputs and targets, row-aligned, and how long a window is.
/// The window ending at row `e` covers rows `e + 1 - lookback ..= e` and predicts `y[e]`;
/// the caller guarantees those rows are consecutive hours.
#[derive(Debug, Clone, Copy)]
pub struct Windows<'a> {
    /// `n_rows × n_features`, row-major.
    pub x: &'a [f32],
    /// Inputs per row (the width of `x`).
    pub n_features: usize,
    /// Target per row (standardised); only read at window ends.
    pub y: &'a [f32],
    /// Rows (consecutive hours) per window.
    pub lookback: usize,
}

impl Windows<'_> {
    /// Copies the windows ending at `ends` into `xb` (`[B, T, F]`) and their targets into `yb`.
    pub fn gather(&self, ends: &[usize], xb: &mut Vec<f32>, yb: &mut Vec<f32>) {
        let (t, f) = (self.lookback, self.n_features);
        xb.clear();
        yb.clear();
        for &e in ends {
            let start = (e + 1 - t) * f;
            xb.extend_from_slice(&self.x[start..(e + 1) * f]);
            yb.push(self.y[e]);
        }
    }

    /// Whether the arrays are consistent and every window ending at `ends` fits them.
    pub fn check(&self, ends: &[usize]) -> Result<()> {
        let rows = self.y.len();
        if self.n_features == 0 || self.x.len() != rows * self.n_features || self.lookback == 0 {
            return Err(ModelError::Training(format!(
                "inputs are {} values for {rows} rows of {} features (lookback {})",
                self.x.len(),
                self.n_features,
                self.lookback
            )));
        }
        if let Some(&e) = ends.iter().find(|&&e| e + 1 < self.lookback || e >= rows) {
            return Err(ModelError::Training(format!(
                "window ending at row {e} does not fit {rows} rows with lookback {}",
                self.lookback
            )));
        }
        Ok(())
    }
}

/// Training hyper-parameters, and the kind of model they train.
#[derive(Debug, Clone, PartialEq)]
pub struct FitConfig {
    /// A name in [`kinds::KINDS`] (`"lstm"`).
    pub kind: String,
    /// Hidden units (the LSTM's state size).
    pub hidden: usize,
    /// Maximum number of passes over the training windows.
    pub epochs: usize,
    /// Windows per optimiser step.
    pub batch_size: usize,
    /// Learning rate of the optimiser (AdamW for the LSTM).
    pub lr: f64,
    /// Decoupled weight decay of the optimiser (AdamW).
    pub weight_decay: f64,
    /// Stop after this many epochs without a better validation loss.
    pub patience: usize,
    /// Seed of the initial weights and the shuffling (same seed and data, same model).
    pub seed: u64,
    /// Clip the global gradient norm to this value (0 = no clipping).
    pub clip_norm: f64,
    /// The standardised value of a zero target (`−target_mean / target_std`): what the
    /// persistence kind predicts. Learnable kinds ignore it.
    pub target_zero: f32,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            kind: kinds::DEFAULT.into(),
            hidden: 64,
            epochs: 30,
            batch_size: 64,
            lr: 1e-3,
            weight_decay: 1e-2,
            patience: 5,
            seed: 42,
            clip_norm: 1.0,
            target_zero: 0.0,
        }
    }
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochStats {
    /// 1-based.
    pub epoch: usize,
    /// Mean squared error of the standardised target over the epoch's training batches.
    pub train_loss: f64,
    /// Mean squared error of the standardised target on the validation windows after the
    /// epoch.
    pub val_loss: f64,
    /// Wall-clock seconds the epoch took, validation included.
    pub seconds: f64,
    /// Training windows processed per wall-clock second.
    pub windows_per_second: f64,
}

/// What training returns: the weights (a [`Model`] of any kind, or a kind's own weights
/// type inside its module) and how training went.
#[derive(Debug, Clone)]
pub struct FitOutcome<W = Model> {
    /// The weights of the epoch with the lowest validation loss.
    pub weights: W,
    /// Every epoch run, in order.
    pub history: Vec<EpochStats>,
    /// The 1-based epoch whose weights are kept.
    pub best_epoch: usize,
    /// Its validation loss.
    pub best_val_loss: f64,
    /// Whether `patience` ended training before `epochs` were run.
    pub stopped_early: bool,
}

impl<W> FitOutcome<W> {
    /// The same outcome with the weights converted (a kind's own type to a [`Model`]).
    pub fn map_weights<V>(self, f: impl FnOnce(W) -> V) -> FitOutcome<V> {
        FitOutcome {
            weights: f(self.weights),
            history: self.history,
            best_epoch: self.best_epoch,
            best_val_loss: self.best_val_loss,
            stopped_early: self.stopped_early,
        }
    }
}

/// Trains a model of kind `cfg.kind` from seeded initial weights on the windows ending at
/// `train`, keeping the weights of the best epoch on `val`. `on_epoch` sees every finished
/// epoch (for logging and tracking) and may stop training by returning
/// `ControlFlow::Break` (then this returns [`ModelError::Training`]). Deterministic for the
/// same data, config and thread count.
pub fn fit(
    data: &Windows<'_>,
    train: &[usize],
    val: &[usize],
    cfg: &FitConfig,
    on_epoch: &mut dyn FnMut(&EpochStats) -> ControlFlow<()>,
) -> Result<FitOutcome> {
    let kind = kinds::get(&cfg.kind).map_err(ModelError::Training)?;
    data.check(train)?;
    data.check(val)?;
    if train.is_empty() || val.is_empty() {
        return Err(ModelError::Training(format!(
            "need training and validation windows, got {} and {}",
            train.len(),
            val.len()
        )));
    }
    kind.fit(data, train, val, cfg, on_epoch)
}

/// Standardised predictions of `weights` for the windows ending at `ends`, batched (the same
/// numbers as the batch-1 serving path of [`crate::Forecaster`] up to float rounding).
pub fn predict_windows(weights: &Model, data: &Windows<'_>, ends: &[usize]) -> Result<Vec<f32>> {
    data.check(ends)?;
    weights.predict_windows(data, ends)
}
