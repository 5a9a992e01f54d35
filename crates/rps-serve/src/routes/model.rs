//! `GET /model`: what is being served.

use axum::Json;
use axum::extract::State;
use rps_core::time::fmt_ms;

use crate::api::ModelOut;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The served model: identity, training time, feature spec, window sizes, metrics.
#[utoipa::path(get, path = "/model", tag = "model",
    responses(
        (status = 200, description = "The served model", body = ModelOut),
        (status = 503, description = "No model yet (`no_model`)", body = ErrorBody),
    ))]
pub async fn model(State(state): State<AppState>) -> Result<Json<ModelOut>, ApiError> {
    let m = state.model()?;
    let meta = m.meta();
    Ok(Json(ModelOut {
        name: meta.name.clone(),
        version: m.version.clone(),
        run_id: meta.run_id.clone(),
        kind: meta.kind.clone(),
        trained_at: meta.created_at.clone(),
        feature_spec_hash: meta.feature_spec_hash.clone(),
        feature_spec_version: meta.feature_spec_version,
        inputs: meta.inputs.clone(),
        lookback: m.forecaster.lookback(),
        min_bars: m.forecaster.min_bars(),
        coins: meta.data.coins.clone(),
        interval_levels: meta.calibration.levels.clone(),
        metrics: meta.metrics.clone(),
        source: m.source.clone(),
        loaded_at: fmt_ms(m.loaded_at_ms),
    }))
}
