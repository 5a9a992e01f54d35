//! The volatility forecast σ̂ₜ of the next hour's log return, from range-based variance in a
//! HAR form (Corsi 2009) on Parkinson's estimator (Parkinson 1980).
//!
//! `ln pkₜ₊₁` is regressed on `ln pkₜ`, the logs of the mean of pk over the last 6, 24 and
//! 168 hours, and the first two harmonics of the UTC hour of day (intraday seasonality),
//! by least squares on the training rows. The forecast variance is the log-normal mean
//! `exp(x·β + s²/2)` (`s²` the residual variance), and σ̂ its square root. Variances below a
//! floor (a bar whose high equals its low has pk = 0) are raised to it before the log.

use std::f64::consts::TAU;
use std::sync::LazyLock;

use rps_core::time::HOUR_MS;
use rps_features::{FeatureFrame, spec};
use serde::{Deserialize, Serialize};

use crate::{ModelError, Result};

/// The features the volatility model reads, in order, then `hour`.
pub const VOLATILITY_INPUTS: [&str; 4] = [
    "parkinson",
    "parkinson_mean_6",
    "parkinson_mean_24",
    "parkinson_mean_168",
];

/// Coefficients: the intercept, the four log variances, two hour-of-day harmonics (sin, cos).
const N_COEF: usize = 1 + VOLATILITY_INPUTS.len() + 4;

/// The floor is this share of the median training variance.
const FLOOR_SHARE: f64 = 0.01;

/// Fewer training rows than this per coefficient is refused.
const MIN_ROWS_PER_COEF: usize = 20;

/// Spec columns of the inputs and of `hour`.
static COLUMNS: LazyLock<([usize; 4], usize)> = LazyLock::new(|| {
    let sp = spec();
    let col = |n: &str| {
        sp.index(n)
            .unwrap_or_else(|| panic!("feature {n} is in the spec table"))
    };
    (VOLATILITY_INPUTS.map(col), col("hour"))
});

/// A fitted volatility model, stored in the model package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolatilityModel {
    /// Coefficients of `ln pkₜ₊₁`: intercept; `ln pk`, `ln pk_mean_6`, `ln pk_mean_24`,
    /// `ln pk_mean_168`; `sin`, `cos` of `2π·hour/24` and of `4π·hour/24`.
    pub coef: Vec<f64>,
    /// Variance of the fit's residuals (the log-normal correction `s²/2`).
    pub residual_var: f64,
    /// Variances below this are raised to it before the log.
    pub floor: f64,
    /// Training rows fitted on.
    pub rows: usize,
}

/// The next feature row's Parkinson variance when it is exactly one hour after `row`.
fn next_variance(frame: &FeatureFrame, row: usize) -> Option<f64> {
    let next = row + 1;
    (next < frame.len() && frame.ts[next] - frame.ts[row] == HOUR_MS)
        .then(|| frame.row(next)[COLUMNS.0[0]])
        .filter(|v| v.is_finite())
}

impl VolatilityModel {
    /// Fits on the rows `(frame, row)` of `frames` whose next hour is in the frame.
    pub fn fit(frames: &[FeatureFrame], rows: &[(usize, usize)]) -> Result<VolatilityModel> {
        let samples: Vec<(&[f64], f64)> = rows
            .iter()
            .filter_map(|&(f, r)| {
                let frame = &frames[f];
                next_variance(frame, r).map(|y| (frame.row(r), y))
            })
            .collect();
        if samples.len() < MIN_ROWS_PER_COEF * N_COEF {
            return Err(ModelError::Training(format!(
                "the volatility model needs at least {} training rows with a next hour, got {}",
                MIN_ROWS_PER_COEF * N_COEF,
                samples.len()
            )));
        }
        let mut pks: Vec<f64> = samples
            .iter()
            .map(|(row, _)| row[COLUMNS.0[0]])
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        pks.sort_by(f64::total_cmp);
        let median = pks.get(pks.len() / 2).copied().unwrap_or(1e-6);
        let mut model = VolatilityModel {
            coef: vec![0.0; N_COEF],
            residual_var: 0.0,
            floor: (median * FLOOR_SHARE).max(f64::MIN_POSITIVE),
            rows: samples.len(),
        };
        // Normal equations X'X β = X'y, accumulated row by row.
        let mut xtx = [[0.0; N_COEF]; N_COEF];
        let mut xty = [0.0; N_COEF];
        let mut targets = Vec::with_capacity(samples.len());
        for (row, y) in &samples {
            let x = model.design(row);
            let y = model.log_variance(*y);
            targets.push(y);
            for i in 0..N_COEF {
                xty[i] += x[i] * y;
                for j in 0..N_COEF {
                    xtx[i][j] += x[i] * x[j];
                }
            }
        }
        model.coef = solve(xtx, xty).ok_or_else(|| {
            ModelError::Training(
                "the volatility model's least-squares system is singular (constant prices?)".into(),
            )
        })?;
        let n = samples.len() as f64;
        model.residual_var = samples
            .iter()
            .zip(&targets)
            .map(|((row, _), y)| {
                let e = y - model.predict_log_variance(row);
                e * e
            })
            .sum::<f64>()
            / (n - N_COEF as f64).max(1.0);
        if !model.coef.iter().all(|c| c.is_finite()) || !model.residual_var.is_finite() {
            return Err(ModelError::Training(
                "the volatility model's fit is not finite".into(),
            ));
        }
        Ok(model)
    }

