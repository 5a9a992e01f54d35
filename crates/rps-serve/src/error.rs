//! The server's error types: [`ServeError`] for starting up (mapped to exit codes), and
//! [`ApiError`] for HTTP handlers (mapped to a status and a JSON body
//! `{"error": <stable code>, "detail": <human text>}`). The forecasting flow's domain errors
//! ([`ForecastError`]) become `ApiError`s here, and only here.

use std::path::PathBuf;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rps_core::{CoreError, ExitCode};
use rps_mlflow::source::SourceError;

use crate::state::ForecastError;

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

    /// `rps-serve probe` got no 2xx answer.
    #[error("probe of {url} failed: {reason}")]
    Probe {
        /// The URL probed (credentials masked).
        url: String,
        /// What answered, or why nothing did.
        reason: String,
    },
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
            ServeError::Probe { .. } => ExitCode::External,
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

/// Declares [`ErrorCode`] once: its variants, their wire names and [`ErrorCode::ALL`] (the
/// list OpenAPI publishes) cannot drift apart.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)+) => {
        /// The stable, machine-readable code of every error response (the `error` field).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)+
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The wire name (`invalid_request`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)+
                }
            }
        }
    };
}

error_codes! {
    /// 400: the body is not JSON.
    MalformedJson = "malformed_json",
    /// 400: a request the HTTP layer refused (bad header, bad query).
    BadRequest = "bad_request",
    /// 400: the body could not be read.
    BadBody = "bad_body",
    /// 401: `/feedback` without the configured bearer token.
    Unauthorized = "unauthorized",
    /// 403: `/feedback` while no token is configured (feedback is off).
    FeedbackDisabled = "feedback_disabled",
    /// 404: no such route.
    NotFound = "not_found",
    /// 404: no forecast waits for that coin and hour.
    NoForecast = "no_forecast",
    /// 405: the route exists, the method does not.
    MethodNotAllowed = "method_not_allowed",
    /// 408: the request took longer than the time limit.
    Timeout = "timeout",
    /// 413: the body is larger than the limit.
    PayloadTooLarge = "payload_too_large",
    /// 414: the URI is longer than the limit.
    UriTooLong = "uri_too_long",
    /// 415: the body is not declared as JSON.
    UnsupportedMediaType = "unsupported_media_type",
    /// 422: JSON of the wrong shape or with values that break a rule.
    InvalidRequest = "invalid_request",
    /// 422: the seed's `{"lag_1", ...}` body.
    LegacyRequestShape = "legacy_request_shape",
    /// 404: a coin neither the model nor the store knows.
    UnknownCoin = "unknown_coin",
    /// 422: the store holds no bars for the coin.
    NoData = "no_data",
    /// 422: the bars do not give the model a full window.
    InsufficientHistory = "insufficient_history",
    /// 422: the model could not turn the window into a representable forecast.
    CannotForecast = "cannot_forecast",
    /// 431: the request's headers are larger than the limit.
    HeadersTooLarge = "headers_too_large",
    /// 500: a server fault (a bug: please report it).
    Internal = "internal",
    /// 503: no model has loaded yet.
    NoModel = "no_model",
    /// 503: the store could not be read.
    StoreUnavailable = "store_unavailable",
    /// 503: the server is at its connection limit; retry shortly.
    Overloaded = "overloaded",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An HTTP error: a status, a stable machine-readable code and a detail for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status (always 4xx for bad input).
    pub status: StatusCode,
    /// Stable code clients can switch on.
    pub error: ErrorCode,
    /// What was wrong, naming the field (`bars[3].close`) where there is one.
    pub detail: String,
}

/// The JSON body of every error response.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable code clients can switch on.
    pub error: ErrorCode,
    /// Human-readable explanation naming the offending field (at most
    /// [`MAX_DETAIL`] bytes; echoed input is clipped).
    #[schema(example = "bars[3].close: must be a positive finite price, got -1")]
    pub detail: String,
}

/// Longest `detail` of an error response, in bytes: input echoed into an error (a path, a
/// value) is clipped so a response never grows with what a client sent.
pub const MAX_DETAIL: usize = 600;

impl ApiError {
    /// Builds an error with any status.
    pub fn new(status: StatusCode, error: ErrorCode, detail: impl Into<String>) -> Self {
        let mut detail = detail.into();
        rps_core::redact::clip_in_place(&mut detail, MAX_DETAIL);
        ApiError {
            status,
            error,
            detail,
        }
    }
    /// 400: the body is not JSON.
    pub fn malformed_json(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::MalformedJson, detail)
    }
    /// 422: JSON of the wrong shape or with values that break a rule.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidRequest,
            detail,
        )
    }
    /// 404: a coin the model was not trained on and the store does not hold (a well-formed
    /// code of a resource that is not there).
    pub fn unknown_coin(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::UnknownCoin, detail)
    }
    /// 503: the store could not be read. The cause (which names the store's path or
    /// endpoint and bucket) goes to the log, not to the client.
    pub fn store_unavailable(what: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "{what} failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StoreUnavailable,
            format!("{what} failed: the store is unavailable (the server log has the cause)"),
        )
    }
    /// The body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.error,
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

impl From<ForecastError> for ApiError {
    /// The one mapping of the forecasting flow's errors to HTTP: status, code, and the
    /// error's text as the detail (a store error's cause goes to the log instead).
    fn from(e: ForecastError) -> Self {
        use ForecastError as F;
        let (status, code) = match &e {
            F::NoModel { .. } => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NoModel),
            F::UnknownCoin { .. } => (StatusCode::NOT_FOUND, ErrorCode::UnknownCoin),
            F::NoStoredBars { .. } | F::NoCachedBars { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::NoData)
            }
            F::EmptyWindow { .. } | F::InsufficientHistory { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InsufficientHistory,
            ),
            F::CannotForecast { .. } | F::Unrepresentable { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::CannotForecast)
            }
            F::NoForecast { .. } => (StatusCode::NOT_FOUND, ErrorCode::NoForecast),
            F::Store { what, source } => return ApiError::store_unavailable(what, source),
            F::Serialize(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        };
        ApiError::new(status, code, e.to_string())
    }
}
