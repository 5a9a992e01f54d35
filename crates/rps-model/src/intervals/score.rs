//! Figures of a set of scored intervals: coverage, mean width, Winkler's interval score,
//! the worst rolling coverage, the longest run of misses, and coverage by volatility
//! tercile. Training, the backtest and their tests read these same functions.

use serde::{Deserialize, Serialize};

/// The window of the rolling coverage ([`IntervalSummary::worst_720h_coverage`]): 30 days.
pub const ROLLING_HOURS: usize = 720;

/// Winkler's interval score of one interval `[lo, hi]` at level `1 − alpha` for the outcome
/// `y`: the width, plus `2/α` times the distance by which `y` fell outside.
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

/// How one interval level did on a set of rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalSummary {
    /// The nominal level, as a fraction (not serialized: reports key the figures by level).
    #[serde(skip)]
    pub level: f64,
    /// Share of rows whose outcome fell inside.
    pub coverage: f64,
    /// Mean width, USD.
    pub mean_width_usd: f64,
    /// Mean Winkler interval score, USD (lower is better).
    pub interval_score_usd: f64,
    /// The lowest coverage over any [`ROLLING_HOURS`] consecutive rows (`None` with fewer).
    pub worst_720h_coverage: Option<f64>,
    /// The longest run of consecutive rows whose outcome fell outside.
    pub longest_miss_run_hours: usize,
    /// Coverage in the rows of low, middle and high forecast volatility (terciles of σ̂, known
    /// before the hour); empty when no σ̂ was given.
    pub coverage_by_vol_tercile: Vec<f64>,
}

/// The tercile (0 low, 1 mid, 2 high) of each value among all of them (ties share a
/// tercile by rank order, so the three groups differ in size by at most one).
pub fn terciles(values: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let n = values.len();
    let mut out = vec![0; n];
    for (rank, &i) in idx.iter().enumerate() {
        out[i] = (rank * 3 / n.max(1)).min(2);
    }
    out
}

/// The figures of level `level` for intervals `[lower[i], upper[i]]` and outcomes
/// `actual[i]`, rows in time order; `sigma` (one per row) adds coverage by its tercile.
pub fn summarize(
    level: f64,
    lower: &[f64],
    upper: &[f64],
    actual: &[f64],
    sigma: Option<&[f64]>,
) -> IntervalSummary {
    let n = actual.len();
    let alpha = 1.0 - level;
    let (mut width, mut score) = (0.0, 0.0);
    let mut hit = Vec::with_capacity(n);
    for i in 0..n {
        let (lo, hi, y) = (lower[i], upper[i], actual[i]);
        hit.push(y >= lo && y <= hi);
        width += hi - lo;
        score += interval_score(lo, hi, y, alpha);
    }
    let (mut run, mut longest) = (0usize, 0usize);
    for &h in &hit {
        run = if h { 0 } else { run + 1 };
        longest = longest.max(run);
    }
    let by_tercile = sigma
        .map(|s| {
            let t = terciles(s);
            (0..3)
                .map(|k| {
                    let (mut rows, mut hits) = (0usize, 0usize);
                    for (i, &ti) in t.iter().enumerate() {
                        if ti == k {
                            rows += 1;
                            hits += usize::from(hit[i]);
                        }
                    }
                    if rows == 0 {
                        f64::NAN
                    } else {
                        hits as f64 / rows as f64
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let d = n.max(1) as f64;
    IntervalSummary {
        level,
        coverage: hit.iter().filter(|&&h| h).count() as f64 / d,
        mean_width_usd: width / d,
        interval_score_usd: score / d,
        worst_720h_coverage: rolling_coverage(&hit, ROLLING_HOURS)
            .into_iter()
            .reduce(f64::min),
        longest_miss_run_hours: longest,
        coverage_by_vol_tercile: by_tercile,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_of_a_small_set() {
        let lower = [9.0, 9.0, 9.0, 9.0];
        let upper = [11.0, 11.0, 11.0, 11.0];
        let actual = [10.0, 12.0, 8.0, 10.5];
        let s = summarize(0.8, &lower, &upper, &actual, Some(&[1.0, 3.0, 2.0, 0.5]));
        assert_eq!(s.coverage, 0.5);
        assert_eq!(s.mean_width_usd, 2.0);
        // Two misses by 1 at α = 0.2: 2 + 10 each.
        assert!((s.interval_score_usd - (2.0 * 4.0 + 20.0) / 4.0).abs() < 1e-12);
        assert_eq!(s.longest_miss_run_hours, 2);
        assert_eq!(s.worst_720h_coverage, None);
        // σ ranks: 0.5, 1 low (rank 0, 1 → tercile 0), 2 (rank 2 → 1), 3 (rank 3 → 2).
        assert_eq!(s.coverage_by_vol_tercile, vec![1.0, 0.0, 0.0]);
        assert_eq!(terciles(&[5.0, 1.0, 3.0]), vec![2, 0, 1]);
    }

    #[test]
    fn rolling_coverage_finds_the_worst_window_and_the_score_weighs_misses() {
        let inside = [true, true, false, false, true, true];
        assert_eq!(
            rolling_coverage(&inside, 3),
            [2.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 2.0 / 3.0]
        );
        assert!(rolling_coverage(&inside, 7).is_empty());
        assert_eq!(interval_score(90.0, 110.0, 100.0, 0.1), 20.0);
        // 5 below a 90 % interval: 20 + (2 / 0.1) * 5.
        assert!((interval_score(90.0, 110.0, 85.0, 0.1) - 120.0).abs() < 1e-9);
        assert!((interval_score(90.0, 110.0, 111.0, 0.1) - 40.0).abs() < 1e-9);
    }
}
