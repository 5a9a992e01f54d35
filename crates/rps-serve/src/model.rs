//! How a fetched package becomes the served [`LoadedModel`]. Where it comes from — a package
//! directory or a registry alias, probed cheaply and fetched only when it points somewhere
//! new — is [`rps_mlflow::source`], shared with the drift check.

use std::collections::BTreeSet;

use rps_core::{Store, parquet_io};
use rps_features::spec;
use rps_mlflow::source::{Candidate, FetchedPackage, ModelSource};
use rps_model::{Forecaster, ModelMetadata};

use crate::api::ModelRef;
use crate::calibration::{Calibrations, CoinCalibration};
use crate::error::{Result, ServeError};
use crate::metrics::ModelInfoLabels;

/// A model ready to serve, with what the server derives from it once.
#[derive(Debug)]
pub struct LoadedModel {
    /// The forecaster.
    pub forecaster: Forecaster,
    /// The version clients see (the registry's; for a plain directory, the package's own or a
    /// fingerprint).
    pub version: String,
    /// Where it came from: `dir:<path>` or `models:/<name>@<alias>`.
    pub source: String,
    /// Identifies exactly what was loaded (registry version or directory fingerprint); the
    /// forecast cache is keyed by it.
    pub key: String,
    /// When this server loaded it (ms).
    pub loaded_at_ms: i64,
    /// For each reference histogram of the package, its column in the feature spec.
    pub psi_columns: Vec<Option<usize>>,
    /// The scale Page-Hinkley divides absolute log errors by (a conformal quantile), so its
    /// thresholds mean the same for every model and price level.
    pub error_scale: f64,
    /// The online calibrator state of each coin it serves (see [`crate::calibration`]),
    /// built from the store before the model serves and swapped with it.
    pub calibration: Calibrations,
}

impl LoadedModel {
    /// Fetches what [`ModelSource::probe`] found, loads it and builds its calibrator states
    /// from `store` ([`LoadedModel::calibrate`]); a downloaded copy is deleted once loaded
    /// (the weights live in memory).
    pub async fn fetch(source: &ModelSource, cand: &Candidate, store: &Store) -> Result<Self> {
        let package = source.fetch(cand).await?;
        let model = tokio::task::spawn_blocking(move || LoadedModel::load(&package))
            .await
            .map_err(|e| ServeError::Server(std::io::Error::other(e)))??;
        model.calibrate(store).await
    }

    /// Builds the calibrator state of every coin the model serves — the package's coins and
    /// the store's — by replaying each coin's last stored hours through the model, off the
    /// async workers. A coin whose bars cannot be read (logged) or that has none starts from
    /// the package's calibrator; the load never fails for it.
    pub async fn calibrate(self, store: &Store) -> Result<Self> {
        let mut coins: BTreeSet<String> = self
            .meta()
            .data
            .coins
            .iter()
            .map(|c| c.to_ascii_uppercase())
            .collect();
        match parquet_io::stored_coins(store).await {
            Ok(stored) => coins.extend(stored),
            Err(e) => {
                tracing::warn!(error = %e, "listing the store's coins failed: calibrating the model's own coins only")
            }
        }
        let mut bars = Vec::with_capacity(coins.len());
        for coin in coins {
            let mut b = parquet_io::read_bars(store, &coin).await.unwrap_or_else(|e| {
                tracing::warn!(coin, error = %e, "reading the stored bars failed: the calibrator starts from the package's state");
                Vec::new()
            });
            b.sort_by_key(|b| b.ts);
            bars.push((coin, b));
        }
        tokio::task::spawn_blocking(move || {
            for (coin, b) in bars {
                let state = CoinCalibration::build(&self.forecaster, &coin, &b);
                self.calibration.set(state);
            }
            self
        })
        .await
        .map_err(|e| ServeError::Server(std::io::Error::other(e)))
    }

    /// Loads a fetched package directory (blocking file I/O), without calibrator states yet
    /// ([`LoadedModel::calibrate`] builds them).
    pub fn load(package: &FetchedPackage) -> Result<Self> {
        let dir = package.dir();
        let mut forecaster = Forecaster::load(dir).map_err(|e| ServeError::ModelLoad {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let meta = forecaster.metadata();
        // Forecaster::load checks this too; checked again because serving a model on features it
        // was not trained on is the one failure that would silently return wrong numbers.
        if meta.feature_spec_hash != spec().hash {
            return Err(ServeError::ModelLoad {
                path: dir.to_path_buf(),
                reason: format!(
                    "feature spec {} does not match this server's {}",
                    meta.feature_spec_hash,
                    spec().hash
                ),
            });
        }
        let version = package.version_label(&meta.version);
        forecaster.set_version(&version);
        let meta = forecaster.metadata();
        let psi_columns = meta
            .reference
            .iter()
            .map(|r| spec().index(&r.feature))
            .collect();
        let error_scale = error_scale(meta);
        Ok(LoadedModel {
            forecaster,
            version,
            source: package.source.clone(),
            key: package.key.clone(),
            loaded_at_ms: chrono::Utc::now().timestamp_millis(),
            psi_columns,
            error_scale,
            calibration: Calibrations::default(),
        })
    }

    /// The package metadata.
    pub fn meta(&self) -> &ModelMetadata {
        self.forecaster.metadata()
    }

    /// Whether the model was trained on `coin` (any coin when the package does not say).
    pub fn knows_coin(&self, coin: &str) -> bool {
        let coins = &self.meta().data.coins;
        coins.is_empty() || coins.iter().any(|c| c.eq_ignore_ascii_case(coin))
    }

    /// Name, version and run of the model, as responses carry it.
    pub fn model_ref(&self) -> ModelRef {
        ModelRef {
            name: self.meta().name.clone(),
            version: self.version.clone(),
            run_id: self.meta().run_id.clone(),
        }
    }

    /// The `rps_model_info` labels.
    pub fn info_labels(&self) -> ModelInfoLabels {
        ModelInfoLabels {
            name: self.meta().name.clone(),
            version: self.version.clone(),
            run_id: self.meta().run_id.clone(),
            spec_hash: self.meta().feature_spec_hash.clone(),
        }
    }
}

/// The conformal quantile nearest the 80 % level (absolute log-return error), else the
/// target's standard deviation, else 1 % (the order of an hourly BTC move).
fn error_scale(meta: &ModelMetadata) -> f64 {
    let by_level = meta
        .conformal
        .iter()
        .filter(|c| c.q.is_finite() && c.q > 0.0)
        .min_by(|a, b| (a.level - 0.8).abs().total_cmp(&(b.level - 0.8).abs()))
        .map(|c| c.q);
    let std = Some(meta.scaler.target_std).filter(|s| s.is_finite() && *s > 0.0);
    by_level.or(std).unwrap_or(0.01)
}
