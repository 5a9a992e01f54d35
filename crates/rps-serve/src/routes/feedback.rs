//! `POST /feedback`: the realised close of a forecast hour. Its absolute error feeds
//! `rps_forecast_abs_error_usd` and the Page-Hinkley concept-drift detector. Closes also
//! arrive without this route: from the store when new bars land, and from later `/predict`
//! windows that contain the hour.

use axum::Json;
use axum::extract::State;
use rps_core::time::fmt_ms;

use crate::api::{ApiJson, FeedbackRequest, FeedbackResponse};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::validate;

/// Records the actual close of an hour that was forecast. Idempotent: sending the same hour
/// again answers `recorded: false` and counts nothing twice.
#[utoipa::path(post, path = "/feedback", tag = "monitoring", request_body = FeedbackRequest,
    responses(
        (status = 200, description = "Recorded (or already recorded)", body = FeedbackResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "No forecast was made for that coin and hour (`no_forecast`)", body = ErrorBody),
        (status = 422, description = "Invalid field or unknown coin", body = ErrorBody),
    ))]
pub async fn feedback(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<FeedbackRequest>,
) -> Result<Json<FeedbackResponse>, ApiError> {
    let coin = state.known_coin(&req.coin, "coin")?;
    let ts = validate::on_the_hour(req.ts.0, "ts")?;
    let close = validate::price(req.close, "close")?;
    let (recorded, r, concept_drift) = state.feedback(&coin, ts, close)?;
    Ok(Json(FeedbackResponse {
        recorded,
        coin,
        ts: fmt_ms(ts),
        forecast_close: r.forecast_close,
        actual_close: r.actual_close,
        abs_error_usd: r.abs_error,
        concept_drift,
    }))
}
