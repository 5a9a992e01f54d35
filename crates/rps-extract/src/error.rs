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
        /// The file as given.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A gzip-compressed input file did not decompress (truncated or corrupt).
    #[error("{file}: not valid gzip: {source}")]
    Gzip {
        /// The file as given.
        file: String,
        /// The decompressor's error.
        #[source]
        source: std::io::Error,
    },

    /// An input file has no bytes, or a header and no data rows.
    #[error("{file}: {what}")]
    Empty {
        /// The file as given.
        file: String,
        /// Which of the two it is (no bytes at all, or a header without rows).
        what: &'static str,
    },

    /// An input file is not UTF-8 text.
    #[error("{file}: line {line}: field {field} is not valid UTF-8")]
    NotUtf8 {
        /// The file as given.
        file: String,
        /// The 1-based line of the record holding the first invalid byte.
        line: u64,
        /// The 1-based field holding it.
        field: usize,
    },

    /// An input record runs on beyond the length cap (a file without line breaks, an
    /// unclosed quote, or not CSV at all): refused before it is buffered whole.
    #[error(
        "{file}: line {line}: a record longer than {limit} bytes (no line break, an unclosed quote, or not a CSV file); nothing was imported"
    )]
    TooLong {
        /// The file as given.
        file: String,
        /// The line where the over-long record starts.
        line: u64,
        /// The cap, in bytes.
        limit: u64,
    },

    /// A column the import needs is not in the header.
    #[error(
        "{file}: missing required column '{column}' (header has: {header}; map it with {flag})"
    )]
    MissingColumn {
        /// The file as given.
        file: String,
        /// The column name looked for.
        column: String,
        /// The file's header, comma-separated.
        header: String,
        /// The flag that maps this column to another header name.
        flag: &'static str,
    },

    /// A value in a data row is unusable. `row` counts data rows from 1 (the header is not a row);
    /// `line` is the line in the file.
    #[error("{file}: row {row} (line {line}): field '{field}': {reason}")]
    BadValue {
        /// The file as given.
        file: String,
        /// The data row, counted from 1.
        row: u64,
        /// The line in the file, counted from 1.
        line: u64,
        /// The field (column) holding the value.
        field: String,
        /// What is wrong with the value.
        reason: String,
    },

    /// The CSV reader could not parse a record (e.g. unbalanced quotes).
    #[error("{file}: line {line}: {reason}")]
    BadRecord {
        /// The file as given.
        file: String,
        /// The line in the file, counted from 1.
        line: u64,
        /// The CSV reader's message.
        reason: String,
    },

    /// A coin code the source does not know.
    #[error("unknown coin code {codes} for source {source_name}{hint}")]
    UnknownCoin {
        /// The unknown codes, comma-separated.
        codes: String,
        /// The source asked (`csv` or `livecoinwatch`).
        source_name: &'static str,
        /// Appended to the message: what the source does have, starting with a space (may
        /// be empty).
        hint: String,
    },

    /// A required environment variable (the API key) is missing.
    #[error("{var} is not set: {why}")]
    MissingEnv {
        /// The variable's name.
        var: &'static str,
        /// Why it is needed and what to do instead.
        why: &'static str,
    },

    /// The API refused the key (401/403). The key itself never appears here.
    #[error(
        "{endpoint}: HTTP {status}: the API refused the key in LIVE_COIN_WATCH_API_KEY ({message})"
    )]
    Unauthorized {
        /// The request's URL.
        endpoint: String,
        /// The HTTP status (401 or 403).
        status: u16,
        /// The error message of the response body.
        message: String,
    },

    /// The API answered a 4xx other than 401/403/429: not retried.
    #[error("{endpoint}: HTTP {status}: request rejected ({message})")]
    Rejected {
        /// The request's URL.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The error message of the response body.
        message: String,
    },

    /// The API kept failing (429/5xx/timeouts/connection errors) until the last retry.
    #[error("{endpoint}: gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// The request's URL.
        endpoint: String,
        /// Attempts made, the first included.
        attempts: u32,
        /// Why the last attempt failed.
        last: String,
    },

    /// The API answered 200 with a body that is not the documented JSON.
    #[error("{endpoint}: malformed response: {reason}")]
    Malformed {
        /// The request's URL.
        endpoint: String,
        /// The decoding error and the start of the body.
        reason: String,
    },

    /// A backfill would spend more requests than the daily credits left.
    #[error(
        "backfill needs {needed} requests but LiveCoinWatch reports {remaining} credits left today; \
         narrow --start/--end or raise --window-hours"
    )]
    NotEnoughCredits {
        /// Requests the run would send.
        needed: u64,
        /// Credits left today, as the `credits` endpoint reported.
        remaining: u64,
    },

    /// Re-observed hours would move stored prices by more than the revision tolerance.
    #[error(
        "{coin}: {hours} stored hour(s) would change by more than {tolerance_pct} % (first {first_ts}: close {old_close} -> {new_close}, {pct:+.2} %); nothing was written; pass --allow-revisions to accept them or raise --revision-tolerance"
    )]
    Revision {
        /// The coin.
        coin: String,
        /// Hours beyond the tolerance.
        hours: usize,
        /// The first of them, RFC 3339.
        first_ts: String,
        /// Its stored close.
        old_close: f64,
        /// Its new close.
        new_close: f64,
        /// The signed change of its close, percent.
        pct: f64,
        /// The tolerance, percent.
        tolerance_pct: f64,
    },

    /// The shared storage layer failed (its own error carries location and key). Boxed: the
    /// object-store error inside is large and this enum travels in every `Result`.
    #[error(transparent)]
    Store(Box<CoreError>),

    /// A failed write was rolled back, but the rollback failed too: the message says which keys
    /// may now differ.
    #[error("{original}; rolling back {keys} also failed: {rollback}")]
    RollbackFailed {
        /// The error that made the write fail.
        original: Box<ExtractError>,
        /// The keys whose rollback failed, comma-separated: they may now differ.
        keys: String,
        /// The error of the rollback.
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
            | TooLong { .. }
            | MissingColumn { .. }
            | BadValue { .. }
            | BadRecord { .. }
            | UnknownCoin { .. }
            | MissingEnv { .. }
            | Revision { .. }
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
