//! rps-core: the contracts every RPS stage shares — the raw-bar schema, the storage layer
//! (local directory or `s3://`), atomic Parquet I/O, common flags, telemetry and exit codes.

pub mod cli;
pub mod error;
pub mod exit;
pub mod features;
pub mod parquet_io;
pub mod schema;
pub mod storage;
pub mod telemetry;
pub mod time;

pub use error::{CoreError, Result};
pub use exit::ExitCode;
pub use schema::{Bar, Source};
pub use storage::Store;
pub mod testenv;
