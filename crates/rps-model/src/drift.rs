//! Data-drift statistics: reference histograms of each model input, fitted on the training
//! split and stored in the model package, the population stability index (PSI) of a recent
//! window against them, and each reference's own PSI spread over training windows (the
//! calibration that tells a drifted window from an ordinary one of the same length).
//!
//! Why calibrate: a rolling feature such as `logret_std_24` is strongly autocorrelated, so a
//! week of it covers a narrow part of its training distribution and its PSI is large (2-3 on
//! real BTC data) with no drift at all. The customary 0.2 threshold only makes sense for
//! independent draws; the 99th percentile of the PSI of training windows of the same length is
//! the threshold the feature's own history supports.

/// PSI of the training data against its own reference over windows of one length.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PsiCalibration {
    /// Window length in rows (consecutive hours of one coin).
    pub rows: usize,
    /// [`CALIBRATION_QUANTILE`] of the PSI over every training window of that length.
    pub q99: f64,
}

/// Window lengths (rows) calibrated at fit time: a day to three months.
pub const CALIBRATION_ROWS: &[usize] = &[24, 48, 96, 168, 336, 500, 720, 1000, 1440, 2160];

/// Quantile of the training windows' PSI stored per length.
pub const CALIBRATION_QUANTILE: f64 = 0.99;

/// A length is calibrated only when the training values hold this many disjoint windows of it
/// (fewer would make the quantile the PSI of one or two stretches of history).
pub const CALIBRATION_MIN_SPANS: usize = 3;

/// Windows whose PSI enters the quantile start every `length / WINDOW_STEPS` rows (1 for short
/// windows): overlapping windows carry little new information and cost as much as any other.
const WINDOW_STEPS: usize = 24;

/// A feature's training distribution: bin edges from training quantiles and the fraction of
/// training values in each bin.
///
/// `edges` has `bins + 1` entries: the training minimum, the inner cut points, the maximum.
/// The outer bins are open-ended when binning new data (a value below the training minimum
/// counts in the first bin), so `fractions.len() == edges.len() - 1` and every value lands
/// somewhere. A value `v` goes to the first bin whose upper inner edge is `> v`. Inner edges
/// sit halfway between two distinct training values, never on one, so a value that moves by
/// an ULP (a JSON float round trip, say) stays in its bin.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReferenceHistogram {
    /// The model input's feature name.
    pub feature: String,
    /// Bin edges, ascending: `bins + 1` values (training minimum, inner cuts, maximum).
    pub edges: Vec<f64>,
    /// Fraction of training values in each bin (`edges.len() - 1` values).
    pub fractions: Vec<f64>,
    /// The PSI spread of training windows per window length, ascending by length (empty in
    /// packages written before calibration existed, or with too little training data).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calibration: Vec<PsiCalibration>,
}

/// Fractions below this are floored in PSI (an empty bin would give an infinite term).
const FLOOR: f64 = 1e-4;

/// Values closer than this are one value for binning: `sin(π/6)` and `sin(5π/6)` differ in
/// the last bit, and a cut between them would sit within an ULP of both, where a JSON float
/// round trip may move it.
fn same_value(a: f64, b: f64) -> bool {
    (b - a).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-12
}

/// The cut point halfway between `a < b`.
fn between(a: f64, b: f64) -> f64 {
    a + (b - a) * 0.5
}

impl ReferenceHistogram {
    /// Fits bins on `values` (non-finite values ignored) at the `bins`-quantiles; repeated
    /// quantiles (discrete features such as hour of day) merge into one edge. `values` in time
    /// order (one coin after another) also calibrate the PSI of windows of the lengths in
    /// [`CALIBRATION_ROWS`]. `None` when no finite value exists.
    pub fn fit(feature: &str, values: &[f64], bins: usize) -> Option<ReferenceHistogram> {
        let ordered: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if ordered.is_empty() {
            return None;
        }
        let mut v = ordered.clone();
        v.sort_by(f64::total_cmp);
        let bins = bins.max(1);
        let n = v.len();
        // The cut below the k-th quantile value: between it and the largest clearly smaller
        // value, so every copy of a repeated value (or of one equal but for rounding) falls in
        // the same bin, and the cut is many ULPs away from both neighbours.
        let mut inner: Vec<f64> = (1..bins)
            .filter_map(|k| {
                let i = (k * n / bins).min(n - 1);
                let mut first = v.partition_point(|x| *x < v[i]);
                while first > 0 && same_value(v[first - 1], v[first]) {
                    first -= 1;
                }
                (first > 0).then(|| between(v[first - 1], v[first]))
            })
            .collect();
        inner.dedup();
        let mut edges = Vec::with_capacity(inner.len() + 2);
        edges.push(v[0]);
        edges.extend(inner);
        edges.push(v[n - 1]);
        let mut h = ReferenceHistogram {
            feature: feature.to_string(),
            edges,
            fractions: Vec::new(),
            calibration: Vec::new(),
        };
        h.fractions = h.fractions_of(&v);
        h.calibration = h.calibrate(&ordered);
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
        inner.partition_point(|e| *e <= v).min(self.bins() - 1)
    }

