//! `GET /health` (the process answers) and `GET /ready` (a model is loaded and can forecast).

use axum::Json;
use axum::extract::State;

use crate::api::{HealthOut, ReadyOut};
use crate::state::AppState;

/// Liveness: the process is up and answering.
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, description = "The process is alive", body = HealthOut)))]
pub async fn health(State(state): State<AppState>) -> Json<HealthOut> {
    Json(HealthOut {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_seconds: state.uptime().as_secs_f64(),
    })
}

/// Readiness: a model is loaded. The server only starts listening once the first model has
/// loaded, and a failed reload keeps the old one, so this stays 200 for the process's life.
#[utoipa::path(get, path = "/ready", tag = "service",
    responses((status = 200, description = "A model is loaded", body = ReadyOut)))]
pub async fn ready(State(state): State<AppState>) -> Json<ReadyOut> {
    Json(ReadyOut {
        ready: true,
        model_version: state.model().version.clone(),
    })
}
