//! Data-drift statistics: reference histograms of each model input, fitted on the training
//! split and stored in the model package, and the population stability index (PSI) of a
//! recent window against them.

/// A feature's training distribution: bin edges from training quantiles and the fraction of
/// training values in each bin.
///
/// `edges` has `bins + 1` entries: the training minimum, the inner cut points, the maximum.
/// The outer bins are open-ended when binning new data (a value below the training minimum
/// counts in the first bin), so `fractions.len() == edges.len() - 1` and every value lands
/// somewhere. A value `v` goes to the first bin whose upper inner edge is `> v`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReferenceHistogram {
    pub feature: String,
    pub edges: Vec<f64>,
    pub fractions: Vec<f64>,
}

/// Fractions below this are floored in PSI (an empty bin would give an infinite term).
const FLOOR: f64 = 1e-4;

impl ReferenceHistogram {
    /// Fits bins on `values` (non-finite values ignored) at the `bins`-quantiles; repeated
    /// quantiles (discrete features such as hour of day) merge into one edge. `None` when no
    /// finite value exists.
    pub fn fit(feature: &str, values: &[f64], bins: usize) -> Option<ReferenceHistogram> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let bins = bins.max(1);
        let n = v.len();
        let mut inner: Vec<f64> = (1..bins).map(|k| v[(k * n / bins).min(n - 1)]).collect();
        inner.dedup();
        // An edge equal to the minimum would leave the first bin empty by construction.
        inner.retain(|e| *e > v[0]);
        let mut edges = Vec::with_capacity(inner.len() + 2);
        edges.push(v[0]);
        edges.extend(inner);
        edges.push(v[n - 1]);
        let mut h = ReferenceHistogram {
            feature: feature.to_string(),
            edges,
            fractions: Vec::new(),
        };
        h.fractions = h.fractions_of(&v);
        Some(h)
    }

    /// Number of bins.
    pub fn bins(&self) -> usize {
        self.edges.len().saturating_sub(1).max(1)
    }

    /// The bin of a value (outer bins open-ended).
    pub fn bin_of(&self, v: f64) -> usize {
        let inner = if self.edges.len() > 2 {
            &self.edges[1..self.edges.len() - 1]
        } else {
            &[][..]
        };
        inner.partition_point(|e| *e <= v)
    }

    /// Fractions of the finite `values` per bin (all zero when there are none).
    pub fn fractions_of(&self, values: &[f64]) -> Vec<f64> {
        let bins = self.bins();
        let mut counts = vec![0usize; bins];
        let mut n = 0usize;
        for &v in values.iter().filter(|v| v.is_finite()) {
            counts[self.bin_of(v).min(bins - 1)] += 1;
            n += 1;
        }
        counts
            .iter()
            .map(|&c| if n == 0 { 0.0 } else { c as f64 / n as f64 })
            .collect()
    }
}

/// Reference histograms for named feature columns (`columns[i]` holds `names[i]`'s training
/// values), skipping columns without a finite value.
pub fn reference_histograms(
    names: &[&str],
    columns: &[Vec<f64>],
    bins: usize,
) -> Vec<ReferenceHistogram> {
    names
        .iter()
        .zip(columns)
        .filter_map(|(n, c)| ReferenceHistogram::fit(n, c, bins))
        .collect()
}

/// Population stability index of `values` against the reference:
/// `Σ (a − e) · ln(a / e)` over bins, with fractions floored at 1e-4. 0 = identical;
/// > 0.2 is the customary "significant shift". NaN when `values` has no finite entry.
pub fn psi(reference: &ReferenceHistogram, values: &[f64]) -> f64 {
    if !values.iter().any(|v| v.is_finite()) {
        return f64::NAN;
    }
    let actual = reference.fractions_of(values);
    reference
        .fractions
        .iter()
        .zip(&actual)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(FLOOR), a.max(FLOOR));
            (a - e) * (a / e).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize, offset: f64) -> Vec<f64> {
        (0..n).map(|i| i as f64 / n as f64 + offset).collect()
    }

    #[test]
    fn decile_bins_hold_a_tenth_of_the_training_values_each() {
        let h = ReferenceHistogram::fit("x", &ramp(1000, 0.0), 10).unwrap();
        assert_eq!(h.bins(), 10);
        for f in &h.fractions {
            assert!((f - 0.1).abs() < 1e-9, "{:?}", h.fractions);
        }
    }

    #[test]
    fn the_same_distribution_has_near_zero_psi_and_a_shift_has_a_large_one() {
        let h = ReferenceHistogram::fit("x", &ramp(1000, 0.0), 10).unwrap();
        assert!(psi(&h, &ramp(500, 0.0)) < 0.01);
        assert!(psi(&h, &ramp(500, 0.5)) > 0.2);
        assert!(psi(&h, &[f64::NAN]).is_nan());
    }

    #[test]
    fn a_discrete_feature_gets_merged_edges_and_values_outside_the_range_still_count() {
        let v: Vec<f64> = (0..700).map(|i| f64::from(i % 7)).collect();
        let h = ReferenceHistogram::fit("dow", &v, 10).unwrap();
        assert_eq!(h.bins(), 7);
        assert!((h.fractions.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(h.bin_of(-5.0), 0);
        assert_eq!(h.bin_of(99.0), 6);
        assert!(psi(&h, &v).abs() < 1e-12);
    }

    #[test]
    fn a_histogram_survives_json() {
        let h = ReferenceHistogram::fit("x", &ramp(100, 0.0), 4).unwrap();
        let back: ReferenceHistogram =
            serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(back, h);
    }
}
