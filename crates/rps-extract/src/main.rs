//! rps-extract binary: parses flags ([`args::Cli`]), starts tracing, runs
//! [`rps_extract::run`], prints the one-line summary on stdout and maps errors to the exit
//! codes of `rps_core::ExitCode`.

mod args;

use anyhow::Context;
use clap::Parser;
use rps_core::ExitCode;
use rps_extract::classify;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = args::Cli::parse();
    rps_cli::telemetry::init(cli.common.log_format);
    let result = rps_extract::run(cli.into_config())
        .await
        .context("Failed to extract")
        .map(|summary| {
            rps_cli::say(summary);
            ExitCode::Ok
        });
    rps_cli::finish(result, classify)
}
