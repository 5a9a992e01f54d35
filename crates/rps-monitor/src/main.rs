//! rps-monitor binary: `drift`, the DAG's drift check (exit 0, 3 on drift, 2 on bad input).

mod args;

use anyhow::Context;
use clap::Parser;
use rps_cli::finish;

use crate::args::{Cli, Command};

fn main() -> std::process::ExitCode {
    let Cli { command } = Cli::parse();
    let Command::Drift(drift) = command;
    rps_cli::telemetry::init(drift.common.log_format);
    let config = drift.config();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("Failed to start the async runtime")
        .and_then(|rt| {
            rt.block_on(rps_monitor::run_drift(&config))
                .context("Drift check failed")
        });
    finish(result, rps_monitor::classify)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
