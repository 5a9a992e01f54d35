//! rps-monitor binary: `drift`, the DAG's drift check (exit 0, 3 on drift, 2 on bad input), and
//! `backtest`, the replay of stored hours through the serving path (exit 0, 2 on bad input).

mod args;

use anyhow::Context;
use clap::Parser;
use rps_cli::finish;

use crate::args::{Cli, Command};

fn main() -> std::process::ExitCode {
    let Cli { command } = Cli::parse();
    match command {
        Command::Drift(drift) => {
            rps_cli::telemetry::init(drift.common.log_format);
            let config = drift.config();
            let result = runtime().and_then(|rt| {
                rt.block_on(rps_monitor::run_drift(&config))
                    .context("Drift check failed")
            });
            finish(result, rps_monitor::classify)
        }
        Command::Backtest(bt) => {
            rps_cli::telemetry::init(bt.common.log_format);
            let config = bt.config();
            let result = runtime().and_then(|rt| {
                rt.block_on(rps_monitor::run_backtest(&config))
                    .map(|r| {
                        print_summary(&r, &config);
                        rps_core::ExitCode::Ok
                    })
                    .context("Backtest failed")
            });
            finish(result, rps_monitor::classify)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("Failed to start the async runtime")
}

/// One line for the point forecast and one per level; a closed stdout is not an error.
fn print_summary(r: &rps_monitor::BacktestReport, cfg: &rps_monitor::BacktestConfig) {
    use std::io::Write;
    let mut out = std::io::stdout();
    let p = &r.all.point;
    let _ = writeln!(
        out,
        "backtest of {} v{} ({}): {} hours scored, {} skipped at gaps | RMSE {:.2} USD vs persistence {:.2} (skill {:+.4}) | report {}",
        r.model.name,
        r.model.version,
        r.model.kind,
        r.all.rows,
        r.all.skipped_gap_hours,
        p.rmse_usd,
        p.persistence_rmse_usd,
        p.skill,
        cfg.report.display()
    );
    for (level, f) in &r.all.intervals {
        let s = &r.all.baseline_static[level];
        let _ = writeln!(
            out,
            "  {level}: coverage {:.4} (worst 720 h {}), width {:.1} USD, interval score {:.1} USD | static: coverage {:.4}, score {:.1} USD",
            f.coverage,
            f.worst_720h_coverage
                .map_or_else(|| "n/a".into(), |w| format!("{w:.4}")),
            f.mean_width_usd,
            f.interval_score_usd,
            s.coverage,
            s.interval_score_usd
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