    /// Counts of the finite `values` per bin, and how many there were.
    fn counts_of(&self, values: &[f64]) -> (Vec<usize>, usize) {
        let mut counts = vec![0usize; self.bins()];
        let mut n = 0usize;
        for &v in values.iter().filter(|v| v.is_finite()) {
            counts[self.bin_of(v)] += 1;
            n += 1;
        }
        (counts, n)
    }

    /// Fractions of the finite `values` per bin (all zero when there are none).
    pub fn fractions_of(&self, values: &[f64]) -> Vec<f64> {
        let (counts, n) = self.counts_of(values);
        counts
            .iter()
            .map(|&c| if n == 0 { 0.0 } else { c as f64 / n as f64 })
            .collect()
    }

    /// PSI of `n > 0` values binned into `counts`.
    fn psi_of_counts(&self, counts: &[usize], n: usize) -> f64 {
        self.fractions
            .iter()
            .zip(counts)
            .map(|(&e, &c)| {
                let (e, a) = (e.max(FLOOR), (c as f64 / n as f64).max(FLOOR));
                (a - e) * (a / e).ln()
            })
            .sum()
    }

    /// The PSI quantile of training windows per calibrated length (sliding windows over
    /// `ordered`, counts updated incrementally).
    fn calibrate(&self, ordered: &[f64]) -> Vec<PsiCalibration> {
        let bins: Vec<usize> = ordered.iter().map(|&v| self.bin_of(v)).collect();
        let mut out = Vec::new();
        for &len in CALIBRATION_ROWS {
            if bins.len() < len * CALIBRATION_MIN_SPANS {
                break;
            }
            let step = (len / WINDOW_STEPS).max(1);
            let mut counts = vec![0usize; self.bins()];
            for &b in &bins[..len] {
                counts[b] += 1;
            }
            let mut psis = vec![self.psi_of_counts(&counts, len)];
            for end in len..bins.len() {
                counts[bins[end]] += 1;
                counts[bins[end - len]] -= 1;
                if (end + 1 - len) % step == 0 {
                    psis.push(self.psi_of_counts(&counts, len));
                }
            }
            psis.sort_by(f64::total_cmp);
            let i = ((psis.len() - 1) as f64 * CALIBRATION_QUANTILE).round() as usize;
            out.push(PsiCalibration {
                rows: len,
                q99: psis[i],
            });
        }
        out
    }

    /// The calibrated PSI quantile for a window of `rows` rows: that of the longest
    /// calibrated length not above `rows` (shorter windows spread more, so this errs towards
    /// a higher threshold). `None` when no calibrated length fits.
    pub fn calibrated_psi(&self, rows: usize) -> Option<f64> {
        self.calibration
            .iter()
            .rev()
            .find(|c| c.rows <= rows)
            .map(|c| c.q99)
    }
}

