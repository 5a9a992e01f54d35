//! Walk-forward evaluation: `K` expanding-window folds in time order. All windows are cut
//! into `K + 1` equal chronological blocks; fold `k` (1-based) trains on every window before
//! block `k` (its last tenth for early stopping, and at most `--max-train-rows` of the most
//! recent others for training, as the main run) and tests on block `k`. Standardisation is
//! re-fitted on each fold's training windows, so no fold sees statistics of its future.
//! Each fold reports the model and persistence on the same rows, in USD.

use std::ops::Range;

use rps_model::{FitConfig, Windows};
use serde::Serialize;
use tracing::info;

use crate::TrainError;
use crate::data::{Prepared, standardise};
use crate::eval::{PointMetrics, point_metrics, rmse};
use rps_core::time::fmt_ms;

/// One fold's windows and scores.
#[derive(Debug, Clone, Serialize)]
pub struct Fold {
    /// 1-based.
    pub fold: usize,
    /// Windows trained on.
    pub train_windows: usize,
    /// Windows used for early stopping.
    pub val_windows: usize,
    /// Windows tested on.
    pub test_windows: usize,
    /// Hour of the first training window, RFC 3339 UTC.
    pub train_start: String,
    /// Hour of the last training window, RFC 3339 UTC.
    pub train_end: String,
    /// Hour of the first test window, RFC 3339 UTC.
    pub test_start: String,
    /// Hour of the last test window, RFC 3339 UTC.
    pub test_end: String,
    /// Epochs the fold's training ran.
    pub epochs_run: usize,
    /// The 1-based epoch whose weights were kept.
    pub best_epoch: usize,
    /// The fold's model on its test block.
    pub model: PointMetrics,
    /// Persistence on the same rows.
    pub persistence: PointMetrics,
}

/// All folds and their means.
#[derive(Debug, Clone, Serialize)]
pub struct WalkForward {
    /// The folds, in time order.
    pub folds: Vec<Fold>,
    /// Mean of the folds' model RMSE, USD.
    pub mean_rmse: f64,
    /// Mean of the folds' model MAE, USD.
    pub mean_mae: f64,
    /// Mean over the folds that have one.
    pub mean_directional_accuracy: Option<f64>,
    /// Mean of the folds' skill against persistence.
    pub mean_skill: f64,
    /// Mean of the folds' persistence RMSE, USD.
    pub mean_persistence_rmse: f64,
}

impl WalkForward {
    /// Flat metric names for tracking: `fold_<k>_<metric>` and `walk_forward_mean_<metric>`.
    pub fn flat_metrics(&self) -> Vec<(String, f64)> {
        let mut m = Vec::new();
        for f in &self.folds {
            let k = f.fold;
            m.push((format!("fold_{k}_rmse"), f.model.rmse));
            m.push((format!("fold_{k}_mae"), f.model.mae));
            m.push((format!("fold_{k}_skill"), f.model.skill));
            m.push((format!("fold_{k}_persistence_rmse"), f.persistence.rmse));
            m.push((format!("fold_{k}_test_rows"), f.model.rows as f64));
            if let Some(d) = f.model.directional_accuracy {
                m.push((format!("fold_{k}_directional_accuracy"), d));
            }
        }
        m.push(("walk_forward_mean_rmse".into(), self.mean_rmse));
        m.push(("walk_forward_mean_mae".into(), self.mean_mae));
        m.push(("walk_forward_mean_skill".into(), self.mean_skill));
        m.push((
            "walk_forward_mean_persistence_rmse".into(),
            self.mean_persistence_rmse,
        ));
        if let Some(d) = self.mean_directional_accuracy {
            m.push(("walk_forward_mean_directional_accuracy".into(), d));
        }
        m.retain(|(_, v)| v.is_finite());
        m
    }
}

/// The windows (indices into the time-ordered window list of length `n`) before and in the
/// test block of each of `k` folds.
pub fn fold_blocks(n: usize, k: usize) -> Vec<(Range<usize>, Range<usize>)> {
    let block = n / (k + 1);
    (1..=k)
        .map(|f| {
            let end = if f == k { n } else { (f + 1) * block };
            (0..f * block, f * block..end)
        })
        .collect()
}

