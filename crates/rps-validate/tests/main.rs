//! Integration tests of rps-validate: the real binary on stores written through rps-core.

// Fixture helpers are not #[test] functions, so clippy's allow-unwrap-in-tests misses them.
#![allow(clippy::unwrap_used)]

mod bad_input;
mod common;
mod failures;
mod gaps;
mod s3;
mod shared_file;
mod staleness;
