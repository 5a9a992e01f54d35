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

/// Runs CPU-bound work `f` (seconds of model forecasts, say) from async code: under a
/// multi-thread tokio runtime with `block_in_place`, so the other tasks keep their workers;
/// directly elsewhere (a current-thread runtime, where `block_in_place` would panic, or no
/// runtime).
pub fn cpu_bound<T>(f: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}
