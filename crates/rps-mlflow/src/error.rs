//! The one error type of this crate, and how binaries should classify it (exit codes).

use std::path::PathBuf;

use rps_core::ExitCode;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to MLflow or to the local registry directory.
///
/// Binaries map it to an exit code with [`Error::exit_code`], the shared
/// [`rps_core::ExitCode`] of `rps_core::ExitCode`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached, timed out or kept answering 5xx until the retry
    /// budget ran out. Exit code 4.
    #[error("MLflow request {method} {url} failed after {attempts} attempt(s): {last}")]
    RetriesExhausted {
        /// The HTTP method (`GET`, `POST`, `PUT`…).
        method: String,
        /// The full request URL.
        url: String,
        /// Attempts made, the first included.
        attempts: u32,
        /// The last failure (transport error or `HTTP <status>: <body>`).
        last: String,
    },

    /// The server answered with an MLflow API error (a JSON body carrying `error_code`).
    #[error("MLflow {endpoint} returned HTTP {status} {error_code}: {message}")]
    Api {
        /// The endpoint called (e.g. `runs/get`).
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// e.g. `RESOURCE_DOES_NOT_EXIST`, `RESOURCE_ALREADY_EXISTS`, `INVALID_PARAMETER_VALUE`.
        error_code: String,
        /// The server's `message`.
        message: String,
    },

    /// The server answered with a non-success status and a body that is not an MLflow API
    /// error (HTML for unknown routes, text/plain from the security middleware, ...).
    #[error("MLflow {endpoint} returned HTTP {status}: {body}")]
    Http {
        /// The endpoint called (e.g. `runs/get`).
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The raw body text (truncated to a few KiB).
        body: String,
    },

    /// A success response whose body did not have the expected shape.
    #[error("MLflow {endpoint} returned an unexpected body ({source}): {body}")]
    Decode {
        /// The endpoint called (e.g. `runs/get`).
        endpoint: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
        /// The body received (truncated to a few KiB; empty when encoding a request failed).
        body: String,
    },

    /// A metric value is NaN or infinite. MLflow would store it silently corrupted (value 0,
    /// timestamp 0) or clamp it, so it is refused before anything of the batch is sent.
    #[error("metric '{key}' at step {step} has non-finite value {value}; refusing to log it")]
    NonFiniteMetric {
        /// The metric's key.
        key: String,
        /// The metric's step.
        step: i64,
        /// The value refused (NaN or ±infinity).
        value: f64,
    },

    /// An argument that MLflow would reject or silently mangle (over-long digest or param
    /// value, bad name, path escaping the artifact root, ...).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid (`run id`, `dataset name`, a key…).
        what: String,
        /// Why.
        reason: String,
    },

    /// A `models:/...` URI that is neither `models:/<name>@<alias>` nor `models:/<name>/<version>`.
    #[error(
        "invalid model URI '{uri}': expected models:/<name>@<alias> or models:/<name>/<version>"
    )]
    BadModelUri {
        /// The URI as given.
        uri: String,
    },

    /// A run's or version's artifact location is not one this client can read or write
    /// (only the `mlflow-artifacts:` proxy scheme is supported).
    #[error("unsupported artifact location '{uri}': {reason}")]
    UnsupportedArtifactUri {
        /// The artifact location.
        uri: String,
        /// Why it is not supported.
        reason: String,
    },

    /// A run, model, version or alias the caller named does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was not found, as it reads in the message (e.g. `run <id> in <dir>`).
        what: String,
    },

    /// Bad configuration (tracking URI, retry settings from the environment).
    #[error("invalid configuration {name}='{value}': {reason}")]
    Config {
        /// The setting's name (an environment variable such as `MLFLOW_TRACKING_URI`).
        name: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Local filesystem failure (the local registry, reading artifacts to upload, writing
    /// downloads).
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`creating`, `reading`…).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A JSON file of the local registry could not be read or written.
    #[error("bad JSON in {}: {source}", path.display())]
    LocalJson {
        /// The JSON file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },

    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl Error {
    /// True when an external service failed after retries (exit code 4): the caller did
    /// nothing wrong and a later retry of the whole command may succeed.
    pub fn is_external(&self) -> bool {
        match self {
            Error::RetriesExhausted { .. } => true,
            // 5xx are retried, so they only get here through a custom zero-retry policy;
            // 401/403 mean the server refuses us (auth, allowed hosts): a deployment issue.
            Error::Api { status, .. } | Error::Http { status, .. } => {
                *status >= 500 || *status == 401 || *status == 403
            }
            _ => false,
        }
    }

    /// The exit code a binary should use for this error, as `rps_core::ExitCode` defines them:
    /// 4 external service failed after retries, 2 bad usage or input (unknown model,
    /// version or alias, malformed URI or argument, bad configuration), 1 anything else
    /// (an internal bug such as a NaN metric or a request the server refused as malformed).
    pub fn exit_code(&self) -> ExitCode {
        if self.is_external() {
            return ExitCode::External;
        }
        match self {
            Error::NotFound { .. }
            | Error::BadModelUri { .. }
            | Error::Invalid { .. }
            | Error::Config { .. }
            | Error::UnsupportedArtifactUri { .. }
            // A registry file that does not parse is damaged data: a retry cannot help.
            | Error::LocalJson { .. } => ExitCode::BadInput,
            Error::Api { error_code, .. } if error_code == "RESOURCE_DOES_NOT_EXIST" => {
                ExitCode::BadInput
            }
            _ => ExitCode::Internal,
        }
    }

    /// The MLflow `error_code` if this is an API error.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Error::Api { error_code, .. } => Some(error_code),
            _ => None,
        }
    }

    /// True for MLflow `RESOURCE_DOES_NOT_EXIST` and for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
            || self.error_code() == Some("RESOURCE_DOES_NOT_EXIST")
    }

    /// True for MLflow `RESOURCE_ALREADY_EXISTS`.
    pub fn is_already_exists(&self) -> bool {
        self.error_code() == Some("RESOURCE_ALREADY_EXISTS")
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_exhausted_maps_to_exit_code_4_and_names_the_url() {
        let e = Error::RetriesExhausted {
            method: "GET".into(),
            url: "http://127.0.0.1:1/api/2.0/mlflow/runs/get".into(),
            attempts: 3,
            last: "connection refused".into(),
        };
        assert!(e.is_external());
        assert_eq!(e.exit_code(), ExitCode::External);
        assert!(
            e.to_string()
                .contains("http://127.0.0.1:1/api/2.0/mlflow/runs/get")
        );
        assert!(e.to_string().contains("3 attempt"));
    }

    #[test]
    fn an_unknown_resource_is_bad_input_and_a_rejected_request_is_a_bug() {
        let missing = Error::Api {
            endpoint: "model-versions/get".into(),
            status: 404,
            error_code: "RESOURCE_DOES_NOT_EXIST".into(),
            message: "nope".into(),
        };
        assert!(missing.is_not_found());
        assert_eq!(missing.exit_code(), ExitCode::BadInput);
        let bad = Error::Api {
            endpoint: "runs/log-batch".into(),
            status: 400,
            error_code: "INVALID_PARAMETER_VALUE".into(),
            message: "x".into(),
        };
        assert_eq!(bad.exit_code(), ExitCode::Internal);
        assert!(!bad.is_external());
    }
}
