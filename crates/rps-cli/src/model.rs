//! The flags that say which model a binary loads (`rps-serve serve`, `rps-monitor drift`):
//! a package directory, or a registry alias, and where downloads are staged.

use std::path::PathBuf;

use clap::Args;
use rps_mlflow::source::{ModelSpec, default_cache_dir};

/// Where the model comes from.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Use this model package directory instead of a registry alias (rps-serve picks up its
    /// changes with the reload poll).
    #[arg(
        long,
        visible_alias = "package",
        env = "RPS_MODEL_DIR",
        conflicts_with = "registry"
    )]
    pub model_dir: Option<PathBuf>,

    /// Local registry directory (used unless MLFLOW_TRACKING_URI is set, which selects MLflow).
    #[arg(long, env = "RPS_REGISTRY", default_value = "./registry")]
    pub registry: PathBuf,

    /// Registered model name.
    #[arg(long, env = "RPS_MODEL_NAME", default_value = "rps-forecaster")]
    pub model_name: String,

    /// Registry alias of the model (rps-serve serves and follows it).
    #[arg(long, env = "RPS_ALIAS", default_value = "champion")]
    pub alias: String,

    /// Directory where packages downloaded from the registry are staged while loading (each
    /// is deleted once loaded; default: a temp dir).
    #[arg(long, env = "RPS_MODEL_CACHE")]
    pub cache_dir: Option<PathBuf>,
}

impl ModelArgs {
    /// The model source these flags name, and the staging directory.
    pub fn into_spec(self) -> (ModelSpec, PathBuf) {
        let spec = match self.model_dir {
            Some(d) => ModelSpec::Dir(d),
            None => ModelSpec::Registry {
                registry: self.registry,
                name: self.model_name,
                alias: self.alias,
            },
        };
        (spec, self.cache_dir.unwrap_or_else(default_cache_dir))
    }
}
