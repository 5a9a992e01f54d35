//! `POST /feedback`: the realised close of a forecast hour. Its absolute error feeds
//! `rps_forecast_abs_error_usd` and the Page-Hinkley concept-drift detector, so the route
//! needs the bearer token the server was started with (`--feedback-token`); without one
//! configured it is off (403). Closes also arrive without this route: from the store when
//! new bars land. Bars a client sends to `/predict` never settle a forecast.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use rps_core::time::fmt_ms;

use crate::api::{ApiJson, FeedbackRequest, FeedbackResponse};
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::state::AppState;
use crate::validate;

/// Records the actual close of an hour that was forecast. Idempotent: sending the same hour
/// again answers `recorded: false` and counts nothing twice.
#[utoipa::path(post, path = "/feedback", tag = "monitoring", request_body = FeedbackRequest,
    responses(
        (status = 200, description = "Recorded (or already recorded)", body = FeedbackResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or a wrong `Authorization: Bearer` token (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "Feedback is off: the server has no token configured (`feedback_disabled`)", body = ErrorBody),
        (status = 404, description = "No forecast was made for that coin and hour (`no_forecast`), or the coin is unknown (`unknown_coin`)", body = ErrorBody),
        (status = 415, description = "Content type is not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn feedback(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<FeedbackRequest>,
) -> Result<Json<FeedbackResponse>, ApiError> {
    authorize(&state, &headers)?;
    let coin = super::known_coin(&state, &req.coin, "coin")?;
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

/// Checks the `Authorization: Bearer <token>` header against the configured token.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.settings().feedback_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::FeedbackDisabled,
            "feedback is off: start the server with --feedback-token (RPS_FEEDBACK_TOKEN) and \
             send it as Authorization: Bearer <token>",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match given {
        Some(g) if token.matches(g) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "send the server's feedback token as Authorization: Bearer <token>",
        )),
    }
}
