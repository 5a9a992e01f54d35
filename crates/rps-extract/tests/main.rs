//! Integration tests of rps-extract against real components: the real binary, real Parquet
//! files in a local directory and on the S3 test server, and a local HTTP server speaking the
//! LiveCoinWatch JSON (the specified stand-in for that API).

// Helpers outside #[test] functions panic on broken fixtures too; clippy.toml's
// allow-unwrap-in-tests only covers the test functions themselves.
#![allow(clippy::unwrap_used)]

mod bad_inputs;
mod common;
mod crash_safety;
mod csv_import;
mod livecoinwatch;
mod storage;
mod synthetic;