/// Runs the `k` folds with the main run's fit configuration (CPU-bound: call it off the
/// async executor).
pub fn run(
    prep: &Prepared,
    fit_cfg: &FitConfig,
    k: usize,
    lookback: usize,
    max_train_rows: Option<usize>,
) -> Result<WalkForward, TrainError> {
    let n = prep.windows.len();
    let min = 8;
    let ts = |i: usize| fmt_ms(prep.windows[i].ts);
    let mut folds = Vec::with_capacity(k);
    for (f, (before, test)) in fold_blocks(n, k).into_iter().enumerate() {
        let fold = f + 1;
        let n_val = (before.len() / 10).max(min);
        let val: Vec<usize> = (before.end.saturating_sub(n_val)..before.end).collect();
        let mut train: Vec<usize> = (0..before.end.saturating_sub(n_val)).collect();
        if let Some(max) = max_train_rows.filter(|&m| train.len() > m) {
            train.drain(..train.len() - max);
        }
        let test: Vec<usize> = test.collect();
        for (split, s) in [("training", &train), ("validation", &val), ("test", &test)] {
            if s.len() < min {
                return Err(TrainError::TooFewWindows {
                    split: format!("walk-forward fold {fold} {split}"),
                    got: s.len(),
                    need: min,
                    windows: n,
                    lookback,
                });
            }
        }
        let (scaler, _, x, y) = standardise(
            &prep.frames,
            &prep.offsets,
            &prep.columns,
            &prep.windows,
            &train,
            lookback,
        );
        let data = Windows {
            x: &x,
            n_features: prep.n_inputs(),
            y: &y,
            lookback,
        };
        let fold_cfg = FitConfig {
            target_zero: scaler.zero(),
            ..fit_cfg.clone()
        };
        let out = rps_model::fit(
            &data,
            &prep.ends(&train),
            &prep.ends(&val),
            &fold_cfg,
            &mut |_| std::ops::ControlFlow::Continue(()),
        )?;
        let std_pred = rps_model::predict_windows(&out.weights, &data, &prep.ends(&test))?;
        let (mut last, mut actual, mut pred) = (vec![], vec![], vec![]);
        for (&i, p) in test.iter().zip(&std_pred) {
            let w = prep.windows[i];
            let fr = &prep.frames[w.coin];
            last.push(fr.close[w.row]);
            actual.push(fr.target_close_1h[w.row]);
            pred.push(fr.close[w.row] * scaler.y_inv(f64::from(*p)).exp());
        }
        let rmse_p = rmse(&last, &actual);
        let model = point_metrics(&last, &actual, &pred, rmse_p);
        let persistence = point_metrics(&last, &actual, &last, rmse_p);
        info!(
            "walk-forward fold {fold}/{k}: {} test hours {}..{}, RMSE {:.2} USD vs persistence {:.2} (skill {:+.4})",
            test.len(),
            ts(test[0]),
            ts(test[test.len() - 1]),
            model.rmse,
            persistence.rmse,
            model.skill
        );
        folds.push(Fold {
            fold,
            train_windows: train.len(),
            val_windows: val.len(),
            test_windows: test.len(),
            train_start: ts(train[0]),
            train_end: ts(train[train.len() - 1]),
            test_start: ts(test[0]),
            test_end: ts(test[test.len() - 1]),
            epochs_run: out.history.len(),
            best_epoch: out.best_epoch,
            model,
            persistence,
        });
    }
    let mean = |f: &dyn Fn(&Fold) -> f64| folds.iter().map(f).sum::<f64>() / folds.len() as f64;
    let das: Vec<f64> = folds
        .iter()
        .filter_map(|f| f.model.directional_accuracy)
        .collect();
    Ok(WalkForward {
        mean_rmse: mean(&|f| f.model.rmse),
        mean_mae: mean(&|f| f.model.mae),
        mean_skill: mean(&|f| f.model.skill),
        mean_persistence_rmse: mean(&|f| f.persistence.rmse),
        mean_directional_accuracy: (!das.is_empty())
            .then(|| das.iter().sum::<f64>() / das.len() as f64),
        folds,
    })
}

#[cfg(test)]
mod tests {
    use super::fold_blocks;

    #[test]
    fn fold_blocks_are_disjoint_chronological_and_expanding() {
        let b = fold_blocks(103, 4);
        assert_eq!(b.len(), 4);
        for (f, (before, test)) in b.iter().enumerate() {
            assert_eq!(before.start, 0);
            assert_eq!(before.end, test.start, "test follows its training data");
            if f > 0 {
                assert_eq!(b[f - 1].1.end, test.start, "blocks are adjacent");
                assert!(before.end > b[f - 1].0.end, "the training window expands");
            }
        }
        assert_eq!(b[3].1.end, 103, "the last block takes the remainder");
        assert_eq!(b[0].1, 20..40);
    }
}
