//! The one place a binary turns an error chain into a one-line message and an exit code.

use std::error::Error as StdError;

use rps_core::ExitCode;

/// Renders an anyhow chain on one line: `outer: inner: root`, skipping repeated text.
pub fn one_line(err: &anyhow::Error) -> String {
    rps_core::error::chain(err.as_ref())
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
        if let Some(core) = cause.downcast_ref::<rps_core::CoreError>() {
            return core.exit_code();
        }
        if cause.downcast_ref::<clap::Error>().is_some() {
            return ExitCode::BadInput;
        }
    }
    ExitCode::Internal
}

/// Writes a line of results to stdout. A closed or full stdout (a reader that went away)
/// loses the line but never panics the process, as `println!` would (exit 101).
pub fn say(line: impl std::fmt::Display) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// What every `main` ends with: logs nothing on success; on failure prints
/// `error: <one line>` to stderr and returns the mapped exit code. An unwritable stderr
/// loses the message, not the exit code.
pub fn finish(
    result: anyhow::Result<ExitCode>,
    classify: impl Fn(&(dyn StdError + 'static)) -> Option<ExitCode>,
) -> std::process::ExitCode {
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            let code = code_for(&err, classify);
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "error: {}", one_line(&err));
            code.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_is_one_line_and_an_unknown_error_is_internal() {
        let err = anyhow::anyhow!("root cause").context("Failed to run");
        assert_eq!(one_line(&err), "Failed to run: root cause");
        assert_eq!(code_for(&err, |_| None), ExitCode::Internal);
        assert_eq!(
            code_for(&err, |_| Some(ExitCode::Quality)),
            ExitCode::Quality
        );
    }
}
