//! The one error type of the monitoring library, and its exit codes (crates/rps-core/src/exit.rs).

use std::path::PathBuf;

use rps_core::{CoreError, ExitCode};
use rps_mlflow::source::SourceError;

/// What can stop a drift check from giving a verdict. A verdict of drift is not an error: it
/// is `Ok(ExitCode::Quality)` from [`crate::run_drift`].
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A flag value makes no sense (e.g. a zero window, a share outside (0, 1]).
    #[error("--{flag}: {reason}")]
    Usage {
        /// The flag, without its dashes.
        flag: &'static str,
        /// Why its value is refused.
        reason: String,
    },

    /// The model package could not be loaded (missing files, corrupt weights, feature-spec
    /// mismatch with this binary's feature code).
    #[error("cannot load the model package {}: {reason}", path.display())]
    ModelLoad {
        /// The package directory.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },

    /// The model source failed: no version under the alias, the registry (local directory
    /// or MLflow) failed, or the package directory is unreadable.
    #[error(transparent)]
    Source(#[from] SourceError),

    /// The store failed or held an unreadable file.
    #[error(transparent)]
    Store(Box<CoreError>),

    /// A features file is missing, unreadable or too short for the drift window.
    #[error("{key}: {reason}")]
    Features {
        /// The features file's key in the store.
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Writing the report failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The report's path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A blocking task died (a panic inside it).
    #[error("background task failed: {0}")]
    Task(String),
}

impl MonitorError {
    /// The process exit code: 2 for bad flags, a missing or short features file, a package
    /// that does not load, or a missing alias; 4 when MLflow or S3 failed after retries; 1 for
    /// an unwritable report or a bug.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            MonitorError::Usage { .. }
            | MonitorError::ModelLoad { .. }
            | MonitorError::Features { .. } => ExitCode::BadInput,
            MonitorError::Source(e) => e.exit_code(),
            MonitorError::Store(e) => e.exit_code(),
            MonitorError::Io { .. } | MonitorError::Task(_) => ExitCode::Internal,
        }
    }
}

impl From<CoreError> for MonitorError {
    fn from(e: CoreError) -> Self {
        MonitorError::Store(Box::new(e))
    }
}

/// Result alias of the library.
pub type Result<T, E = MonitorError> = std::result::Result<T, E>;

/// Maps an error chain to an exit code for `rps_cli::finish`.
pub fn classify(err: &(dyn std::error::Error + 'static)) -> Option<ExitCode> {
    err.downcast_ref::<MonitorError>()
        .map(MonitorError::exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_the_drift_command_of_before() {
        let usage = MonitorError::Usage {
            flag: "share",
            reason: "must be in (0, 1]".into(),
        };
        assert_eq!(usage.to_string(), "--share: must be in (0, 1]");
        assert_eq!(usage.exit_code(), ExitCode::BadInput);
        let short = MonitorError::Features {
            key: "./data/features/BTC.parquet".into(),
            reason: "no rows".into(),
        };
        assert_eq!(short.exit_code(), ExitCode::BadInput);
        let alias = MonitorError::from(SourceError::NoAlias {
            registry: "local:./registry".into(),
            name: "m".into(),
            alias: "champion".into(),
        });
        assert_eq!(alias.exit_code(), ExitCode::BadInput);
        let mlflow = MonitorError::from(SourceError::Registry {
            registry: "mlflow:http://127.0.0.1:1".into(),
            reason: "down".into(),
            code: ExitCode::External,
        });
        assert_eq!(mlflow.exit_code(), ExitCode::External);
        let io = MonitorError::Io {
            path: "reports/drift.json".into(),
            source: std::io::Error::other("disk full"),
        };
        assert_eq!(io.exit_code(), ExitCode::Internal);
        assert_eq!(classify(&io), Some(ExitCode::Internal));
    }
}
