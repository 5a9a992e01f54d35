//! Errors of the shared layer, each carrying the location or field it concerns.

use crate::exit::ExitCode;

/// Result alias for rps-core.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// What can go wrong in the shared layer. Large sources are boxed so every `Result` of the
/// shared layer stays small (clippy's `result_large_err`).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The store location could not be understood (`--store`).
    #[error("invalid store location '{location}': {reason}")]
    BadLocation {
        /// The location as given.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store could not be created or written (local permissions, missing bucket…).
    #[error("store {location}: cannot write '{key}': {source}")]
    Write {
        /// The store's location.
        location: String,
        /// The key being written.
        key: String,
        /// The storage error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// The store could not be read.
    #[error("store {location}: cannot read '{key}': {source}")]
    Read {
        /// The store's location.
        location: String,
        /// The key being read.
        key: String,
        /// The storage error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// A local directory could not be created.
    #[error("store {location}: {source}")]
    Io {
        /// The store's location.
        location: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A Parquet file did not decode or did not have the expected schema.
    #[error("{key}: {reason}")]
    BadFile {
        /// The file's key in the store.
        key: String,
        /// What did not decode or match.
        reason: String,
    },
    /// Arrow/Parquet encoding failed (a bug or resource exhaustion, not bad input).
    #[error("encoding {key}: {reason}")]
    Encode {
        /// The key being encoded.
        key: String,
        /// The encoder's message.
        reason: String,
    },
}

impl CoreError {
    /// The process exit code this error maps to (crates/rps-core/src/exit.rs).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CoreError::BadLocation { .. } | CoreError::BadFile { .. } => ExitCode::BadInput,
            CoreError::Io { .. } => ExitCode::BadInput,
            CoreError::Write { location, .. } | CoreError::Read { location, .. } => {
                if location.starts_with("s3://") {
                    ExitCode::External
                } else {
                    ExitCode::BadInput
                }
            }
            CoreError::Encode { .. } => ExitCode::Internal,
        }
    }
}

/// Renders an error and its sources on one line: `outer: inner: root`, skipping a cause whose
/// text the line already holds (many errors repeat their source in their own message). The
/// one renderer of error chains: binaries, the MLflow client and the API clients use it.
/// Credentials in any URL of the text are masked ([`crate::redact::text`]), so a tracking URI
/// with a password or a token query parameter never reaches a terminal, a log or a response.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&s);
        }
        cur = e.source();
    }
    match crate::redact::text(&out) {
        std::borrow::Cow::Borrowed(_) => out,
        std::borrow::Cow::Owned(clean) => clean,
    }
}
