//! The exit-code contract of every stage (DESIGN.md §3) and the one place binaries turn an
//! error chain into a one-line message and a code.

use std::error::Error as StdError;

/// Process exit codes shared by all stages. 99 is never used: Airflow reads it as "skip".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// An unexpected internal failure (a bug).
    Internal = 1,
    /// Bad usage or bad input; the message names the file/row/field.
    BadInput = 2,
    /// A data-quality failure (validate), a drift alarm (drift check) or a gate refusal (train).
    Quality = 3,
    /// An external service (API, MLflow, S3) failed after retries.
    External = 4,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> Self {
        std::process::ExitCode::from(c as u8)
    }
}

/// Renders an error chain on one line: `outer: inner: root`, skipping repeated text.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

/// Finds the exit code for an error: the first cause in the chain that `classify` (or the
/// core error type) recognises decides; anything unrecognised is `Internal`.
pub fn code_for(
    err: &anyhow::Error,
    classify: impl Fn(&(dyn StdError + 'static)) -> Option<ExitCode>,
) -> ExitCode {
    for cause in err.chain() {
        if let Some(c) = classify(cause) {
            return c;
        }
        if let Some(core) = cause.downcast_ref::<crate::CoreError>() {
            return core.exit_code();
        }
        if cause.downcast_ref::<clap::Error>().is_some() {
            return ExitCode::BadInput;
        }
    }
    ExitCode::Internal
}

/// What every `main` ends with: logs nothing on success; on failure prints
/// `error: <one line>` to stderr and returns the mapped exit code.
pub fn finish(
    result: anyhow::Result<ExitCode>,
    classify: impl Fn(&(dyn StdError + 'static)) -> Option<ExitCode>,
) -> std::process::ExitCode {
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            let code = code_for(&err, classify);
            eprintln!("error: {}", one_line(&err));
            code.into()
        }
    }
}
