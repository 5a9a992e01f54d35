//! Where the served model comes from and how a package becomes a [`LoadedModel`]: a package
//! directory (`--model-dir`) or a registry alias (`models:/<name>@<alias>`, local directory or
//! MLflow), probed cheaply for changes and fetched only when it points somewhere new.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rps_features::spec;
use rps_mlflow::{ModelVersion, Registry};
use rps_model::{Forecaster, ModelMetadata};

use crate::api::ModelRef;
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
}

impl LoadedModel {
    /// Loads a package directory (blocking file I/O).
    pub fn load(dir: &Path, version: Option<&str>, source: String, key: String) -> Result<Self> {
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
        let version = match version {
            Some(v) => v.to_string(),
            None if !meta.version.trim().is_empty() => meta.version.clone(),
            None => format!("local-{}", &key[..key.len().min(8)]),
        };
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
            source,
            key,
            loaded_at_ms: chrono::Utc::now().timestamp_millis(),
            psi_columns,
            error_scale,
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

/// Where models come from.
#[derive(Debug)]
pub enum ModelSource {
    /// A package directory; a change of its files is picked up as a new model.
    Dir(PathBuf),
    /// A registry alias.
    Registry {
        /// The registry (local directory or MLflow).
        registry: Box<Registry>,
        /// Registered model name.
        name: String,
        /// Alias to follow (e.g. `champion`).
        alias: String,
        /// Where registry downloads are staged while loading (each deleted once loaded: the
        /// weights live in memory).
        cache_dir: PathBuf,
    },
}

/// What a source points at right now.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Identity: the registry version, or the directory's fingerprint.
    pub key: String,
    /// The registry version, when there is one.
    pub version: Option<ModelVersion>,
}

static DOWNLOADS: AtomicU64 = AtomicU64::new(0);

impl ModelSource {
    /// For logs and `GET /model`.
    pub fn describe(&self) -> String {
        match self {
            ModelSource::Dir(p) => format!("dir:{}", p.display()),
            ModelSource::Registry { name, alias, .. } => format!("models:/{name}@{alias}"),
        }
    }

    fn registry_err(&self, e: rps_mlflow::Error) -> ServeError {
        let code = e.exit_code();
        let registry = match self {
            ModelSource::Registry { registry, .. } => registry.describe(),
            ModelSource::Dir(_) => String::new(),
        };
        ServeError::Registry {
            registry,
            reason: e.to_string(),
            code,
        }
    }

    /// Finds what the source points at, without loading it.
    pub async fn probe(&self) -> Result<Candidate> {
        match self {
            ModelSource::Dir(dir) => {
                let dir = dir.clone();
                let key = tokio::task::spawn_blocking(move || fingerprint(&dir))
                    .await
                    .map_err(|e| ServeError::Server(std::io::Error::other(e)))??;
                Ok(Candidate { key, version: None })
            }
            ModelSource::Registry {
                registry,
                name,
                alias,
                ..
            } => match registry.get_alias(name, alias).await {
                Ok(Some(mv)) => Ok(Candidate {
                    key: mv.version.clone(),
                    version: Some(mv),
                }),
                Ok(None) => Err(ServeError::NoAlias {
                    registry: registry.describe(),
                    name: name.clone(),
                    alias: alias.clone(),
                }),
                Err(e) => Err(self.registry_err(e)),
            },
        }
    }

    /// Loads what [`ModelSource::probe`] found (downloading it first from a registry).
    pub async fn fetch(&self, cand: &Candidate) -> Result<LoadedModel> {
        let source = self.describe();
        let key = cand.key.clone();
        // `scratch`: a downloaded copy, deleted once loaded (the weights are read into memory).
        let (dir, version, scratch) = match (self, &cand.version) {
            (ModelSource::Dir(dir), _) => (dir.clone(), None, None),
            (
                ModelSource::Registry {
                    registry,
                    cache_dir,
                    name,
                    ..
                },
                Some(mv),
            ) => {
                // A fresh directory per download, so concurrent servers sharing the cache
                // directory never see each other's half-written files.
                let n = DOWNLOADS.fetch_add(1, Ordering::Relaxed);
                let safe: String = name
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                let dest =
                    cache_dir.join(format!("{safe}-v{}-{}-{n}", mv.version, std::process::id()));
                let downloaded = registry.download(mv, &dest).await;
                let dir = match downloaded {
                    Ok(dir) => dir,
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(&dest);
                        return Err(self.registry_err(e));
                    }
                };
                (dir, Some(mv.version.clone()), Some(dest))
            }
            (ModelSource::Registry { .. }, None) => {
                return Err(ServeError::Usage {
                    flag: "alias",
                    reason: "registry candidate without a version".into(),
                });
            }
        };
        tokio::task::spawn_blocking(move || {
            let loaded = LoadedModel::load(&dir, version.as_deref(), source, key);
            if let Some(scratch) = scratch
                && let Err(e) = std::fs::remove_dir_all(&scratch)
            {
                tracing::warn!(dir = %scratch.display(), error = %e, "could not delete a downloaded package");
            }
            loaded
        })
        .await
        .map_err(|e| ServeError::Server(std::io::Error::other(e)))?
    }
}

/// A fingerprint of a package directory: its metadata text and the weights file's size and
/// modification time (hashing the weights would cost more than the poll is worth).
fn fingerprint(dir: &Path) -> Result<String> {
    let io = |path: PathBuf| move |source| ServeError::Io { path, source };
    let meta_path = dir.join(rps_model::package::METADATA_FILE);
    let weights = dir.join(rps_model::package::WEIGHTS_FILE);
    let text = std::fs::read(&meta_path).map_err(io(meta_path.clone()))?;
    let w = std::fs::metadata(&weights).map_err(io(weights.clone()))?;
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    w.len().hash(&mut h);
    if let Ok(t) = w.modified() {
        t.hash(&mut h);
    }
    Ok(format!("{:016x}", h.finish()))
}
