//! rps-model: the forecasting model — the model abstraction ([`ModelKind`], [`Model`]) and
//! its kinds ([`kinds`]: a one-layer LSTM in candle with a fused, hand-written sequence op is
//! the first), training ([`fit()`]), the model package format (`model.safetensors`,
//! `metadata.json`, `MLmodel`), the serving-side [`Forecaster`], and drift statistics.

#![deny(missing_docs)]

pub mod drift;
pub mod fit;
pub mod forecaster;
pub mod intervals;
pub mod kernels;
pub mod kinds;
pub mod model;
pub mod package;
pub mod small_gemm;

use std::path::PathBuf;

pub use drift::{ReferenceHistogram, psi, reference_histograms};
pub use fit::{EpochStats, FitConfig, FitOutcome, Windows, fit, predict_windows};
pub use forecaster::{Forecast, Forecaster, Interval};
pub use kinds::lstm::{LstmNet, LstmWeights};
pub use model::{Kind, Model, ModelKind};
pub use package::{ConformalQuantile, DataInfo, ModelMetadata, ModelPackage, Scaler};

/// The features the model reads, by name, in this order: derived from the feature table
/// (`rps_features::Kind::is_model_input`: the stationary features, not price levels).
pub use rps_features::MODEL_INPUTS;

/// Result alias for rps-model.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// What can go wrong building, training, saving, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor operation failed (shape mismatch: a bug, or a corrupt weights file).
    #[error("{context}: {source}")]
    Candle {
        /// What was being done (the step or tensor concerned).
        context: String,
        /// candle's error.
        #[source]
        source: candle_core::Error,
    },
    /// A package file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A package file exists but is not what the format requires.
    #[error("model package {path}: {reason}")]
    BadPackage {
        /// The package directory or file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The package was trained on another feature definition than this build computes.
    #[error(
        "model package {path}: trained on feature spec {found}, this build computes {expected}; retrain the model"
    )]
    SpecMismatch {
        /// The package directory.
        path: PathBuf,
        /// The feature spec hash this build computes.
        expected: String,
        /// The feature spec hash in the package's metadata.
        found: String,
    },
    /// The input frame cannot feed the model (too short, a gap, a missing or non-finite value).
    #[error("input for {coin}: {reason}")]
    Input {
        /// The frame's coin.
        coin: String,
        /// What is wrong with the input (names the row, hour or feature).
        reason: String,
    },
    /// Training cannot start or produced nothing usable.
    #[error("training: {0}")]
    Training(String),
}

impl ModelError {
    pub(crate) fn candle(
        context: impl Into<String>,
    ) -> impl FnOnce(candle_core::Error) -> ModelError {
        let context = context.into();
        move |source| ModelError::Candle { context, source }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ModelError {
        let path = path.into();
        move |source| ModelError::Io { path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_inputs_are_unique_and_stationary() {
        let mut names = MODEL_INPUTS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MODEL_INPUTS.len());
        for price_level in ["lag_1", "rolling_mean_5", "hour"] {
            assert!(!MODEL_INPUTS.contains(&price_level));
        }
    }
}
