//! The feature spec: the one table of features ([`FEATURES`]: names, kinds, windows, order),
//! its version and hash ([`spec`]), the targets' column names and the metadata keys feature
//! files carry.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// Version of the feature definitions; bump it whenever any formula changes.
pub const SPEC_VERSION: u32 = 2;

/// Column names of the targets in feature files.
pub const TARGET_LOGRET: &str = "target_logret_1h";
/// Column name of the next hour's close in feature files.
pub const TARGET_CLOSE: &str = "target_close_1h";

/// Footer / schema metadata keys of feature files.
pub mod meta {
    /// The [`super::FeatureSpec::hash`] the file was computed with.
    pub const SPEC_HASH: &str = "feature_spec_hash";
    /// The [`super::SPEC_VERSION`] the file was computed with.
    pub const SPEC_VERSION: &str = "feature_spec_version";
    /// Comma-separated feature names, in column order (for non-Rust readers).
    pub const NAMES: &str = "feature_names";
    /// Bars read for this coin.
    pub const ROWS_IN: &str = "rows_in";
    /// Rows dropped because their window spans a gap.
    pub const DROPPED_GAP: &str = "dropped_gap";
    /// Rows dropped because their window reaches before the first bar.
    pub const DROPPED_WARMUP: &str = "dropped_warmup";
}

/// How a feature is computed. Windows count hours; the doc of each variant gives the formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Previous hour's close (USD).
    Lag1Close,
    /// Mean of the last `w` closes, this hour's included (USD).
    CloseMean(usize),
    /// UTC hour of day, 0..23.
    Hour,
    /// Log return `ln(close[t] / close[t-1])`.
    LogRet,
    /// Log return `k` hours earlier: `logret[t-k]`.
    LogRetLag(usize),
    /// Mean of the last `w` log returns (this hour's included).
    LogRetMean(usize),
    /// Sample standard deviation (n-1) of the last `w` log returns.
    LogRetStd(usize),
    /// `close[t] / mean(last w closes) - 1`.
    CloseRelMean(usize),
    /// `(high - low) / close`.
    RangeRel,
    /// `(volume[t] - mean) / std` over the known volumes of the last `w` hours (sample std);
    /// 0 when this hour's volume is unknown, fewer than 2 are known, or the std is 0.
    VolumeZ(usize),
    /// `sin(2π hour / 24)`.
    HourSin,
    /// `cos(2π hour / 24)`.
    HourCos,
    /// `sin(2π dow / 7)`, Monday = 0.
    DowSin,
    /// `cos(2π dow / 7)`, Monday = 0.
    DowCos,
    /// Parkinson's range-based variance of the hour's log price, `ln(high / low)² / (4 ln 2)`
    /// (NaN when `low <= 0` or `high < low`).
    Parkinson,
    /// Mean of the last `w` hours' [`Kind::Parkinson`] variances (this hour's included;
    /// NaN ones skipped).
    ParkinsonMean(usize),
}

impl Kind {
    /// How many consecutive bars, ending at the row's own bar, the feature reads.
    pub const fn window(self) -> usize {
        match self {
            Kind::Hour
            | Kind::RangeRel
            | Kind::HourSin
            | Kind::HourCos
            | Kind::DowSin
            | Kind::DowCos
            | Kind::Parkinson => 1,
            Kind::Lag1Close | Kind::LogRet => 2,
            Kind::CloseMean(w)
            | Kind::CloseRelMean(w)
            | Kind::VolumeZ(w)
            | Kind::ParkinsonMean(w) => w,
            Kind::LogRetLag(k) => k + 2,
            Kind::LogRetMean(w) | Kind::LogRetStd(w) => w + 1,
        }
    }
}

impl Kind {
    /// Whether forecasters read this feature: the stationary ones (log returns, ratios,
    /// calendar cycles), not price levels (`lag_1`, `rolling_mean_*`) or the raw hour number,
    /// so that one fitted model carries across price regimes. The range-based variances are
    /// the volatility model's inputs (`rps_model::intervals`), not the forecasters'.
    pub const fn is_model_input(self) -> bool {
        !matches!(
            self,
            Kind::Lag1Close
                | Kind::CloseMean(_)
                | Kind::Hour
                | Kind::Parkinson
                | Kind::ParkinsonMean(_)
        )
    }
}

/// The features forecasters read, by name, in table order: every [`FEATURES`] row whose
/// kind [`Kind::is_model_input`]. Derived from the table, never listed by hand.
pub static MODEL_INPUTS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    FEATURES
        .iter()
        .filter(|d| d.kind.is_model_input())
        .map(|d| d.name)
        .collect()
});

/// One row of the feature table.
#[derive(Debug, Clone, Copy)]
pub struct FeatureDef {
    /// Column name in feature files.
    pub name: &'static str,
    /// Its formula and window.
    pub kind: Kind,
}

const fn def(name: &'static str, kind: Kind) -> FeatureDef {
    FeatureDef { name, kind }
}

