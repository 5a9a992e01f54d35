//! Honest evaluation on price in USD: point metrics for the model and the baselines on the
//! same rows, skill against persistence, and split-conformal intervals with their empirical
//! coverage.

use serde::{Deserialize, Serialize};

/// Point-forecast quality on a set of rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PointMetrics {
    /// Root mean squared error of the close, USD.
    pub rmse: f64,
    /// Mean absolute error, USD.
    pub mae: f64,
    /// Mean absolute percentage error, percent.
    pub mape: f64,
    /// Share of rows (where the price moved) whose predicted move has the right sign; `None`
    /// when the forecaster never predicts a move (persistence).
    pub directional_accuracy: Option<f64>,
    /// `1 - RMSE / RMSE_persistence` on the same rows (0 for persistence itself).
    pub skill: f64,
    /// Rows scored.
    pub rows: usize,
}

/// Point metrics of `pred` against `actual`, given the last known close of each row and the
/// persistence RMSE on the same rows.
pub fn point_metrics(
    last: &[f64],
    actual: &[f64],
    pred: &[f64],
    rmse_persistence: f64,
) -> PointMetrics {
    let n = actual.len().max(1) as f64;
    let (mut se, mut ae, mut ape) = (0.0, 0.0, 0.0);
    let (mut moved, mut right, mut any_move) = (0usize, 0usize, false);
    for i in 0..actual.len() {
        let e = pred[i] - actual[i];
        se += e * e;
        ae += e.abs();
        ape += (e / actual[i]).abs();
        let (dp, da) = (pred[i] - last[i], actual[i] - last[i]);
        any_move |= dp != 0.0;
        if da != 0.0 {
            moved += 1;
            if dp * da > 0.0 {
                right += 1;
            }
        }
    }
    let rmse = (se / n).sqrt();
    PointMetrics {
        rmse,
        mae: ae / n,
        mape: 100.0 * ape / n,
        directional_accuracy: (any_move && moved > 0).then(|| right as f64 / moved as f64),
        skill: if rmse_persistence > 0.0 {
            1.0 - rmse / rmse_persistence
        } else {
            0.0
        },
        rows: actual.len(),
    }
}

/// RMSE of two equal-length series.
pub fn rmse(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().max(1) as f64;
    (a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / n).sqrt()
}

/// The split-conformal quantile of absolute residuals for coverage `level`: the
/// `⌈(n+1)·level⌉`-th smallest residual (the finite-sample correction that makes coverage at
/// least `level` for exchangeable data). When that rank exceeds `n` (too few calibration
/// rows for the level) the largest residual is used and the guarantee is lost — the caller
/// has at least a few hundred rows in practice.
pub fn conformal_quantile(abs_residuals: &[f64], level: f64) -> f64 {
    let mut r: Vec<f64> = abs_residuals
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if r.is_empty() {
        return f64::NAN;
    }
    r.sort_by(f64::total_cmp);
    let n = r.len();
    let k = (((n + 1) as f64) * level).ceil() as usize;
    r[k.clamp(1, n) - 1]
}

/// Empirical quality of one interval level on the test rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IntervalMetrics {
    /// The nominal level, as a fraction (`0.9` for 90%).
    pub level: f64,
    /// Conformal quantile of |log-return error| from the calibration split.
    pub q_logret: f64,
    /// Share of test rows whose actual close fell inside the interval.
    pub coverage: f64,
    /// Mean interval width, USD.
    pub mean_width_usd: f64,
}

/// Coverage and width of `last · exp(pred_logret ± q)` intervals.
pub fn interval_metrics(
    last: &[f64],
    actual: &[f64],
    pred_logret: &[f64],
    level: f64,
    q: f64,
) -> IntervalMetrics {
    let n = actual.len().max(1) as f64;
    let (mut inside, mut width) = (0usize, 0.0);
    for i in 0..actual.len() {
        let lo = last[i] * (pred_logret[i] - q).exp();
        let hi = last[i] * (pred_logret[i] + q).exp();
        if actual[i] >= lo && actual[i] <= hi {
            inside += 1;
        }
        width += hi - lo;
    }
    IntervalMetrics {
        level,
        q_logret: q,
        coverage: inside as f64 / n,
        mean_width_usd: width / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conformal_quantile_uses_the_finite_sample_rank() {
        let r: Vec<f64> = (1..=9).map(f64::from).collect();
        // n = 9, level 0.8: rank ceil(10 * 0.8) = 8.
        assert_eq!(conformal_quantile(&r, 0.8), 8.0);
        // level 0.95: rank ceil(9.5) = 10 > n, so the maximum.
        assert_eq!(conformal_quantile(&r, 0.95), 9.0);
        assert!(conformal_quantile(&[], 0.9).is_nan());
    }

    #[test]
    fn persistence_has_zero_skill_and_no_direction() {
        let last = [100.0, 101.0, 102.0];
        let actual = [101.0, 100.0, 103.0];
        let p = point_metrics(&last, &actual, &last, rmse(&last, &actual));
        assert_eq!(p.skill, 0.0);
        assert_eq!(p.directional_accuracy, None);
        assert!((p.rmse - 1.0).abs() < 1e-12);
        assert!((p.mae - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_perfect_forecast_has_skill_one_and_full_direction() {
        let last = [100.0, 101.0, 102.0];
        let actual = [101.0, 100.0, 103.0];
        let p = point_metrics(&last, &actual, &actual, rmse(&last, &actual));
        assert_eq!(p.skill, 1.0);
        assert_eq!(p.directional_accuracy, Some(1.0));
        assert_eq!(p.mape, 0.0);
    }

    #[test]
    fn interval_coverage_counts_rows_inside_the_band() {
        let last = [100.0, 100.0];
        let actual = [100.5, 110.0];
        let m = interval_metrics(&last, &actual, &[0.0, 0.0], 0.9, 0.01);
        assert_eq!(m.coverage, 0.5);
        assert!((m.mean_width_usd - 100.0 * (0.01f64.exp() - (-0.01f64).exp())).abs() < 1e-9);
    }
}
