//! The server's error types: [`ServeError`] for starting up (mapped to exit codes), and
//! [`ApiError`] for HTTP handlers (mapped to a status and a JSON body
//! `{"error": <stable code>, "detail": <human text>}`).

use std::path::PathBuf;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rps_core::{CoreError, ExitCode};
use rps_mlflow::source::SourceError;

/// What can stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A model package could not be loaded (missing files, corrupt weights, feature-spec
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

    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address as given.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The store failed or held an unreadable file.
    #[error(transparent)]
    Store(Box<CoreError>),

    /// A flag value makes no sense (e.g. a zero window).
    #[error("--{flag}: {reason}")]
    Usage {
        /// The flag, without its dashes.
        flag: &'static str,
        /// Why its value is refused.
        reason: String,
    },

    /// The HTTP server stopped with an error.
    #[error("server error: {0}")]
    Server(std::io::Error),
}

impl ServeError {
    /// The process exit code for this error (crates/rps-core/src/exit.rs).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ServeError::ModelLoad { .. } | ServeError::Bind { .. } | ServeError::Usage { .. } => {
                ExitCode::BadInput
            }
            ServeError::Source(e) => e.exit_code(),
            ServeError::Store(e) => e.exit_code(),
            ServeError::Server(_) => ExitCode::Internal,
        }
    }
}

impl From<CoreError> for ServeError {
    fn from(e: CoreError) -> Self {
        ServeError::Store(Box::new(e))
    }
}

/// Result alias of the library.
pub type Result<T, E = ServeError> = std::result::Result<T, E>;

/// Maps an error chain to an exit code for `rps_core::exit::finish`.
pub fn classify(err: &(dyn std::error::Error + 'static)) -> Option<ExitCode> {
    err.downcast_ref::<ServeError>().map(ServeError::exit_code)
}

/// An HTTP error: a status, a stable machine-readable code and a detail for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status (always 4xx for bad input).
    pub status: StatusCode,
    /// Stable code clients can switch on (`malformed_json`, `invalid_request`, ...).
    pub error: &'static str,
    /// What was wrong, naming the field (`bars[3].close`) where there is one.
    pub detail: String,
}

/// The JSON body of every error response.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable code: `malformed_json`, `invalid_request`, `unsupported_media_type`,
    /// `legacy_request_shape`, `unknown_coin`, `no_data`, `insufficient_history`,
    /// `no_forecast`, `payload_too_large`, `timeout`, `not_found`, `method_not_allowed`,
    /// `no_model`, `store_unavailable`.
    #[schema(example = "invalid_request")]
    pub error: String,
    /// Human-readable explanation naming the offending field.
    #[schema(example = "bars[3].close: must be a positive finite price, got -1")]
    pub detail: String,
}

impl ApiError {
    /// Builds an error with any status.
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            error,
            detail: detail.into(),
        }
    }
    /// 400: the body is not JSON.
    pub fn malformed_json(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_json", detail)
    }
    /// 422: JSON of the wrong shape or with values that break a rule.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", detail)
    }
    /// 422: a coin the model was not trained on and the store does not hold.
    pub fn unknown_coin(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_coin", detail)
    }
    /// 503: the store could not be read.
    pub fn store_unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", detail)
    }
    /// The body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.error.to_string(),
            detail: self.detail.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.error,
            self.detail
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
