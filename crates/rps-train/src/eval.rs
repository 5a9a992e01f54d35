//! Honest evaluation on price in USD: point metrics for the model and the baselines on the
//! same rows, skill against persistence, and split-conformal intervals with their empirical
//! coverage.

use rps_model::intervals::summarize;
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

/// Empirical quality of one interval level on the test rows: the served (online,
/// volatility-scaled) intervals, and the static split-conformal baseline on the same rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalMetrics {
    /// The nominal level, as a fraction (`0.9` for 90%).
    pub level: f64,
    /// The static baseline's quantile of |log-return error| on the calibration split.
    pub q_logret: f64,
    /// Share of test rows whose actual close fell inside the interval.
    pub coverage: f64,
    /// Mean interval width, USD.
    pub mean_width_usd: f64,
    /// Mean interval score (Winkler), USD: the width, plus `2/α` times the distance by which
    /// the actual close fell outside (α = 1 − level). Lower is better; it rewards narrow
    /// intervals and punishes misses by how far they miss.
    #[serde(default)]
    pub interval_score_usd: f64,
    /// The lowest coverage over any [`ROLLING_HOURS`] consecutive test rows (`None` with
    /// fewer rows): a band that is right on average but wrong for a month shows here.
    #[serde(default)]
    pub worst_720h_coverage: Option<f64>,
    /// The longest run of consecutive test rows whose close fell outside.
    #[serde(default)]
    pub longest_miss_run_hours: usize,
    /// Coverage in the test rows of low, middle and high forecast volatility σ̂.
    #[serde(default)]
    pub coverage_by_vol_tercile: Vec<f64>,
    /// The static baseline (`last · exp(pred ± q_logret)`) on the same rows.
    #[serde(default)]
    pub baseline_static: StaticBaseline,
}

/// The static split-conformal interval's figures on the test rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StaticBaseline {
    /// Coverage.
    pub coverage: f64,
    /// Mean width, USD.
    pub mean_width_usd: f64,
    /// Mean Winkler interval score, USD.
    pub interval_score_usd: f64,
}

pub use rps_model::intervals::{ROLLING_HOURS, interval_score, rolling_coverage};

/// The test rows of one level: the served bounds and σ̂ per row.
#[derive(Debug, Clone, Copy)]
pub struct Bounds<'a> {
    /// Lower bounds, USD.
    pub lower: &'a [f64],
    /// Upper bounds, USD.
    pub upper: &'a [f64],
    /// σ̂ of each row.
    pub sigma: &'a [f64],
}

/// The figures of the served intervals `online` at `level`, and of the static baseline
/// `last · exp(pred_logret ± q)` on the same rows.
pub fn interval_metrics(
    last: &[f64],
    actual: &[f64],
    pred_logret: &[f64],
    level: f64,
    q: f64,
    online: Bounds<'_>,
) -> IntervalMetrics {
    let served = summarize(
        level,
        online.lower,
        online.upper,
        actual,
        Some(online.sigma),
    );
    let lo: Vec<f64> = last
        .iter()
        .zip(pred_logret)
        .map(|(l, p)| l * (p - q).exp())
        .collect();
    let hi: Vec<f64> = last
        .iter()
        .zip(pred_logret)
        .map(|(l, p)| l * (p + q).exp())
        .collect();
    let fixed = summarize(level, &lo, &hi, actual, None);
    IntervalMetrics {
        level,
        q_logret: q,
        coverage: served.coverage,
        mean_width_usd: served.mean_width_usd,
        interval_score_usd: served.interval_score_usd,
        worst_720h_coverage: served.worst_720h_coverage,
        longest_miss_run_hours: served.longest_miss_run_hours,
        coverage_by_vol_tercile: served.coverage_by_vol_tercile,
        baseline_static: StaticBaseline {
            coverage: fixed.coverage,
            mean_width_usd: fixed.mean_width_usd,
            interval_score_usd: fixed.interval_score_usd,
        },
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
    fn served_and_static_intervals_are_scored_on_the_same_rows() {
        let last = [100.0; 4];
        let actual = [100.0, 120.0, 130.0, 100.0];
        let (lower, upper) = ([95.0; 4], [125.0; 4]);
        let sigma = [1.0, 2.0, 3.0, 4.0];
        let b = Bounds {
            lower: &lower,
            upper: &upper,
            sigma: &sigma,
        };
        let m = interval_metrics(&last, &actual, &[0.0; 4], 0.9, 0.01, b);
        assert_eq!(m.coverage, 0.75);
        assert_eq!(m.mean_width_usd, 30.0);
        assert!((m.interval_score_usd - (30.0 + 20.0 * 5.0 / 4.0)).abs() < 1e-9);
        assert_eq!(m.longest_miss_run_hours, 1);
        assert_eq!(m.worst_720h_coverage, None, "fewer rows than the window");
        // The static ±1 % band covers the two unchanged hours only.
        assert_eq!(m.baseline_static.coverage, 0.5);
        let w = 100.0 * (0.01f64.exp() - (-0.01f64).exp());
        let hi = 100.0 * 0.01f64.exp();
        let expected = w + 20.0 * ((120.0 - hi) + (130.0 - hi)) / 4.0;
        assert!((m.baseline_static.interval_score_usd - expected).abs() < 1e-9);
        assert_eq!(m.coverage_by_vol_tercile.len(), 3);
    }
}
