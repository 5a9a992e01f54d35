//! `GET /metrics`: the Prometheus (OpenMetrics text) exposition.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::state::AppState;

/// OpenMetrics text format (what prometheus-client encodes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Metrics for Prometheus; time-dependent gauges (bar age, PSI) are refreshed first.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "OpenMetrics text exposition", content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.refresh_gauges();
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics().encode(),
    )
}
