//! The online conformal calibrator: volatility-scaled scores in a sliding window, with the
//! level of each interval corrected online by adaptive conformal inference.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::forecaster::Interval;
use crate::{ModelError, Result};

/// How the calibrator adapts (flags and `params.yaml` of training, serving and backtesting).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibratorParams {
    /// Scores kept: the threshold is a quantile of the last `window` scored hours.
    pub window: usize,
    /// ACI step γ: after each scored hour, `αₜ₊₁ = αₜ + γ(α − errₜ)`.
    pub gamma: f64,
}

impl Default for CalibratorParams {
    /// 4,320 hours (180 days) and γ = 0.005.
    fn default() -> Self {
        CalibratorParams {
            window: 4_320,
            gamma: 0.005,
        }
    }
}

impl CalibratorParams {
    /// Why these parameters cannot run, or `None`.
    pub fn check(&self) -> Option<String> {
        if self.window == 0 {
            return Some("the calibration window must hold at least one hour".into());
        }
        if !(self.gamma.is_finite() && (0.0..1.0).contains(&self.gamma)) {
            return Some(format!("ACI step γ = {} is not in [0, 1)", self.gamma));
        }
        None
    }
}

/// A calibrator's state: what a package starts from (the calibration split's scores) and
/// what a replay ends with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationState {
    /// The interval levels, ascending (`0.9` for 90%).
    pub levels: Vec<f64>,
    /// The current miscoverage target αₜ of each level (starts at `1 − level`).
    pub alpha: Vec<f64>,
    /// The window of scores, oldest first.
    pub scores: Vec<f64>,
}

impl CalibrationState {
    /// A fresh state: α = 1 − level, and the given scores (oldest first).
    pub fn new(levels: &[f64], scores: Vec<f64>) -> CalibrationState {
        let mut levels = levels.to_vec();
        levels.sort_by(f64::total_cmp);
        CalibrationState {
            alpha: levels.iter().map(|l| 1.0 - l).collect(),
            levels,
            scores,
        }
    }
}

/// The online calibrator of one coin.
#[derive(Debug, Clone)]
pub struct OnlineCalibrator {
    params: CalibratorParams,
    levels: Vec<f64>,
    alpha: Vec<f64>,
    /// Scores in arrival order, and the same scores sorted (for O(log W) quantiles).
    order: VecDeque<f64>,
    sorted: Vec<f64>,
    /// Hours scored since the state was built.
    scored: usize,
}

impl OnlineCalibrator {
    /// A calibrator starting from `state` (its newest `params.window` scores).
    pub fn new(params: CalibratorParams, state: &CalibrationState) -> Result<OnlineCalibrator> {
        let bad = |reason: String| ModelError::Training(format!("calibrator: {reason}"));
        if let Some(reason) = params.check() {
            return Err(bad(reason));
        }
        if state.levels.is_empty() || state.levels.len() != state.alpha.len() {
            return Err(bad(format!(
                "{} levels and {} alphas",
                state.levels.len(),
                state.alpha.len()
            )));
        }
        if !state.levels.windows(2).all(|w| w[0] < w[1])
            || !state.levels.iter().all(|l| *l > 0.0 && *l < 1.0)
        {
            return Err(bad(format!(
                "levels {:?} are not ascending fractions in (0, 1)",
                state.levels
            )));
        }
        let scores: Vec<f64> = state
            .scores
            .iter()
            .copied()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .collect();
        if scores.is_empty() {
            return Err(bad("no calibration scores to start from".into()));
        }
        let keep = &scores[scores.len().saturating_sub(params.window)..];
        let mut sorted = keep.to_vec();
        sorted.sort_by(f64::total_cmp);
        Ok(OnlineCalibrator {
            params,
            levels: state.levels.clone(),
            alpha: state.alpha.iter().map(|a| a.clamp(-1.0, 2.0)).collect(),
            order: keep.iter().copied().collect(),
            sorted,
            scored: 0,
        })
    }

    /// The interval levels, ascending.
    pub fn levels(&self) -> &[f64] {
        &self.levels
    }

    /// The current αₜ of each level.
    pub fn alpha(&self) -> &[f64] {
        &self.alpha
    }

    /// The parameters.
    pub fn params(&self) -> CalibratorParams {
        self.params
    }

    /// Scores in the window.
    pub fn window_len(&self) -> usize {
        self.order.len()
    }

    /// Hours scored since this calibrator was built.
    pub fn scored(&self) -> usize {
        self.scored
    }

    /// The state to persist or start another calibrator from.
    pub fn state(&self) -> CalibrationState {
        CalibrationState {
            levels: self.levels.clone(),
            alpha: self.alpha.clone(),
            scores: self.order.iter().copied().collect(),
        }
    }

    /// The threshold qₜ of each level: the `⌈(n+1)(1−αₜ)⌉`-th smallest of the `n` scores in
    /// the window (the largest when that rank exceeds `n`, the smallest when αₜ ≥ 1), made
    /// non-decreasing across ascending levels so the intervals nest.
    pub fn thresholds(&self) -> Vec<f64> {
        let n = self.sorted.len();
        let mut out = Vec::with_capacity(self.levels.len());
        let mut floor = 0.0_f64;
        for a in &self.alpha {
            let rank = ((n + 1) as f64 * (1.0 - a)).ceil();
            let k = if rank.is_nan() {
                n
            } else {
                (rank.max(1.0) as usize).min(n)
            };
            floor = floor.max(self.sorted[k - 1]);
            out.push(floor);
        }
        out
    }

