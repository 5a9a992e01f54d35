//! Builds the tracing subscriber: human-readable by default, JSON with `--log-format json`;
//! `RUST_LOG` overrides the level filter. Logs go to stderr so stdout stays for results.
//! Every log line passes through [`rps_core::redact::text`] on its way out, so a URL with
//! credentials (a tracking URI with a password, a token query parameter, a reqwest error that
//! quotes the request URL) is masked whichever crate logged it.

use std::io::{IsTerminal, Write};

use tracing_subscriber::{EnvFilter, fmt, fmt::MakeWriter, prelude::*};

/// Writes each formatted event to stderr with credentials masked. The formatter writes one
/// event into one writer and drops it, so the whole line is redacted at once; a failed write
/// (stderr closed) is ignored rather than panicking.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactedStderr;

/// The buffer of one event, written out redacted when dropped.
#[derive(Debug, Default)]
pub struct RedactedLine(Vec<u8>);

impl Write for RedactedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedLine {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.0);
        let _ = std::io::stderr().write_all(rps_core::redact::text(&line).as_bytes());
    }
}

impl<'a> MakeWriter<'a> for RedactedStderr {
    type Writer = RedactedLine;
    fn make_writer(&'a self) -> Self::Writer {
        RedactedLine::default()
    }
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Compact lines for people.
    #[default]
    Human,
    /// One JSON object per line for log collectors.
    Json,
}

/// Installs the global subscriber once; later calls are ignored (tests call it repeatedly).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Human => registry
            .with(
                fmt::layer()
                    .with_writer(RedactedStderr)
                    .with_target(false)
                    // Airflow and CI capture stderr: colour codes only for a terminal.
                    .with_ansi(
                        std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
                    ),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(RedactedStderr))
            .try_init(),
    };
}
