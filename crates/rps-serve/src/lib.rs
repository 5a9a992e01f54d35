//! rps-serve: the prediction server (axum) — next-hour forecasts with conformal intervals from
//! the champion model, Prometheus metrics, live data drift (PSI) and concept drift
//! (Page-Hinkley) gauges, hot model reload. The drift check the DAG uses to decide on
//! retraining is `rps-monitor drift` (crate rps-monitor, which also owns the detectors).
//!
//! ```text
//! $ rps-serve serve --store ./data --registry ./registry --model-name rps-forecaster
//! rps-serve: serving rps-forecaster version 1 (models:/rps-forecaster@champion)
//!   page:     http://127.0.0.1:8000/
//!   forecast: curl -s -X POST http://127.0.0.1:8000/predict -H 'content-type: application/json' -d '{"coin":"BTC"}'
//! ```
//!
//! Layout: [`startup`] builds and runs the app, [`routes`] has one file per resource,
//! [`connections`] the accept loop and its limits, [`api`] the JSON shapes, [`validate`] the
//! input rules, [`state`] the shared state (forecast cache, monitoring, hot reload) and the
//! flow's domain errors, [`error`] their mapping to HTTP, [`model`] the loaded model (its
//! source is [`rps_mlflow::source`]) and [`calibration`] its per-coin online interval
//! calibrators, [`monitor`] the live drift state over `rps_monitor`'s detectors, [`metrics`]
//! every metric name.

#![deny(missing_docs)]

pub mod api;
pub mod calibration;
pub mod connections;
pub mod error;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod probe;
pub mod routes;
pub mod startup;
pub mod state;
pub mod validate;

use rps_core::ExitCode;

pub use error::{ApiError, Result, ServeError, classify};
pub use rps_mlflow::source::ModelSpec;
pub use startup::{Application, ServeConfig};
pub use state::{AppState, ForecastError, ReloadOutcome, Settings};

/// Runs the server until Ctrl-C/SIGTERM, printing where to find it once it listens.
pub async fn serve(config: ServeConfig) -> Result<ExitCode> {
    let app = Application::build(config).await?;
    // Written once and errors ignored: a closed stdout (a supervisor that stopped reading)
    // must not take the server down, as println! would by panicking.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(format!("{}\n", banner(&app)).as_bytes());
        let _ = out.flush();
    }
    app.run_until_stopped().await?;
    Ok(ExitCode::Ok)
}

/// The start-up message: the page's URL and a working curl example.
pub fn banner(app: &Application) -> String {
    let addr = app.addr();
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let host = if addr.is_ipv6() && !addr.ip().is_unspecified() {
        format!("[{host}]")
    } else {
        host
    };
    let base = format!("http://{host}:{}", addr.port());
    let state = app.state();
    let Some(model) = state.current_model() else {
        return format!(
            "rps-serve: no model yet at {} (checked every {:?}; /ready answers 503 until one \
             is promoted), store {}\n  \
             page: {base}/   health: {base}/health   ready: {base}/ready   stop: Ctrl-C",
            state.source().describe(),
            state.settings().model_poll_interval,
            state.store().location(),
        );
    };
    let coin = model
        .meta()
        .data
        .coins
        .first()
        .cloned()
        .unwrap_or_else(|| "BTC".into());
    format!(
        "rps-serve: serving {} version {} ({}), store {}\n  \
         page:     {base}/\n  \
         forecast: curl -s -X POST {base}/predict -H 'content-type: application/json' -d '{{\"coin\":\"{coin}\"}}'\n  \
         metrics:  {base}/metrics   api: {base}/openapi.json   stop: Ctrl-C",
        model.meta().name,
        model.version,
        model.source,
        state.store().location(),
    )
}
