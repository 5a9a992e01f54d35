//! rps-serve binary: `serve`, the HTTP server (the drift check is `rps-monitor drift`).

mod args;

use anyhow::Context;
use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> std::process::ExitCode {
    // candle (linked through rps-model) re-reads CPU info on every matmul unless this is set
    // (docs/CANDLE.md). Set before any thread exists: the runtime is built below.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: single-threaded at this point; nothing reads the environment concurrently.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", "1");
        }
    }
    let args = match Cli::parse().command {
        Command::Serve(args) => *args,
        Command::Probe(p) => return probe(&p),
    };
    rps_cli::telemetry::init(args.common.log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if args.workers > 0 {
        runtime.worker_threads(args.workers);
    }
    let config = args.config();
    let result = runtime
        .enable_all()
        .build()
        .context("Failed to start the async runtime")
        .and_then(|rt| {
            rt.block_on(rps_serve::serve(config))
                .context("Failed to serve")
        });
    rps_cli::finish(result, rps_serve::classify)
}

/// `rps-serve probe`: prints the status on success (the HEALTHCHECK's log), one error line
/// and exit 4 otherwise.
fn probe(p: &args::ProbeArgs) -> std::process::ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("Failed to start the async runtime")
        .and_then(|rt| {
            rt.block_on(rps_serve::probe::probe(&p.url, p.timeout))
                .map_err(anyhow::Error::from)
        })
        .map(|status| {
            rps_cli::say(format_args!("{} answered {status}", p.url));
            rps_core::ExitCode::Ok
        });
    rps_cli::finish(result, rps_serve::classify)
}
