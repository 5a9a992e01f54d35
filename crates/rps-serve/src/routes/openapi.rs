//! `GET /openapi.json`: the OpenAPI 3.1 description of every route, generated with utoipa
//! from the handlers' annotations and the request/response types.

use axum::Json;
use utoipa::OpenApi;

use crate::api;
use crate::error::{ErrorBody, ErrorCode};
use rps_monitor::drift::PsiSummary;

/// The API document.
#[derive(OpenApi, Debug)]
#[openapi(
    info(
        title = "rps-serve",
        description = "Next-hour close forecasts for crypto coins, with conformal prediction \
intervals, drift monitoring and Prometheus metrics.\n\nEvery error is JSON `{\"error\": <code>, \
\"detail\": <text>}` with a 4xx status for bad input. The seed's legacy body \
`{\"lag_1\", \"rolling_mean_5\", \"hour\"}` is refused with 422 `legacy_request_shape`: the \
model forecasts from a window of hourly bars (send `{\"coin\": \"BTC\"}` to use the stored bars)."
    ),
    paths(
        super::page::index,
        super::health::health,
        super::health::ready,
        super::model::model,
        super::predict::predict,
        super::predict::predict_batch,
        super::feedback::feedback,
        super::drift::drift,
        super::metrics::metrics,
        openapi_json,
    ),
    components(schemas(
        api::PredictRequest, api::BarIn, api::BatchRequest, api::FeedbackRequest,
        api::ForecastOut, api::IntervalOut, api::ModelRef, api::BatchResponse,
        api::FeedbackResponse, api::HealthOut, api::ReadyOut, api::ModelOut, api::DriftOut,
        api::ConceptOut, PsiSummary, ErrorBody, ErrorCode,
    )),
    modifiers(&BearerToken),
    tags(
        (name = "forecast", description = "Next-hour forecasts"),
        (name = "monitoring", description = "Realised closes and drift"),
        (name = "model", description = "The served model"),
        (name = "service", description = "Health, readiness, metrics, page"),
    )
)]
pub struct ApiDoc;

/// The `bearer` security scheme `/feedback` requires.
#[derive(Debug)]
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
