//! Drift detection: data drift as per-feature PSI of recent inputs against the reference
//! histograms stored in the model package, and concept drift as a Page-Hinkley test on the
//! errors of past forecasts (ARCHITECTURE.md, rps-monitor). The same PSI code serves the `/metrics` gauges and
//! the `rps-monitor drift` command of the DAG.

pub mod page_hinkley;
pub mod window;

use std::collections::BTreeMap;

use rps_features::{FEATURES, Kind};
use rps_model::{ReferenceHistogram, psi};

pub use page_hinkley::PageHinkley;
pub use window::InputWindow;

/// The data-drift decision rule, shared by the server's gauges and `rps-monitor drift`.
///
/// A feature has drifted when its PSI exceeds its limit: the larger of `threshold` and the
/// PSI that 99 % of training windows of the same length stay below (the calibration stored
/// in the package; without it, `threshold` alone and over-smoothed features are skipped).
/// The data has drifted when at least `share` of the evaluated features have (like
/// Evidently's share of drifted columns): one feature at the edge of its range is routine
/// among thirty, most of them moving together is not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftRule {
    /// PSI limit for every feature (the customary 0.2), raised per feature by calibration.
    pub threshold: f64,
    /// Share of evaluated features that must drift for a drift verdict, in (0, 1].
    pub share: f64,
}

impl Default for DriftRule {
    fn default() -> Self {
        DriftRule {
            threshold: 0.2,
            share: 0.5,
        }
    }
}

impl DriftRule {
    /// Checks both numbers, naming the flag at fault.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return Err(("threshold", "must be a positive number".into()));
        }
        if !(self.share > 0.0 && self.share <= 1.0) {
            return Err(("share", "must be in (0, 1]".into()));
        }
        Ok(())
    }
}

/// PSI per feature and the verdict of a [`DriftRule`].
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct PsiSummary {
    /// PSI of each reference feature (features without values are left out).
    pub psi: BTreeMap<String, f64>,
    /// The limit each feature's PSI was compared with: max(threshold, calibrated 99th
    /// percentile of training windows of this length).
    pub limits: BTreeMap<String, f64>,
    /// Features whose PSI exceeds their limit.
    pub drifted: Vec<String>,
    /// `drifted` / evaluated features (0 when none was evaluated).
    pub drifted_share: f64,
    /// The share needed for a drift verdict.
    pub share_needed: f64,
    /// The largest PSI (0 when there is none).
    pub max_psi: f64,
    /// The feature with the largest PSI.
    pub max_feature: Option<String>,
    /// The base threshold the limits start from.
    pub threshold: f64,
    /// Whether `drifted_share >= share_needed`.
    pub drift: bool,
    /// How many rows the PSI was computed from.
    pub rows: usize,
    /// Features left out: uncalibrated ones whose smoothing window is too long for the rows
    /// at hand (see [`MIN_INDEPENDENT_WINDOWS`]).
    pub skipped: Vec<String>,
}

/// Without calibration, a feature smoothed over `w` hours takes about `rows / w` independent
/// values in `rows` consecutive hours. With fewer than this many, its PSI measures where the
/// window happens to sit (one calm week, say), not drift, so it is left out.
pub const MIN_INDEPENDENT_WINDOWS: usize = 4;

/// Hours a feature averages over (its own window for rolling statistics; lagged and
/// point features are not smoothed).
pub fn smoothing_window(name: &str) -> usize {
    match FEATURES.iter().find(|d| d.name == name).map(|d| d.kind) {
        Some(Kind::LogRetLag(_)) => 2,
        Some(k) => k.window(),
        None => 1,
    }
}

