//! rps-serve binary: `serve` (the HTTP server) and `drift` (the DAG's drift check).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rps_cli::{CoinList, CommonArgs};
use rps_core::ExitCode;
use rps_serve::{DriftConfig, ModelSpec, ServeConfig, Settings};

/// RPS prediction server and drift check.
#[derive(Debug, Parser)]
#[command(name = "rps-serve", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve forecasts over HTTP (page at /, API at /openapi.json, metrics at /metrics).
    Serve(ServeArgs),
    /// Compare recent stored features with the model's training reference (PSI); exit 3 on
    /// drift so the DAG retrains.
    Drift(DriftArgs),
}

/// Where the model comes from (shared by both commands).
#[derive(Debug, Clone, Args)]
struct ModelArgs {
    /// Serve this model package directory instead of a registry alias (its changes are
    /// picked up by the reload poll).
    #[arg(long, env = "RPS_MODEL_DIR", conflicts_with = "registry")]
    model_dir: Option<PathBuf>,

    /// Local registry directory (used unless MLFLOW_TRACKING_URI is set, which selects MLflow).
    #[arg(long, env = "RPS_REGISTRY", default_value = "./registry")]
    registry: PathBuf,

    /// Registered model name.
    #[arg(long, env = "RPS_MODEL_NAME", default_value = "rps-forecaster")]
    model_name: String,

    /// Registry alias to serve and follow.
    #[arg(long, env = "RPS_ALIAS", default_value = "champion")]
    alias: String,

    /// Directory where packages downloaded from the registry are staged while loading (each
    /// is deleted once loaded; default: a temp dir).
    #[arg(long, env = "RPS_MODEL_CACHE")]
    cache_dir: Option<PathBuf>,
}

impl ModelArgs {
    fn spec(&self) -> ModelSpec {
        match &self.model_dir {
            Some(d) => ModelSpec::Dir(d.clone()),
            None => ModelSpec::Registry {
                registry: self.registry.clone(),
                name: self.model_name.clone(),
                alias: self.alias.clone(),
            },
        }
    }
    fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(rps_serve::startup::default_cache_dir)
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    model: ModelArgs,

    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "RPS_ADDR", default_value = "127.0.0.1:8000")]
    addr: String,

    /// How often to check the alias (or model directory) for a new model: 500ms, 30s, 5m.
    #[arg(long, env = "RPS_POLL_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    poll_interval: Duration,

    /// How often to check the store for new bars (forecasts and realised errors follow them).
    #[arg(long, env = "RPS_STORE_POLL_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    store_poll_interval: Duration,

    /// PSI above which a feature counts as drifted; a package with calibration raises it per
    /// feature to the PSI 99 % of its training windows of the same length stay below.
    #[arg(long, env = "RPS_PSI_THRESHOLD", default_value_t = 0.2)]
    psi_threshold: f64,

    /// Share of features (0-1] that must drift for rps_data_drift = 1.
    #[arg(long, env = "RPS_DRIFT_SHARE", default_value_t = 0.5)]
    drift_share: f64,

    /// Distinct recent input rows (coin, hour) kept for PSI.
    #[arg(long, env = "RPS_DRIFT_WINDOW", default_value_t = 1000)]
    drift_window: usize,

    /// Rows needed before PSI is reported.
    #[arg(long, env = "RPS_DRIFT_MIN_ROWS", default_value_t = 100)]
    drift_min_rows: usize,

    /// Page-Hinkley tolerance δ, in units of the model's 80 % conformal error quantile.
    #[arg(long, env = "RPS_PH_DELTA", default_value_t = 0.1)]
    ph_delta: f64,

    /// Page-Hinkley alarm threshold λ (same units).
    #[arg(long, env = "RPS_PH_LAMBDA", default_value_t = 25.0)]
    ph_lambda: f64,

    /// Largest accepted request body, bytes.
    #[arg(long, env = "RPS_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    max_body_bytes: usize,

    /// Async worker threads serving requests (0 = one per CPU core). Requests are short and
    /// CPU-bound: more threads than cores only adds switching.
    #[arg(long, env = "RPS_SERVE_WORKERS", default_value_t = 0)]
    workers: usize,

    /// Time limit per request: 10s, 500ms.
    #[arg(long, env = "RPS_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    request_timeout: Duration,
}

#[derive(Debug, Args)]
struct DriftArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    model: ModelArgs,

    /// Coins to check, comma-separated.
    #[arg(long, env = "RPS_COINS", default_value = "BTC")]
    coins: CoinList,

    /// Hours of the most recent features to compare.
    #[arg(long, env = "RPS_DRIFT_WINDOW_HOURS", default_value_t = 168)]
    window_hours: u32,

    /// PSI above which a feature has drifted; a package with calibration raises it per feature
    /// to the PSI 99 % of its training windows of the same length stay below.
    #[arg(long, env = "RPS_DRIFT_THRESHOLD", default_value_t = 0.2)]
    threshold: f64,

    /// Share of features (0-1] that must drift for a drift verdict (exit 3).
    #[arg(long, env = "RPS_DRIFT_SHARE", default_value_t = 0.5)]
    share: f64,

    /// Where to write the JSON report.
    #[arg(long, env = "RPS_DRIFT_REPORT", default_value = "reports/drift.json")]
    report: PathBuf,

    /// End of the window (exclusive, RFC 3339; Airflow's data_interval_end). Default: the
    /// newest feature row.
    #[arg(long, env = "RPS_DRIFT_END", value_parser = rps_core::time::parse_utc)]
    end: Option<chrono::DateTime<chrono::Utc>>,
}

/// Parses `250ms`, `30s`, `5m`, `1h` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (e.g. 30s, 500ms, 5m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (ms, s, m, h)")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("'{s}' must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

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
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Command::Serve(a) => a.common.log_format,
        Command::Drift(a) => a.common.log_format,
    };
    rps_cli::telemetry::init(log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(a) = &cli.command
        && a.workers > 0
    {
        runtime.worker_threads(a.workers);
    }
    let result = runtime
        .enable_all()
        .build()
        .context("Failed to start the async runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    rps_cli::finish(result, rps_serve::classify)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(a) => {
            let config = ServeConfig {
                addr: a.addr,
                store: a.common.store,
                model: a.model.spec(),
                cache_dir: a.model.cache_dir(),
                settings: Settings {
                    psi_threshold: a.psi_threshold,
                    drift_share: a.drift_share,
                    drift_window: a.drift_window,
                    drift_min_rows: a.drift_min_rows,
                    ph_delta: a.ph_delta,
                    ph_lambda: a.ph_lambda,
                    model_poll_interval: a.poll_interval,
                    store_poll_interval: a.store_poll_interval,
                    max_body_bytes: a.max_body_bytes,
                    request_timeout: a.request_timeout,
                    ..Settings::default()
                },
            };
            rps_serve::serve(config).await.context("Failed to serve")
        }
        Command::Drift(a) => {
            let config = DriftConfig {
                store: a.common.store,
                coins: a.coins.0,
                model: a.model.spec(),
                cache_dir: a.model.cache_dir(),
                window_hours: a.window_hours,
                rule: rps_serve::drift::DriftRule {
                    threshold: a.threshold,
                    share: a.share,
                },
                report: a.report,
                end: a.end.map(|t| t.timestamp_millis()),
            };
            rps_serve::run_drift(&config)
                .await
                .context("Drift check failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_bare_seconds() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
