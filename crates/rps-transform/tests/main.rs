//! Integration tests of rps-transform: real files, the real binary, a real local store.

// Test helpers outside #[test] functions panic on broken fixtures by design.
#![allow(clippy::unwrap_used)]

mod cli;
mod gaps;
mod golden;
mod jobs;
mod profile_html;
mod s3;
mod support;