    /// A model that forecasts the same σ̂ every hour: for packages made without a training
    /// split (hand-built fixtures, tools), where the intervals then scale like the static
    /// ones.
    pub fn constant(sigma: f64) -> VolatilityModel {
        let mut coef = vec![0.0; N_COEF];
        coef[0] = 2.0 * sigma.ln();
        VolatilityModel {
            coef,
            residual_var: 0.0,
            floor: f64::MIN_POSITIVE,
            rows: 0,
        }
    }

    fn log_variance(&self, v: f64) -> f64 {
        if v.is_finite() && v > self.floor {
            v.ln()
        } else {
            self.floor.ln()
        }
    }

    /// The regressors of one feature row (spec order).
    fn design(&self, row: &[f64]) -> [f64; N_COEF] {
        let (cols, hour) = &*COLUMNS;
        let h = TAU * row[*hour] / 24.0;
        let mut x = [0.0; N_COEF];
        x[0] = 1.0;
        for (k, &c) in cols.iter().enumerate() {
            x[1 + k] = self.log_variance(row[c]);
        }
        let b = 1 + cols.len();
        x[b] = h.sin();
        x[b + 1] = h.cos();
        x[b + 2] = (2.0 * h).sin();
        x[b + 3] = (2.0 * h).cos();
        x
    }

    fn predict_log_variance(&self, row: &[f64]) -> f64 {
        self.design(row)
            .iter()
            .zip(&self.coef)
            .map(|(x, c)| x * c)
            .sum()
    }

    /// σ̂ of the next hour's log return after the hour of feature row `row` (spec order).
    pub fn sigma(&self, row: &[f64]) -> f64 {
        (self.predict_log_variance(row) + self.residual_var / 2.0)
            .exp()
            .sqrt()
    }

    /// Why this model cannot run (wrong number of coefficients, non-finite values), or
    /// `None` when it can.
    pub fn check(&self) -> Option<String> {
        if self.coef.len() != N_COEF {
            return Some(format!(
                "the volatility model has {} coefficients, this build reads {N_COEF}",
                self.coef.len()
            ));
        }
        let finite = self.coef.iter().all(|c| c.is_finite())
            && self.residual_var.is_finite()
            && self.residual_var >= 0.0
            && self.floor.is_finite()
            && self.floor > 0.0;
        (!finite).then(|| "the volatility model holds non-finite values".into())
    }
}

/// Solves the symmetric system `a x = b` by Gaussian elimination with partial pivoting
/// (9 unknowns: no linear-algebra crate needed). `None` when it is singular.
fn solve<const N: usize>(mut a: [[f64; N]; N], mut b: [f64; N]) -> Option<Vec<f64>> {
    let scale = (0..N).map(|i| a[i][i].abs()).fold(0.0, f64::max);
    for col in 0..N {
        let pivot = (col..N).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() <= 1e-12 * scale {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col];
        for r in col + 1..N {
            let f = a[r][col] / pivot_row[col];
            for (x, p) in a[r][col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            b[r] -= f * b[col];
        }
    }
    let mut x = vec![0.0; N];
    for r in (0..N).rev() {
        let s: f64 = (r + 1..N).map(|c| a[r][c] * x[c]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_solver_recovers_a_known_solution() {
        let a = [[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]];
        let want = [1.0, -2.0, 0.5];
        let b: [f64; 3] = std::array::from_fn(|i| (0..3).map(|j| a[i][j] * want[j]).sum());
        let x = solve(a, b).unwrap();
        for (g, w) in x.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{x:?}");
        }
        assert!(solve([[1.0, 2.0], [2.0, 4.0]], [1.0, 2.0]).is_none());
    }
}
