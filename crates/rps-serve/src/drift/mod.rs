//! Drift detection: data drift as per-feature PSI of recent inputs against the reference
//! histograms stored in the model package, and concept drift as a Page-Hinkley test on the
//! errors of past forecasts (DESIGN.md §6). The same PSI code serves the `/metrics` gauges and
//! the `rps-serve drift` command of the DAG.

pub mod page_hinkley;
pub mod window;

use std::collections::BTreeMap;

use rps_core::features::{FEATURES, Kind};
use rps_model::{ReferenceHistogram, psi};

pub use page_hinkley::PageHinkley;
pub use window::InputWindow;

/// PSI per feature and the verdict against a threshold.
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct PsiSummary {
    /// PSI of each reference feature (features without values are left out).
    pub psi: BTreeMap<String, f64>,
    /// The largest PSI (0 when there is none).
    pub max_psi: f64,
    /// The feature with the largest PSI.
    pub max_feature: Option<String>,
    /// The threshold the verdict used.
    pub threshold: f64,
    /// Whether `max_psi > threshold`.
    pub drift: bool,
    /// How many rows the PSI was computed from.
    pub rows: usize,
    /// Features left out because their smoothing window is too long for the rows at hand
    /// (see [`MIN_INDEPENDENT_WINDOWS`]).
    pub skipped: Vec<String>,
}

/// A feature smoothed over `w` hours takes about `rows / w` independent values in `rows`
/// consecutive hours. With fewer than this many, its PSI measures where the window happens to
/// sit (one calm week, say), not drift, so it is left out.
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
/// `rows` rows spanning about `span_hours` hours (features smoothed over more than
/// `span_hours / MIN_INDEPENDENT_WINDOWS` hours are skipped).
pub fn psi_summary(
    reference: &[ReferenceHistogram],
    rows: usize,
    span_hours: usize,
    threshold: f64,
    mut values_of: impl FnMut(&str) -> Option<Vec<f64>>,
) -> PsiSummary {
    let mut out = PsiSummary {
        threshold,
        rows,
        ..Default::default()
    };
    for r in reference {
        if smoothing_window(&r.feature) * MIN_INDEPENDENT_WINDOWS > span_hours {
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
        out.psi.insert(r.feature.clone(), v);
    }
    out.drift = out.max_psi > threshold;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(feature: &str) -> ReferenceHistogram {
        ReferenceHistogram::fit(
            feature,
            &(0..1000).map(|i| f64::from(i) / 1000.0).collect::<Vec<_>>(),
            10,
        )
        .unwrap()
    }

    #[test]
    fn the_same_distribution_is_stable_and_a_shifted_one_drifts() {
        let refs = [reference("logret"), reference("range_rel")];
        let same: Vec<f64> = (0..500).map(|i| f64::from(i) / 500.0).collect();
        let shifted: Vec<f64> = same.iter().map(|v| v * 0.3 + 0.7).collect();
        let s = psi_summary(&refs, 500, 500, 0.2, |_| Some(same.clone()));
        assert!(!s.drift && s.max_psi < 0.05, "{s:?}");
        let s = psi_summary(&refs, 500, 500, 0.2, |f| {
            Some(if f == "logret" {
                same.clone()
            } else {
                shifted.clone()
            })
        });
        assert!(s.drift, "{s:?}");
        assert_eq!(s.max_feature.as_deref(), Some("range_rel"));
    }

    #[test]
    fn slow_features_are_skipped_in_short_windows() {
        let refs = [reference("logret"), reference("logret_std_168")];
        let v: Vec<f64> = (0..168).map(|i| f64::from(i) / 168.0).collect();
        let s = psi_summary(&refs, 168, 168, 0.2, |_| Some(v.clone()));
        assert_eq!(s.skipped, vec!["logret_std_168".to_string()]);
        assert!(s.psi.contains_key("logret"));
        assert_eq!(smoothing_window("logret_lag_24"), 2);
        assert_eq!(smoothing_window("logret_std_168"), 169);
    }
}
