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
}

/// The window of the rolling coverage ([`IntervalMetrics::worst_720h_coverage`]): 30 days.
pub const ROLLING_HOURS: usize = 720;

/// Winkler's interval score of one interval `[lo, hi]` at level `1 − alpha` for the outcome
/// `y`.
pub fn interval_score(lo: f64, hi: f64, y: f64, alpha: f64) -> f64 {
    let miss = if y < lo {
        lo - y
    } else if y > hi {
        y - hi
    } else {
        0.0
    };
    (hi - lo) + 2.0 / alpha * miss
}

/// The coverage of each window of `window` consecutive rows, in order (empty when there are
/// fewer rows).
pub fn rolling_coverage(inside: &[bool], window: usize) -> Vec<f64> {
    if window == 0 || inside.len() < window {
        return Vec::new();
    }
    let mut hits = inside[..window].iter().filter(|&&b| b).count();
    let mut out = vec![hits as f64 / window as f64];
    for i in window..inside.len() {
        hits += usize::from(inside[i]);
        hits -= usize::from(inside[i - window]);
        out.push(hits as f64 / window as f64);
    }
    out
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
    let alpha = 1.0 - level;
    let (mut width, mut score) = (0.0, 0.0);
    let mut hit = Vec::with_capacity(actual.len());
    for i in 0..actual.len() {
        let lo = last[i] * (pred_logret[i] - q).exp();
        let hi = last[i] * (pred_logret[i] + q).exp();
        hit.push(actual[i] >= lo && actual[i] <= hi);
        width += hi - lo;
        score += interval_score(lo, hi, actual[i], alpha);
    }
    let (mut run, mut longest) = (0usize, 0usize);
    for &h in &hit {
        run = if h { 0 } else { run + 1 };
        longest = longest.max(run);
    }
    IntervalMetrics {
        level,
        q_logret: q,
        coverage: hit.iter().filter(|&&h| h).count() as f64 / n,
        mean_width_usd: width / n,
        interval_score_usd: score / n,
        worst_720h_coverage: rolling_coverage(&hit, ROLLING_HOURS)
            .into_iter()
            .reduce(f64::min),
        longest_miss_run_hours: longest,
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
    fn the_interval_score_is_the_width_plus_the_weighted_miss() {
        // Inside: the width alone.
        assert_eq!(interval_score(90.0, 110.0, 100.0, 0.1), 20.0);
        // 5 below a 90 % interval: 20 + (2 / 0.1) * 5.
        assert!((interval_score(90.0, 110.0, 85.0, 0.1) - 120.0).abs() < 1e-9);
        assert!((interval_score(90.0, 110.0, 111.0, 0.1) - 40.0).abs() < 1e-9);
    }

    #[test]
    fn rolling_coverage_finds_the_worst_window_and_miss_runs_are_counted() {
        let inside = [true, true, false, false, true, true];
        assert_eq!(
            rolling_coverage(&inside, 3),
            [2.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 2.0 / 3.0]
        );
        assert!(rolling_coverage(&inside, 7).is_empty());
        let last = [100.0; 4];
        let actual = [100.0, 120.0, 130.0, 100.0];
        let m = interval_metrics(&last, &actual, &[0.0; 4], 0.9, 0.01);
        assert_eq!(m.longest_miss_run_hours, 2);
        assert_eq!(m.worst_720h_coverage, None, "fewer rows than the window");
        let w = 100.0 * (0.01f64.exp() - (-0.01f64).exp());
        let hi = 100.0 * 0.01f64.exp();
        let expected = w + 20.0 * ((120.0 - hi) + (130.0 - hi)) / 4.0;
        assert!((m.interval_score_usd - expected).abs() < 1e-9);
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
