//! rps-transform binary: parses flags, starts tracing, runs [`rps_transform::run`], prints a
//! one-line result on stdout and maps errors to the exit codes of `rps_core::ExitCode`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use rps_cli::{CoinList, CommonArgs};
use rps_core::ExitCode;
use rps_transform::{Config, classify};

/// Turns raw hourly bars (raw/<COIN>.parquet) into feature files (features/<COIN>.parquet),
/// with a JSON summary for DVC metrics and an optional self-contained HTML data profile.
///
/// A feature row is only emitted when its whole window (the last warm-up + 1 hours) has
/// no missing hour; dropped rows are counted in the summary. A coin with too few bars gets
/// an empty feature file and a warning.
///
/// Exit codes: 0 ok, 2 bad usage or input (missing coin, wrong raw schema), 4 the store (S3)
/// failed after retries, 1 internal error.
#[derive(Debug, Parser)]
#[command(name = "rps-transform", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,

    /// Coins, comma-separated (e.g. BTC,ETH). Default: every coin with raw bars in the store.
    #[arg(long, env = "RPS_COINS")]
    coins: Option<CoinList>,

    /// Write the JSON summary here (rows in/out, dropped rows, feature-spec hash), e.g.
    /// reports/transform.json for `dvc metrics`; a local file or an object URL
    /// s3://bucket/prefix/name.json (AWS_* settings as for --store).
    #[arg(long, env = "RPS_TRANSFORM_SUMMARY")]
    summary: Option<PathBuf>,

    /// Write the HTML data profile here (one self-contained file), e.g. reports/profile.html;
    /// a local file or an object URL s3://bucket/prefix/name.html.
    #[arg(long, env = "RPS_PROFILE")]
    profile: Option<PathBuf>,

    /// An rps-validate report (JSON) whose checks the profile shows: a local file or an
    /// object URL s3://bucket/prefix/name.json; a missing one is noted in the profile, not
    /// an error.
    #[arg(long, env = "RPS_VALIDATION_REPORT")]
    validation_report: Option<PathBuf>,

    /// Coins transformed concurrently (0 = one per CPU, at most 4).
    #[arg(long, env = "RPS_TRANSFORM_JOBS", default_value_t = 0)]
    jobs: usize,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    rps_cli::telemetry::init(cli.common.log_format);
    let config = Config {
        store: cli.common.store,
        coins: cli.coins.map(|c| c.0),
        summary: cli.summary,
        profile: cli.profile,
        validation_report: cli.validation_report,
        jobs: cli.jobs,
    };
    let result = rps_transform::run(config).await.context("Failed to transform").map(|s| {
        rps_cli::say(format_args!(
            "transformed {} coin(s): {} bars in, {} feature rows out (dropped: {} gap, {} warm-up), feature spec {}",
            s.coins.len(),
            s.rows_in,
            s.rows_out,
            s.dropped_gap,
            s.dropped_warmup,
            s.feature_spec_hash
        ));
        ExitCode::Ok
    });
    rps_cli::finish(result, classify)
}
