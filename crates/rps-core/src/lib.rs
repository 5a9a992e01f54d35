//! rps-core: the contracts every RPS stage shares — the raw-bar schema, the storage layer
//! (local directory or `s3://`), atomic file and Parquet I/O, time, errors, exit codes and the
//! retry policy of the API clients. No flags, no logging setup, no test helpers: those live in
//! `rps-cli` and `rps-testkit`.

#![deny(missing_docs)]

pub mod error;
pub mod exit;
pub mod fs;
pub mod parquet_io;
pub mod redact;
pub mod retry;
pub mod schema;
pub mod storage;
pub mod time;

pub use error::{CoreError, Result};
pub use exit::ExitCode;
pub use schema::{Bar, Source};
pub use storage::Store;