/// THE feature table: names, formulas and windows, in column order. Defined once.
pub static FEATURES: &[FeatureDef] = &[
    // The seed's features, kept for compatibility (price units).
    def("lag_1", Kind::Lag1Close),
    def("rolling_mean_5", Kind::CloseMean(5)),
    def("hour", Kind::Hour),
    // Stationary features for forecasters.
    def("logret", Kind::LogRet),
    def("logret_lag_1", Kind::LogRetLag(1)),
    def("logret_lag_2", Kind::LogRetLag(2)),
    def("logret_lag_3", Kind::LogRetLag(3)),
    def("logret_lag_4", Kind::LogRetLag(4)),
    def("logret_lag_5", Kind::LogRetLag(5)),
    def("logret_lag_6", Kind::LogRetLag(6)),
    def("logret_lag_7", Kind::LogRetLag(7)),
    def("logret_lag_8", Kind::LogRetLag(8)),
    def("logret_lag_9", Kind::LogRetLag(9)),
    def("logret_lag_10", Kind::LogRetLag(10)),
    def("logret_lag_11", Kind::LogRetLag(11)),
    def("logret_lag_12", Kind::LogRetLag(12)),
    def("logret_lag_13", Kind::LogRetLag(13)),
    def("logret_lag_14", Kind::LogRetLag(14)),
    def("logret_lag_15", Kind::LogRetLag(15)),
    def("logret_lag_16", Kind::LogRetLag(16)),
    def("logret_lag_17", Kind::LogRetLag(17)),
    def("logret_lag_18", Kind::LogRetLag(18)),
    def("logret_lag_19", Kind::LogRetLag(19)),
    def("logret_lag_20", Kind::LogRetLag(20)),
    def("logret_lag_21", Kind::LogRetLag(21)),
    def("logret_lag_22", Kind::LogRetLag(22)),
    def("logret_lag_23", Kind::LogRetLag(23)),
    def("logret_lag_24", Kind::LogRetLag(24)),
    def("logret_mean_6", Kind::LogRetMean(6)),
    def("logret_mean_24", Kind::LogRetMean(24)),
    def("logret_mean_168", Kind::LogRetMean(168)),
    def("logret_std_6", Kind::LogRetStd(6)),
    def("logret_std_24", Kind::LogRetStd(24)),
    def("logret_std_168", Kind::LogRetStd(168)),
    def("close_rel_mean_24", Kind::CloseRelMean(24)),
    def("close_rel_mean_168", Kind::CloseRelMean(168)),
    def("range_rel", Kind::RangeRel),
    def("volume_z_168", Kind::VolumeZ(168)),
    def("hour_sin", Kind::HourSin),
    def("hour_cos", Kind::HourCos),
    def("dow_sin", Kind::DowSin),
    def("dow_cos", Kind::DowCos),
    // Range-based variance, read by the volatility model of the intervals.
    def("parkinson", Kind::Parkinson),
    def("parkinson_mean_6", Kind::ParkinsonMean(6)),
    def("parkinson_mean_24", Kind::ParkinsonMean(24)),
    def("parkinson_mean_168", Kind::ParkinsonMean(168)),
];

/// The feature spec as data: what a model package records and checks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeatureSpec {
    /// [`SPEC_VERSION`] of the build that made it.
    pub version: u32,
    /// Feature names in column order.
    pub names: Vec<String>,
    /// Bars needed before the first row (longest window - 1).
    pub warmup: usize,
    /// First 16 hex chars of sha256 over [`FeatureSpec::canonical`].
    pub hash: String,
}

impl FeatureSpec {
    /// The canonical text the hash covers: version, then `name:window` per line, in order.
    pub fn canonical() -> String {
        let mut s = format!("rps-features v{SPEC_VERSION}\n");
        for d in FEATURES {
            s.push_str(&format!("{}:{}\n", d.name, d.kind.window()));
        }
        s
    }

    /// Column index of a feature.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Window (bars read, own bar included) of a feature.
    pub fn window(&self, name: &str) -> Option<usize> {
        FEATURES
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.kind.window())
    }
}

/// The feature spec of this build.
pub fn spec() -> &'static FeatureSpec {
    static SPEC: LazyLock<FeatureSpec> = LazyLock::new(|| {
        let canonical = FeatureSpec::canonical();
        let digest = Sha256::digest(canonical.as_bytes());
        let mut hash = hex::encode(digest);
        hash.truncate(16);
        FeatureSpec {
            version: SPEC_VERSION,
            names: FEATURES.iter().map(|d| d.name.to_string()).collect(),
            warmup: FEATURES.iter().map(|d| d.kind.window()).max().unwrap_or(1) - 1,
            hash,
        }
    });
    &SPEC
}

/// The spec part of the file metadata (hash, version, names), in a fixed order.
pub fn spec_metadata() -> Vec<(String, String)> {
    let sp = spec();
    vec![
        (meta::SPEC_HASH.into(), sp.hash.clone()),
        (meta::SPEC_VERSION.into(), sp.version.to_string()),
        (meta::NAMES.into(), sp.names.join(",")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_inputs_are_the_stationary_features_in_table_order() {
        assert_eq!(MODEL_INPUTS.len(), FEATURES.len() - 7);
        assert_eq!(MODEL_INPUTS[0], "logret");
        assert_eq!(*MODEL_INPUTS.last().unwrap(), "dow_cos");
        for price_level in ["lag_1", "rolling_mean_5", "hour", "parkinson_mean_24"] {
            assert!(!MODEL_INPUTS.contains(&price_level));
        }
        let sp = spec();
        let idx: Vec<usize> = MODEL_INPUTS.iter().map(|n| sp.index(n).unwrap()).collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "table order");
    }

    #[test]
    fn the_spec_hash_is_stable_and_the_warmup_is_the_longest_window() {
        let sp = spec();
        assert_eq!(sp.hash.len(), 16);
        assert_eq!(sp.warmup, 168);
        assert_eq!(sp.names.len(), FEATURES.len());
        assert_eq!(sp.index("lag_1"), Some(0));
        assert_eq!(sp.window("logret_mean_168"), Some(169));
        let mut uniq = sp.names.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), sp.names.len(), "feature names are unique");
    }
}
