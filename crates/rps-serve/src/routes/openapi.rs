//! `GET /openapi.json`: the OpenAPI 3.1 description of every route, generated with utoipa
//! from the handlers' annotations and the request/response types.

use axum::Json;
use utoipa::OpenApi;

use super::mlflow_scoring as mlflow;
use super::oip_v2 as oip;
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
\"detail\": <text>}` with a 4xx status for bad input (the MLflow and Open Inference \
Protocol routes answer in their protocols' error shapes instead). The seed's legacy body \
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
        super::mlflow_scoring::ping,
        super::mlflow_scoring::version,
        super::mlflow_scoring::invocations,
        super::oip_v2::server_metadata,
        super::oip_v2::live,
        super::oip_v2::ready,
        super::oip_v2::model_metadata,
        super::oip_v2::version_metadata,
        super::oip_v2::model_ready,
        super::oip_v2::version_ready,
        super::oip_v2::infer,
        super::oip_v2::version_infer,
    ),
    components(schemas(
        api::PredictRequest, api::BarIn, api::BatchRequest, api::FeedbackRequest,
        api::ForecastOut, api::IntervalOut, api::ModelRef, api::BatchResponse,
        api::FeedbackResponse, api::HealthOut, api::ReadyOut, api::ModelOut, api::DriftOut,
        api::ConceptOut, PsiSummary, ErrorBody, ErrorCode,
        mlflow::MlflowRequest, mlflow::SplitFrame, mlflow::MlflowResponse,
        mlflow::MlflowPrediction, mlflow::MlflowError,
        oip::ServerMetadata, oip::LiveOut, oip::ReadyV2, oip::ModelReady, oip::TensorMetadata,
        oip::ModelMetadata, oip::InferInput, oip::RequestedOutput, oip::InferRequest,
        oip::InferOutput, oip::InferResponse, oip::OipError,
    )),
    modifiers(&BearerToken),
    tags(
        (name = "forecast", description = "Next-hour forecasts"),
        (name = "monitoring", description = "Realised closes and drift"),
        (name = "model", description = "The served model"),
        (name = "service", description = "Health, readiness, metrics, page"),
        (name = "mlflow", description = "The MLflow scoring protocol (`mlflow models serve`): \
one window of bars as rows in, one prediction for the next hour out; errors are MLflow's \
`{\"error_code\", \"message\"}`"),
        (name = "oip-v2", description = "The Open Inference Protocol v2 (KServe/Triton REST): \
one window of bars as tensors in, the next hour's forecast and intervals out; errors are \
`{\"error\": <text>}`"),
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
