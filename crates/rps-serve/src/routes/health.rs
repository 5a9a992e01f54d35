//! `GET /health` (the process answers) and `GET /ready` (a model is loaded and can forecast).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

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

/// Readiness: a model is loaded. A server started before any champion existed answers 503
/// until the reload poll loads the first one; after that a failed reload keeps the old model,
/// so this stays 200 for the rest of the process's life.
#[utoipa::path(get, path = "/ready", tag = "service",
    responses(
        (status = 200, description = "A model is loaded", body = ReadyOut),
        (status = 503, description = "No model yet (the registry alias points nowhere)", body = ReadyOut),
    ))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<ReadyOut>) {
    match state.current_model() {
        Some(m) => (
            StatusCode::OK,
            Json(ReadyOut {
                ready: true,
                model_version: Some(m.version.clone()),
                detail: None,
            }),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ReadyOut {
                ready: false,
                model_version: None,
                detail: Some(state.no_model().to_string()),
            }),
        ),
    }
}