/// Reference histograms for named feature columns (`columns[i]` holds `names[i]`'s training
/// values, in time order), skipping columns without a finite value.
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
/// `Σ (a − e) · ln(a / e)` over bins, with fractions floored at 1e-4. 0 = identical; above
/// 0.2 is the customary "significant shift" for independent draws (autocorrelated windows
/// need [`ReferenceHistogram::calibrated_psi`]). NaN when `values` has no finite entry.
pub fn psi(reference: &ReferenceHistogram, values: &[f64]) -> f64 {
    let (counts, n) = reference.counts_of(values);
    if n == 0 {
        return f64::NAN;
    }
    reference.psi_of_counts(&counts, n)
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

    /// Deterministic uniform draws in [0, 1) (a 64-bit LCG; no dependency needed).
    fn uniform(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (s >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    #[test]
    fn inner_edges_sit_strictly_between_distinct_training_values() {
        let v: Vec<f64> = uniform(5000, 1).iter().map(|x| (x * 1e3).ln()).collect();
        let h = ReferenceHistogram::fit("x", &v, 10).unwrap();
        let inner = &h.edges[1..h.edges.len() - 1];
        assert_eq!(inner.len(), 9);
        for e in inner {
            assert!(!v.contains(e), "edge {e} is a training value");
        }
    }

    #[test]
    fn training_values_keep_their_bins_through_a_default_json_round_trip() {
        // Values with long decimal expansions: the default (non-round-trip) float parser may
        // land an ULP away from what was written; with edges between values that cannot
        // move a value across an edge.
        let v: Vec<f64> = uniform(20_000, 2)
            .iter()
            .map(|x| (x * 7.0).sin() / 3.0)
            .collect();
        let h = ReferenceHistogram::fit("x", &v, 10).unwrap();
        let back: ReferenceHistogram =
            serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        let values: Vec<f64> = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        for (a, b) in v.iter().zip(&values) {
            assert_eq!(h.bin_of(*a), back.bin_of(*b), "{a} vs {b}");
            // What a one-ULP parse error would do: nothing.
            let bin = h.bin_of(*a);
            assert_eq!(h.bin_of(a.next_up()), bin, "{a}");
            assert_eq!(h.bin_of(a.next_down()), bin, "{a}");
        }
        assert!(psi(&back, &values).abs() < 1e-12);
    }

    #[test]
    fn independent_draws_calibrate_near_zero_and_a_smooth_series_far_above_it() {
        let iid = uniform(10_000, 3);
        let h = ReferenceHistogram::fit("iid", &iid, 10).unwrap();
        let q = h.calibrated_psi(168).unwrap();
        assert!(q > 0.0 && q < 0.2, "independent draws, 168 rows: {q}");
        // A rolling mean over 48 draws: neighbouring values share most of their window, so a
        // week covers a narrow part of the distribution.
        let smooth: Vec<f64> = iid
            .windows(48)
            .map(|w| w.iter().sum::<f64>() / 48.0)
            .collect();
        let h = ReferenceHistogram::fit("smooth", &smooth, 10).unwrap();
        let q168 = h.calibrated_psi(168).unwrap();
        assert!(q168 > 0.5, "smoothed over 48 rows, 168-row windows: {q168}");
        // Longer windows cover more of the distribution.
        assert!(
            h.calibrated_psi(1000).unwrap() < q168,
            "{:?}",
            h.calibration
        );
    }

    #[test]
    fn the_calibration_used_is_that_of_the_longest_length_not_above_the_window() {
        let h = ReferenceHistogram::fit("x", &uniform(3000, 4), 10).unwrap();
        let lengths: Vec<usize> = h.calibration.iter().map(|c| c.rows).collect();
        // 3000 values hold three disjoint windows of up to 1000 rows.
        assert_eq!(lengths, [24, 48, 96, 168, 336, 500, 720, 1000]);
        assert_eq!(h.calibrated_psi(200), Some(h.calibration[3].q99));
        assert_eq!(h.calibrated_psi(5000), Some(h.calibration[7].q99));
        assert_eq!(h.calibrated_psi(23), None);
    }

    #[test]
    fn a_package_written_before_calibration_still_loads() {
        let old = r#"{"feature":"x","edges":[0.0,0.5,1.0],"fractions":[0.5,0.5]}"#;
        let h: ReferenceHistogram = serde_json::from_str(old).unwrap();
        assert!(h.calibration.is_empty());
        assert_eq!(h.calibrated_psi(168), None);
    }

    #[test]
    fn values_equal_but_for_rounding_share_a_bin() {
        // Hour-of-day sines: sin(π/6) and sin(5π/6) differ in the last bit.
        let v: Vec<f64> = (0..2400)
            .map(|i| (f64::from(i % 24) * std::f64::consts::PI / 12.0).sin())
            .collect();
        let h = ReferenceHistogram::fit("hour_sin", &v, 10).unwrap();
        // Pairs of sines that differ only by rounding (e.g. hours 2 and 10).
        let mut pairs = 0;
        for a in &v[..24] {
            for b in &v[..24] {
                if a != b && (a - b).abs() < 1e-12 {
                    pairs += 1;
                    assert_eq!(h.bin_of(*a), h.bin_of(*b), "{a} vs {b}");
                }
            }
        }
        assert!(pairs > 0, "the fixture has values equal but for rounding");
        let back: ReferenceHistogram =
            serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert!(psi(&back, &v).abs() < 1e-12, "{}", psi(&back, &v));
    }

    #[test]
    fn a_histogram_survives_json() {
        let h = ReferenceHistogram::fit("x", &ramp(100, 0.0), 4).unwrap();
        let back: ReferenceHistogram =
            serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(back, h);
    }
}
