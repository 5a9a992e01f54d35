//! `POST /predict` and `POST /predict/batch`: next-hour forecasts from a client's bars or
//! from the store's latest bars (cached per newest bar and model). The seed's legacy
//! `{"lag_1", "rolling_mean_5", "hour"}` body is refused with `legacy_request_shape` (see
//! [`crate::api`] for why).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::api::{ApiJson, BatchRequest, BatchResponse, ForecastOut, PredictRequest};
use crate::error::{ApiError, ErrorBody};
use crate::metrics::CoinLabels;
use crate::state::AppState;
use crate::validate;

/// A request that passed validation: the coin and, if sent, its bars.
type Checked = (String, Option<Vec<rps_core::Bar>>);

fn check(state: &AppState, req: &PredictRequest, at: &str) -> Result<Checked, ApiError> {
    let coin = super::known_coin(state, &req.coin, &format!("{at}coin"))?;
    let bars = match &req.bars {
        Some(bars) => {
            let min = state.model()?.forecaster.min_bars();
            let now = chrono::Utc::now().timestamp_millis();
            let bars = validate::window(&coin, bars, min, now).map_err(|mut e| {
                e.detail = format!("{at}{}", e.detail);
                e
            })?;
            Some(bars)
        }
        None => None,
    };
    Ok((coin, bars))
}

async fn run(state: &AppState, (coin, bars): Checked) -> Result<ForecastOut, ApiError> {
    let out = match bars {
        Some(bars) => state.forecast_bars(&coin, &bars)?,
        None => state.forecast_store(&coin).await?,
    };
    count(state, coin);
    Ok(out)
}

/// The forecast of one client window, by exactly the path `POST /predict` with `bars` takes
/// (coin check, [`validate::window`], [`AppState::forecast_bars`], the prediction counter):
/// the serving-protocol adapters ([`super::mlflow_scoring`], [`super::oip_v2`]) call this
/// after converting their wire format to bars. Client bars feed no monitoring state.
pub(crate) fn forecast_window(
    state: &AppState,
    coin: &str,
    bars: Vec<crate::api::BarIn>,
) -> Result<ForecastOut, ApiError> {
    let req = PredictRequest {
        coin: coin.to_string(),
        bars: Some(bars),
    };
    let (coin, bars) = check(state, &req, "")?;
    let out = state.forecast_bars(&coin, bars.as_deref().unwrap_or_default())?;
    count(state, coin);
    Ok(out)
}

fn count(state: &AppState, coin: String) {
    state
        .metrics()
        .predictions
        .get_or_create(&CoinLabels { coin })
        .inc();
}

/// Forecasts the next hour's close of one coin, with conformal intervals.
///
/// With `bars`, the forecast is for the hour after the newest bar sent. Without, it is for
/// the hour after the newest bar in the store; that forecast is computed once per (newest
/// bar, model version) and served from a cache (`cached: true`) until either changes.
#[utoipa::path(post, path = "/predict", tag = "forecast", request_body = PredictRequest,
    responses(
        (status = 200, description = "The forecast", body = ForecastOut),
        (status = 404, description = "A coin neither the model nor the store knows (`unknown_coin`)", body = ErrorBody),
        (status = 400, description = "Malformed JSON (`malformed_json`)", body = ErrorBody),
        (status = 413, description = "Body larger than the limit (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "Content type is not JSON", body = ErrorBody),
        (status = 422, description = "Wrong types or values (`invalid_request`: NaN/inf/non-positive prices, unsorted, gapped or too-short windows), `no_data`, `insufficient_history`, or the seed's request shape (`legacy_request_shape`)", body = ErrorBody),
        (status = 503, description = "The store could not be read (`store_unavailable`), or no model has loaded yet (`no_model`)", body = ErrorBody),
    ))]
pub async fn predict(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<PredictRequest>,
) -> Result<Response, ApiError> {
    let (coin, bars) = check(&state, &req, "")?;
    let resp = match bars {
        Some(bars) => Json(state.forecast_bars(&coin, &bars)?).into_response(),
        // The store forecast is served from its pre-serialised body.
        None => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            state.forecast_store_body(&coin).await?,
        )
            .into_response(),
    };
    count(&state, coin);
    Ok(resp)
}

/// Forecasts for several coins or windows in one call (at most 64). All or nothing: the
/// first invalid request fails the batch with its index in the detail (`requests[2].coin`).
#[utoipa::path(post, path = "/predict/batch", tag = "forecast", request_body = BatchRequest,
    responses(
        (status = 200, description = "One forecast per request, in order", body = BatchResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "A request's coin is unknown (`unknown_coin`, the detail names its index)", body = ErrorBody),
        (status = 413, description = "Body larger than the limit", body = ErrorBody),
        (status = 415, description = "Content type is not JSON", body = ErrorBody),
        (status = 422, description = "An invalid request (detail names its index) or too many", body = ErrorBody),
        (status = 503, description = "The store could not be read", body = ErrorBody),
    ))]
pub async fn predict_batch(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<BatchRequest>,
) -> Result<Json<BatchResponse>, ApiError> {
    let max = state.settings().max_batch;
    if req.requests.is_empty() || req.requests.len() > max {
        return Err(ApiError::invalid(format!(
            "requests: send 1 to {max} requests, got {}",
            req.requests.len()
        )));
    }
    // Validate everything first so a bad item leaves no trace of the good ones.
    let checked = req
        .requests
        .iter()
        .enumerate()
        .map(|(i, r)| check(&state, r, &format!("requests[{i}].")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut forecasts = Vec::with_capacity(checked.len());
    for c in checked {
        forecasts.push(run(&state, c).await?);
    }
    Ok(Json(BatchResponse { forecasts }))
}