    /// The intervals of every level for a forecast log return `mu` with volatility `sigma`
    /// after the close `last_close`.
    pub fn intervals(&self, last_close: f64, mu: f64, sigma: f64) -> Vec<Interval> {
        self.levels
            .iter()
            .zip(self.thresholds())
            .map(|(&level, q)| Interval {
                level,
                lower: last_close * (mu - q * sigma).exp(),
                upper: last_close * (mu + q * sigma).exp(),
            })
            .collect()
    }

    /// Scores the hour whose `intervals` (from [`OnlineCalibrator::intervals`] with the same
    /// `last_close`, `mu` and `sigma`) met the close `next_close`: updates αₜ of each level
    /// from whether it covered, then adds the hour's score to the window. Returns whether
    /// each level covered.
    pub fn observe(
        &mut self,
        intervals: &[Interval],
        last_close: f64,
        mu: f64,
        sigma: f64,
        next_close: f64,
    ) -> Vec<bool> {
        let covered: Vec<bool> = intervals
            .iter()
            .map(|i| next_close >= i.lower && next_close <= i.upper)
            .collect();
        for ((a, level), &c) in self.alpha.iter_mut().zip(&self.levels).zip(&covered) {
            let err = if c { 0.0 } else { 1.0 };
            // Bounded so that a long run of one outcome cannot wind α up without limit.
            *a = (*a + self.params.gamma * ((1.0 - level) - err)).clamp(-1.0, 2.0);
        }
        let score = ((next_close / last_close).ln() - mu).abs() / sigma;
        if score.is_finite() {
            self.push(score);
        }
        self.scored += 1;
        covered
    }

    fn push(&mut self, score: f64) {
        if self.order.len() == self.params.window
            && let Some(old) = self.order.pop_front()
        {
            let i = self.sorted.partition_point(|&s| s < old);
            self.sorted.remove(i);
        }
        let i = self.sorted.partition_point(|&s| s < score);
        self.sorted.insert(i, score);
        self.order.push_back(score);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(scores: Vec<f64>, window: usize) -> OnlineCalibrator {
        let params = CalibratorParams {
            window,
            gamma: 0.005,
        };
        OnlineCalibrator::new(params, &CalibrationState::new(&[0.8, 0.9, 0.95], scores)).unwrap()
    }

    #[test]
    fn thresholds_are_the_finite_sample_ranks_and_nest() {
        let c = cal((1..=99).map(f64::from).collect(), 4320);
        // n = 99: ranks ⌈100·0.8⌉ = 80, 90, 95.
        assert_eq!(c.thresholds(), vec![80.0, 90.0, 95.0]);
        let iv = c.intervals(100.0, 0.0, 0.001);
        assert!(iv[0].lower > iv[1].lower && iv[1].lower > iv[2].lower);
        assert!(iv[0].upper < iv[1].upper && iv[1].upper < iv[2].upper);
        // Ten scores: rank ⌈11·0.95⌉ = 11 > 10, so the window maximum.
        assert_eq!(
            cal((1..=10).map(f64::from).collect(), 4320).thresholds()[2],
            10.0
        );
    }

    #[test]
    fn a_miss_lowers_alpha_a_hit_raises_it_and_the_window_slides() {
        let scores: Vec<f64> = (1..=1000).map(|i| f64::from(i) / 1000.0).collect();
        let mut c = cal(scores.clone(), 1000);
        let before = c.thresholds();
        let iv = c.intervals(100.0, 0.0, 0.01);
        // A 5 % move is far outside every interval (scores are at most 1 σ̂ = 1 %).
        assert_eq!(c.observe(&iv, 100.0, 0.0, 0.01, 105.0), vec![false; 3]);
        // α₉₀ = 0.1 + 0.005·(0.1 − 1).
        assert!((c.alpha()[1] - 0.0955).abs() < 1e-12, "{:?}", c.alpha());
        let after = c.thresholds();
        assert!(
            after.iter().zip(&before).all(|(a, b)| a > b),
            "{before:?} -> {after:?}"
        );
        assert_eq!(c.window_len(), 1000, "the oldest score left the window");
        assert_eq!(c.state().scores[999], (1.05f64).ln() / 0.01);
        let mut h = cal(scores, 1000);
        let iv = h.intervals(100.0, 0.0, 0.01);
        assert_eq!(h.observe(&iv, 100.0, 0.0, 0.01, 100.0), vec![true; 3]);
        assert!(
            (h.alpha()[1] - 0.1005).abs() < 1e-12,
            "a hit raises α: {:?}",
            h.alpha()
        );
        assert!(h.thresholds()[1] <= before[1]);
    }

    #[test]
    fn a_state_round_trips_and_bad_states_are_refused() {
        let c = cal(vec![0.5, 1.0, 2.0], 2);
        let s = c.state();
        assert_eq!(s.scores, vec![1.0, 2.0], "the newest `window` scores");
        let p = CalibratorParams::default();
        let again = OnlineCalibrator::new(p, &s).unwrap();
        assert_eq!(again.thresholds(), c.thresholds());
        assert!(OnlineCalibrator::new(p, &CalibrationState::new(&[0.9], vec![])).is_err());
        assert!(OnlineCalibrator::new(p, &CalibrationState::new(&[1.5], vec![1.0])).is_err());
        let bad = CalibratorParams { window: 0, ..p };
        assert!(OnlineCalibrator::new(bad, &s).is_err());
    }
}
