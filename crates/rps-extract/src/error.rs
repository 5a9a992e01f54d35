//! The errors of the extract stage, each naming the file, row, field, endpoint or variable it
//! concerns, and the exit code (crates/rps-core/src/exit.rs) each maps to.

use rps_core::{CoreError, ExitCode};

/// Result alias for rps-extract.
pub type Result<T, E = ExtractError> = std::result::Result<T, E>;

/// What can go wrong while extracting.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// A flag combination that cannot work (e.g. `--start` after `--end`).
    #[error("{0}")]
    Usage(String),

    /// A broken invariant of this crate (a bug, not bad input).
    #[error("internal error: {0}")]
    Internal(String),

    /// An input file could not be opened or read.
    #[error("{file}: cannot read: {source}")]
    Open {
        file: String,
        #[source]
        source: std::io::Error,
    },

    /// A gzip-compressed input file did not decompress (truncated or corrupt).
    #[error("{file}: not valid gzip: {source}")]
    Gzip {
        file: String,
        #[source]
        source: std::io::Error,
    },

    /// An input file has no bytes, or a header and no data rows.
    #[error("{file}: {what}")]
    Empty { file: String, what: &'static str },

    /// An input file is not UTF-8 text.
    #[error("{file}: line {line}: not valid UTF-8 (byte offset {offset})")]
    NotUtf8 {
        file: String,
        line: u64,
        offset: usize,
    },

    /// A column the import needs is not in the header.
    #[error(
        "{file}: missing required column '{column}' (header has: {header}; map it with {flag})"
    )]
    MissingColumn {
        file: String,
        column: String,
        header: String,
        flag: &'static str,
    },

    /// A value in a data row is unusable. `row` counts data rows from 1 (the header is not a row);
    /// `line` is the line in the file.
    #[error("{file}: row {row} (line {line}): field '{field}': {reason}")]
    BadValue {
        file: String,
        row: u64,
        line: u64,
        field: String,
        reason: String,
    },

    /// The CSV reader could not parse a record (e.g. unbalanced quotes).
    #[error("{file}: line {line}: {reason}")]
    BadRecord {
        file: String,
        line: u64,
        reason: String,
    },

    /// A coin code the source does not know.
    #[error("unknown coin code {codes} for source {source_name}{hint}")]
    UnknownCoin {
        codes: String,
        source_name: &'static str,
        hint: String,
    },

    /// A required environment variable (the API key) is missing.
    #[error("{var} is not set: {why}")]
    MissingEnv {
        var: &'static str,
        why: &'static str,
    },

    /// The API refused the key (401/403). The key itself never appears here.
    #[error(
        "{endpoint}: HTTP {status}: the API refused the key in LIVE_COIN_WATCH_API_KEY ({message})"
    )]
    Unauthorized {
        endpoint: String,
        status: u16,
        message: String,
    },

    /// The API answered a 4xx other than 401/403/429: not retried.
    #[error("{endpoint}: HTTP {status}: request rejected ({message})")]
    Rejected {
        endpoint: String,
        status: u16,
        message: String,
    },

    /// The API kept failing (429/5xx/timeouts/connection errors) until the last retry.
    #[error("{endpoint}: gave up after {attempts} attempts: {last}")]
    GaveUp {
        endpoint: String,
        attempts: u32,
        last: String,
    },

    /// The API answered 200 with a body that is not the documented JSON.
    #[error("{endpoint}: malformed response: {reason}")]
    Malformed { endpoint: String, reason: String },

    /// A backfill would spend more requests than the daily credits left.
    #[error(
        "backfill needs {needed} requests but LiveCoinWatch reports {remaining} credits left today; \
         narrow --start/--end or raise --window-hours"
    )]
    NotEnoughCredits { needed: u64, remaining: u64 },

    /// The shared storage layer failed (its own error carries location and key). Boxed: the
    /// object-store error inside is large and this enum travels in every `Result`.
    #[error(transparent)]
    Store(Box<CoreError>),

    /// A failed write was rolled back, but the rollback failed too: the message says which keys
    /// may now differ.
    #[error("{original}; rolling back {keys} also failed: {rollback}")]
    RollbackFailed {
        original: Box<ExtractError>,
        keys: String,
        rollback: Box<CoreError>,
    },
}

impl From<CoreError> for ExtractError {
    fn from(e: CoreError) -> Self {
        ExtractError::Store(Box::new(e))
    }
}

impl ExtractError {
    /// The process exit code this error maps to.
    pub fn exit_code(&self) -> ExitCode {
        use ExtractError::*;
        match self {
            Usage(_)
            | Open { .. }
            | Gzip { .. }
            | Empty { .. }
            | NotUtf8 { .. }
            | MissingColumn { .. }
            | BadValue { .. }
            | BadRecord { .. }
            | UnknownCoin { .. }
            | MissingEnv { .. }
            | Unauthorized { .. } => ExitCode::BadInput,
            Rejected { .. } | GaveUp { .. } | Malformed { .. } | NotEnoughCredits { .. } => {
                ExitCode::External
            }
            Internal(_) => ExitCode::Internal,
            Store(e) => e.exit_code(),
            RollbackFailed { original, .. } => original.exit_code(),
        }
    }
}

/// Classifier for `rps_core::exit::finish`: finds an [`ExtractError`] in an error chain.
pub fn classify(err: &(dyn std::error::Error + 'static)) -> Option<ExitCode> {
    err.downcast_ref::<ExtractError>()
        .map(ExtractError::exit_code)
}
