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
    ///
    /// A store that cannot take or give data (a full disk, a read-only or permission-denied
    /// directory, S3 failing) is an external fault (4, which Airflow retries); a file or key
    /// that is missing or does not decode is bad input (2).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CoreError::BadLocation { .. } | CoreError::BadFile { .. } => ExitCode::BadInput,
            CoreError::Io { source, .. } => io_exit_code(source.kind()),
            CoreError::Write { source, .. } => {
                io_kind_in(source.as_ref()).map_or(ExitCode::External, io_exit_code)
            }
            CoreError::Read {
                location, source, ..
            } => {
                if location.starts_with("s3://") {
                    ExitCode::External
                } else if matches!(**source, object_store::Error::NotFound { .. }) {
                    ExitCode::BadInput
                } else {
                    io_kind_in(source.as_ref()).map_or(ExitCode::BadInput, io_exit_code)
                }
            }
            CoreError::Encode { .. } => ExitCode::Internal,
        }
    }

    /// A Parquet writer's or reader's error for `key`: an I/O failure underneath (a full
    /// disk, a closed pipe) becomes [`CoreError::Io`], the rest [`CoreError::Encode`].
    pub fn from_parquet(key: &str, e: parquet::errors::ParquetError) -> CoreError {
        if let parquet::errors::ParquetError::External(inner) = &e
            && let Some(io) = inner.downcast_ref::<std::io::Error>()
        {
            return CoreError::Io {
                location: key.to_string(),
                source: std::io::Error::new(io.kind(), io.to_string()),
            };
        }
        CoreError::Encode {
            key: key.to_string(),
            reason: e.to_string(),
        }
    }
}

/// The exit code of a failed I/O operation of the store: missing or malformed input and a
/// store path that runs into a file are the caller's (2: a retry cannot help); anything else
/// (no space, read-only, permissions, interrupted) the system's (4).
fn io_exit_code(kind: std::io::ErrorKind) -> ExitCode {
    use std::io::ErrorKind::{
        AlreadyExists, InvalidData, InvalidFilename, InvalidInput, IsADirectory, NotADirectory,
        NotFound, UnexpectedEof,
    };
    if matches!(
        kind,
        NotFound
            | InvalidInput
            | InvalidData
            | UnexpectedEof
            | NotADirectory
            | IsADirectory
            | AlreadyExists
            | InvalidFilename
    ) {
        ExitCode::BadInput
    } else {
        ExitCode::External
    }
}

/// The kind of the first I/O error in an error's source chain.
fn io_kind_in(err: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = e.source();
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error as IoError, ErrorKind};

    fn write_error(kind: ErrorKind) -> CoreError {
        CoreError::Write {
            location: "/data/store".into(),
            key: "raw/BTC.parquet".into(),
            source: Box::new(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(IoError::from(kind)),
            }),
        }
    }

    #[test]
    fn a_store_that_cannot_take_data_is_an_external_fault_and_missing_input_is_bad_input() {
        for kind in [
            ErrorKind::StorageFull,
            ErrorKind::ReadOnlyFilesystem,
            ErrorKind::PermissionDenied,
        ] {
            assert_eq!(write_error(kind).exit_code(), ExitCode::External, "{kind}");
            let io = CoreError::Io {
                location: "/data/store".into(),
                source: IoError::from(kind),
            };
            assert_eq!(io.exit_code(), ExitCode::External, "{kind}");
        }
        let missing = CoreError::Read {
            location: "/data/store".into(),
            key: "raw/BTC.parquet".into(),
            source: Box::new(object_store::Error::NotFound {
                path: "raw/BTC.parquet".into(),
                source: Box::new(IoError::from(ErrorKind::NotFound)),
            }),
        };
        assert_eq!(missing.exit_code(), ExitCode::BadInput);
        let unreadable = CoreError::Read {
            location: "/data/store".into(),
            key: "raw/BTC.parquet".into(),
            source: Box::new(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(IoError::from(ErrorKind::PermissionDenied)),
            }),
        };
        assert_eq!(unreadable.exit_code(), ExitCode::External);
    }

    #[test]
    fn a_full_disk_under_the_parquet_writer_is_an_io_fault_not_an_encoding_bug() {
        let full = parquet::errors::ParquetError::External(Box::new(IoError::from(
            ErrorKind::StorageFull,
        )));
        let e = CoreError::from_parquet("features/BTC.parquet", full);
        assert!(matches!(e, CoreError::Io { .. }), "{e}");
        assert_eq!(e.exit_code(), ExitCode::External);
        let bug = parquet::errors::ParquetError::General("bad schema".into());
        assert_eq!(
            CoreError::from_parquet("k", bug).exit_code(),
            ExitCode::Internal
        );
    }
}
