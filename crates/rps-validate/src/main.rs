//! rps-validate binary: parses flags ([`args::Args`]), starts tracing, runs the checks, maps
//! the verdict and errors to the exit code (0 pass or warn, 3 fail, 2 bad input).

mod args;

use anyhow::Context;
use clap::Parser;
use rps_core::ExitCode;
use rps_validate::ValidateError;

fn classify(e: &(dyn std::error::Error + 'static)) -> Option<ExitCode> {
    e.downcast_ref::<ValidateError>()
        .map(ValidateError::exit_code)
}

fn main() -> std::process::ExitCode {
    let args = args::Args::parse();
    rps_cli::telemetry::init(args.common.log_format);
    let config = args.into_config();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("Failed to start the async runtime")
        .and_then(|rt| {
            let mut stdout = std::io::stdout().lock();
            rt.block_on(rps_validate::run(&config, &mut stdout))
                .with_context(|| format!("Failed to validate raw bars in {}", config.store))
        })
        .map(|report| report.exit_code());
    rps_cli::finish(result, classify)
}