/// Computes PSI for every reference histogram whose feature `values_of` can supply, over
/// `rows` rows spanning about `span_hours` consecutive hours, and applies `rule`.
pub fn psi_summary(
    reference: &[ReferenceHistogram],
    rows: usize,
    span_hours: usize,
    rule: DriftRule,
    mut values_of: impl FnMut(&str) -> Option<Vec<f64>>,
) -> PsiSummary {
    let mut out = PsiSummary {
        threshold: rule.threshold,
        share_needed: rule.share,
        rows,
        ..Default::default()
    };
    for r in reference {
        let calibrated = r.calibrated_psi(span_hours);
        if calibrated.is_none()
            && smoothing_window(&r.feature) * MIN_INDEPENDENT_WINDOWS > span_hours
        {
            out.skipped.push(r.feature.clone());
            continue;
        }
        let Some(values) = values_of(&r.feature) else {
            continue;
        };
        let v = psi(r, &values);
        if !v.is_finite() {
            continue;
        }
        if out.max_feature.is_none() || v > out.max_psi {
            out.max_psi = v;
            out.max_feature = Some(r.feature.clone());
        }
        let limit = calibrated.map_or(rule.threshold, |q| q.max(rule.threshold));
        if v > limit {
            out.drifted.push(r.feature.clone());
        }
        out.psi.insert(r.feature.clone(), v);
        out.limits.insert(r.feature.clone(), limit);
    }
    if !out.psi.is_empty() {
        out.drifted_share = out.drifted.len() as f64 / out.psi.len() as f64;
        out.drift = out.drifted_share >= rule.share;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An uncalibrated reference (as in packages written before calibration): the base
    /// threshold alone applies.
    fn reference(feature: &str) -> ReferenceHistogram {
        ReferenceHistogram {
            calibration: Vec::new(),
            ..ReferenceHistogram::fit(
                feature,
                &(0..1000).map(|i| f64::from(i) / 1000.0).collect::<Vec<_>>(),
                10,
            )
            .unwrap()
        }
    }

    #[test]
    fn the_same_distribution_is_stable_and_a_shifted_one_drifts() {
        let refs = [reference("logret"), reference("range_rel")];
        let same: Vec<f64> = (0..500).map(|i| f64::from(i) / 500.0).collect();
        let shifted: Vec<f64> = same.iter().map(|v| v * 0.3 + 0.7).collect();
        let s = psi_summary(&refs, 500, 500, DriftRule::default(), |_| {
            Some(same.clone())
        });
        assert!(!s.drift && s.max_psi < 0.05, "{s:?}");
        let s = psi_summary(&refs, 500, 500, DriftRule::default(), |f| {
            Some(if f == "logret" {
                same.clone()
            } else {
                shifted.clone()
            })
        });
        // One of two features drifted: a half share is enough, a larger one is not.
        assert!(s.drift, "{s:?}");
        assert_eq!(s.drifted, ["range_rel"]);
        assert_eq!(s.drifted_share, 0.5);
        assert_eq!(s.max_feature.as_deref(), Some("range_rel"));
        let strict = DriftRule {
            share: 0.75,
            ..DriftRule::default()
        };
        let s = psi_summary(&refs, 500, 500, strict, |f| {
            Some(if f == "logret" {
                same.clone()
            } else {
                shifted.clone()
            })
        });
        assert!(!s.drift && s.drifted.len() == 1, "{s:?}");
    }

    #[test]
    fn slow_uncalibrated_features_are_skipped_in_short_windows() {
        let refs = [reference("logret"), reference("logret_std_168")];
        let v: Vec<f64> = (0..168).map(|i| f64::from(i) / 168.0).collect();
        let s = psi_summary(&refs, 168, 168, DriftRule::default(), |_| Some(v.clone()));
        assert_eq!(s.skipped, vec!["logret_std_168".to_string()]);
        assert!(s.psi.contains_key("logret"));
        assert_eq!(smoothing_window("logret_lag_24"), 2);
        assert_eq!(smoothing_window("logret_std_168"), 169);
    }

    #[test]
    fn a_calibrated_feature_is_judged_against_its_own_spread_and_never_skipped() {
        // A slow feature: a rolling mean over 168 draws of a deterministic noise sequence.
        let mut s = 11u64;
        let noise: Vec<f64> = (0..20_000)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (s >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect();
        let slow: Vec<f64> = noise
            .windows(168)
            .map(|w| w.iter().sum::<f64>() / 168.0)
            .collect();
        let r = ReferenceHistogram::fit("logret_std_168", &slow, 10).unwrap();
        let limit = r.calibrated_psi(168).unwrap();
        assert!(limit > 1.0, "{limit}");
        // A week of its own history: a large PSI, but within the training spread.
        let week = slow[5000..5168].to_vec();
        let s = psi_summary(
            std::slice::from_ref(&r),
            168,
            168,
            DriftRule::default(),
            |_| Some(week.clone()),
        );
        assert!(s.skipped.is_empty(), "{s:?}");
        assert!(s.max_psi > 0.2 && !s.drift, "{s:?}");
        assert_eq!(s.limits["logret_std_168"], limit);
        // The same week moved above the training maximum: drift.
        let high: Vec<f64> = week.iter().map(|v| v + 1.0).collect();
        let s = psi_summary(
            std::slice::from_ref(&r),
            168,
            168,
            DriftRule::default(),
            |_| Some(high.clone()),
        );
        assert!(s.drift && s.max_psi > limit, "{s:?}");
    }
}
