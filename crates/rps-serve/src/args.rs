//! The flags of `rps-serve serve`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use rps_cli::{CommonArgs, ModelArgs};
use rps_serve::{ServeConfig, Settings};

/// RPS prediction server.
#[derive(Debug, Parser)]
#[command(name = "rps-serve", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands (the drift check is `rps-monitor drift`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve forecasts over HTTP (page at /, API at /openapi.json, metrics at /metrics).
    Serve(Box<ServeArgs>),
    /// GET a running server's URL and exit 0 on a 2xx answer, else 4: the container
    /// HEALTHCHECK, so the image needs no curl.
    Probe(ProbeArgs),
}

/// Flags of `rps-serve probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The URL to GET.
    #[arg(
        long,
        env = "RPS_PROBE_URL",
        default_value = "http://127.0.0.1:8000/health"
    )]
    pub url: String,

    /// Give up after this long: 3s, 500ms.
    #[arg(long, env = "RPS_PROBE_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Flags of `rps-serve serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Store and log format.
    #[command(flatten)]
    pub common: CommonArgs,

    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,

    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "RPS_ADDR", default_value = "127.0.0.1:8000")]
    pub addr: String,

    /// How often to check the alias (or model directory) for a new model: 500ms, 30s, 5m.
    #[arg(long, env = "RPS_POLL_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// How often to check the store for new bars (forecasts and realised errors follow them).
    #[arg(long, env = "RPS_STORE_POLL_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub store_poll_interval: Duration,

    /// PSI above which a feature counts as drifted; a package with calibration raises it per
    /// feature to the PSI 99 % of its training windows of the same length stay below.
    #[arg(long, env = "RPS_PSI_THRESHOLD", default_value_t = 0.2)]
    pub psi_threshold: f64,

    /// Share of features (0-1] that must drift for rps_data_drift = 1.
    #[arg(long, env = "RPS_DRIFT_SHARE", default_value_t = 0.5)]
    pub drift_share: f64,

    /// Distinct recent input rows (coin, hour) kept for PSI.
    #[arg(long, env = "RPS_DRIFT_WINDOW", default_value_t = 1000)]
    pub drift_window: usize,

    /// Rows needed before PSI is reported.
    #[arg(long, env = "RPS_DRIFT_MIN_ROWS", default_value_t = 100)]
    pub drift_min_rows: usize,

    /// Page-Hinkley tolerance δ, in units of the model's 80 % conformal error quantile.
    #[arg(long, env = "RPS_PH_DELTA", default_value_t = 0.1)]
    pub ph_delta: f64,

    /// Page-Hinkley alarm threshold λ (same units).
    #[arg(long, env = "RPS_PH_LAMBDA", default_value_t = 25.0)]
    pub ph_lambda: f64,

    /// Largest accepted request body, bytes.
    #[arg(long, env = "RPS_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,

    /// Async worker threads serving requests (0 = one per CPU core). Requests are short and
    /// CPU-bound: more threads than cores only adds switching.
    #[arg(long, env = "RPS_SERVE_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Time limit per request: 10s, 500ms.
    #[arg(long, env = "RPS_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Bearer token that POST /feedback requires (realised closes feed the concept-drift
    /// detector). Unset: /feedback is off (403); closes then come from the store only.
    #[arg(long, env = "RPS_FEEDBACK_TOKEN", hide_env_values = true)]
    pub feedback_token: Option<String>,

    /// Time a client has to send a request's headers, and the longest a kept-alive
    /// connection may sit idle: 10s.
    #[arg(long, env = "RPS_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Most connections served at once; more get a 503 and are closed. Keep it below the
    /// process's open-file limit (ulimit -n).
    #[arg(long, env = "RPS_MAX_CONNECTIONS", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// On SIGTERM/Ctrl-C, how long requests in flight may take before their connections are
    /// closed: 10s.
    #[arg(long, env = "RPS_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Longest accepted request URI, bytes (414 beyond).
    #[arg(long, env = "RPS_MAX_URI_BYTES", default_value_t = 8 << 10)]
    pub max_uri_bytes: usize,

    /// Largest accepted request headers, bytes (431 beyond).
    #[arg(long, env = "RPS_MAX_HEADER_BYTES", default_value_t = 16 << 10)]
    pub max_header_bytes: usize,
}

impl ServeArgs {
    /// The library's configuration.
    pub fn config(self) -> ServeConfig {
        let (model, cache_dir) = self.model.into_spec();
        ServeConfig {
            addr: self.addr,
            store: self.common.store,
            model,
            cache_dir,
            settings: Settings {
                psi_threshold: self.psi_threshold,
                drift_share: self.drift_share,
                drift_window: self.drift_window,
                drift_min_rows: self.drift_min_rows,
                ph_delta: self.ph_delta,
                ph_lambda: self.ph_lambda,
                model_poll_interval: self.poll_interval,
                store_poll_interval: self.store_poll_interval,
                max_body_bytes: self.max_body_bytes,
                request_timeout: self.request_timeout,
                feedback_token: self.feedback_token.and_then(rps_serve::state::Token::new),
                header_timeout: self.header_timeout,
                max_connections: self.max_connections as usize,
                shutdown_grace: self.shutdown_grace,
                max_uri_bytes: self.max_uri_bytes,
                max_header_bytes: self.max_header_bytes,
                ..Settings::default()
            },
        }
    }
}

/// A positive duration with its unit (`500ms`, `30s`, `5m`, `1h`; humantime's syntax).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("'{s}' is not a duration (e.g. 30s, 500ms, 5m): {e}"))?;
    if d.is_zero() {
        return Err(format!("'{s}' must be a positive duration"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit_and_must_be_positive() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("2").is_err(), "a bare number is refused");
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
