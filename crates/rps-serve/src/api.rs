//! The JSON shapes of the HTTP API (requests and responses, with their OpenAPI schemas) and
//! [`ApiJson`], the body extractor that turns every malformed body into a documented 4xx.
//!
//! # The seed's legacy request shape
//! The seed served `{"lag_1": …, "rolling_mean_5": …, "hour": …}`. That shape is **refused**
//! with `422 {"error": "legacy_request_shape"}` whose detail shows the new shape: the model
//! now reads a window of stationary features (log returns, volatilities, calendar terms)
//! computed from hourly bars, and three price-level numbers cannot be turned into that window.
//! Answering anyway would silently return a different model's forecast.

use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use bytes::Bytes;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode};

/// Keys of the seed's request shape.
pub const LEGACY_KEYS: [&str; 3] = ["lag_1", "rolling_mean_5", "hour"];

/// An hour given as RFC 3339 text (`"2022-03-01T00:00:00Z"`) or integer milliseconds since
/// the epoch (`1646092800000`), stored as milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ts(pub i64);

impl<'de> Deserialize<'de> for Ts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Ts;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an RFC 3339 time string or integer milliseconds since the epoch")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ts, E> {
                // Unix seconds of any date after 1973 are below 1e11 ms; a value that small is
                // almost surely seconds (the CSV export's unit), which would land in 1970.
                if v < 100_000_000_000 {
                    return Err(E::custom(format!(
                        "{v} is not milliseconds since the epoch (seconds? multiply by 1000)"
                    )));
                }
                if v > 32_503_680_000_000 {
                    return Err(E::custom(format!("{v} ms is after the year 3000")));
                }
                Ok(Ts(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ts, E> {
                match i64::try_from(v) {
                    Ok(v) => self.visit_i64(v),
                    Err(_) => Err(E::custom(format!("{v} ms is out of range"))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Ts, E> {
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    self.visit_i64(v as i64)
                } else {
                    Err(E::custom(format!("{v} is not whole milliseconds")))
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Ts, E> {
                rps_core::time::parse_utc(s)
                    .map(|t| Ts(t.timestamp_millis()))
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// One hourly bar sent by a client.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BarIn {
    /// Bar open time (UTC, on the hour): RFC 3339 text or integer milliseconds.
    #[schema(value_type = String, format = DateTime, example = "2022-03-01T00:00:00Z")]
    pub ts: Ts,
    /// Open price, USD (> 0).
    #[schema(exclusive_minimum = 0.0, maximum = 1e12)]
    pub open: f64,
    /// High price, USD (≥ open, close).
    #[schema(exclusive_minimum = 0.0, maximum = 1e12)]
    pub high: f64,
    /// Low price, USD (≤ open, close; > 0).
    #[schema(exclusive_minimum = 0.0, maximum = 1e12)]
    pub low: f64,
    /// Close price, USD (> 0).
    #[schema(exclusive_minimum = 0.0, maximum = 1e12)]
    pub close: f64,
    /// Traded volume, USD (≥ 0), optional.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1e18)]
    pub volume: Option<f64>,
}

/// `POST /predict` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"coin": "BTC"}))]
pub struct PredictRequest {
    /// Coin code (`BTC`; case-insensitive): one the model was trained on or the store holds.
    #[schema(pattern = "^[A-Za-z0-9_]{1,16}$", min_length = 1, max_length = 16)]
    pub coin: String,
    /// The coin's most recent hourly bars, ascending and consecutive, at least `min_bars`
    /// of them (see `GET /model`). Omit to forecast from the latest bars in the store.
    #[serde(default)]
    pub bars: Option<Vec<BarIn>>,
}

/// `POST /predict/batch` body: several forecasts in one call, all or nothing.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// One request per coin/window (at most 64).
    #[schema(min_items = 1, max_items = 64)]
    pub requests: Vec<PredictRequest>,
}

/// `POST /feedback` body: the realised close of an hour that was forecast.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// Coin code.
    #[schema(pattern = "^[A-Za-z0-9_]{1,16}$", min_length = 1, max_length = 16)]
    pub coin: String,
    /// The hour whose close this is (the forecast's `for_hour`).
    #[schema(value_type = String, format = DateTime, example = "2022-03-01T01:00:00Z")]
    pub ts: Ts,
    /// The actual close, USD (> 0).
    #[schema(exclusive_minimum = 0.0, maximum = 1e12)]
    pub close: f64,
}

/// A prediction interval from split-conformal calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IntervalOut {
    /// Nominal coverage, e.g. 0.9.
    pub level: f64,
    /// Lower bound, USD.
    pub lower: f64,
    /// Upper bound, USD.
    pub upper: f64,
}

/// Which model produced a forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelRef {
    /// Registered model name.
    pub name: String,
    /// Registry version.
    pub version: String,
    /// Training run id.
    pub run_id: String,
}

/// A forecast of the next hour's close.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ForecastOut {
    /// Coin code.
    pub coin: String,
    /// Open time of the newest bar used (RFC 3339).
    pub based_on: String,
    /// The hour whose close is forecast (RFC 3339): `based_on` + 1 h.
    pub for_hour: String,
    /// `for_hour` in milliseconds.
    pub for_hour_ms: i64,
    /// Close of the newest bar used, USD.
    pub last_close: f64,
    /// Forecast close, USD.
    pub forecast_close: f64,
    /// Forecast log return `ln(forecast_close / last_close)`.
    pub forecast_logret: f64,
    /// Prediction intervals, one per calibrated level.
    pub intervals: Vec<IntervalOut>,
    /// The model that made it.
    pub model: ModelRef,
    /// `request` (bars sent by the client) or `store` (latest stored bars).
    pub source: String,
    /// True when served from the per-(newest bar, model) cache.
    pub cached: bool,
}

/// `POST /predict/batch` response, in request order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    /// One forecast per request.
    pub forecasts: Vec<ForecastOut>,
}

/// `POST /feedback` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeedbackResponse {
    /// False when this hour's close had already been recorded (nothing counted twice).
    pub recorded: bool,
    /// Coin code.
    pub coin: String,
    /// The hour (RFC 3339).
    pub ts: String,
    /// The forecast that was made for this hour, USD.
    pub forecast_close: f64,
    /// The realised close, USD.
    pub actual_close: f64,
    /// `|actual − forecast|`, USD.
    pub abs_error_usd: f64,
    /// Whether the Page-Hinkley detector now flags concept drift.
    pub concept_drift: bool,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthOut {
    /// Always `ok` while the process serves.
    pub status: String,
    /// Server version.
    pub version: String,
    /// Seconds since start.
    pub uptime_seconds: f64,
}

/// `GET /ready`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadyOut {
    /// Whether a model is loaded and forecasts can be served.
    pub ready: bool,
    /// The loaded model's version (`null` before the first model loads).
    pub model_version: Option<String>,
    /// Why the server is not ready (`null` when it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `GET /model`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelOut {
    /// Registered model name.
    pub name: String,
    /// Registry version.
    pub version: String,
    /// Training run id.
    pub run_id: String,
    /// Model kind (`lstm`).
    pub kind: String,
    /// When it was trained (RFC 3339).
    pub trained_at: String,
    /// Hash of the feature spec it was trained with (equals this server's).
    pub feature_spec_hash: String,
    /// Feature spec version.
    pub feature_spec_version: u32,
    /// Model input features, in order.
    pub inputs: Vec<String>,
    /// Feature rows per forecast.
    pub lookback: usize,
    /// Minimum bars a `/predict` window needs (feature warm-up + lookback).
    pub min_bars: usize,
    /// Coins it was trained on.
    pub coins: Vec<String>,
    /// Calibrated interval levels.
    pub interval_levels: Vec<f64>,
    /// Evaluation metrics recorded at training.
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Where it was loaded from (`dir:<path>` or `models:/<name>@<alias>`).
    pub source: String,
    /// When this server loaded it (RFC 3339).
    pub loaded_at: String,
}

/// `GET /drift`: the drift detectors' state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DriftOut {
    /// Data drift: PSI of recent inputs vs the model's reference.
    pub data: rps_monitor::drift::PsiSummary,
    /// Whether enough recent rows exist for the PSI to be meaningful.
    pub data_ready: bool,
    /// Rows needed before PSI is reported.
    pub min_rows: usize,
    /// Concept drift (Page-Hinkley on scaled forecast errors).
    pub concept: ConceptOut,
}

/// Page-Hinkley state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConceptOut {
    /// Whether the detector has fired since the model loaded.
    pub drift: bool,
    /// The statistic.
    pub statistic: f64,
    /// The alarm threshold λ.
    pub lambda: f64,
    /// Realised errors seen since the model loaded.
    pub samples: u64,
}

/// Lets a body type explain a known-wrong shape better than serde's message would.
pub trait BodyShape {
    /// Checks a body that failed typed deserialisation.
    fn check(_value: &Value) -> Result<(), ApiError> {
        Ok(())
    }
}

/// The 422 for the seed's request shape, naming the new one.
pub fn legacy_refusal(at: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::LegacyRequestShape,
        format!(
            "{at}the seed's {{\"lag_1\", \"rolling_mean_5\", \"hour\"}} request is no longer \
             served: the model forecasts from a window of hourly bars. Send {{\"coin\": \"BTC\"}} \
             to use the stored bars, or {{\"coin\": \"BTC\", \"bars\": [{{\"ts\": \
             \"2022-03-01T00:00:00Z\", \"open\": 1, \"high\": 1, \"low\": 1, \"close\": 1, \
             \"volume\": 1}}, ...]}} with at least min_bars (GET /model) consecutive hours"
        ),
    )
}

fn is_legacy(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| !o.contains_key("coin") && LEGACY_KEYS.iter().any(|k| o.contains_key(*k)))
}

impl BodyShape for PredictRequest {
    fn check(v: &Value) -> Result<(), ApiError> {
        if is_legacy(v) {
            Err(legacy_refusal(""))
        } else {
            Ok(())
        }
    }
}

impl BodyShape for BatchRequest {
    fn check(v: &Value) -> Result<(), ApiError> {
        if let Some(items) = v.get("requests").and_then(Value::as_array) {
            for (i, item) in items.iter().enumerate() {
                if is_legacy(item) {
                    return Err(legacy_refusal(&format!("requests[{i}]: ")));
                }
            }
        }
        Ok(())
    }
}

impl BodyShape for FeedbackRequest {}

/// A JSON body extractor whose every rejection is an [`ApiError`]: wrong content type → 415,
/// too large → 413, not JSON → 400, wrong shape or types → 422 naming the field path.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

fn json_content_type(req: &Request) -> Result<(), ApiError> {
    // A body without a content type is refused too: a cross-site HTML form can post
    // text/plain or nothing but never application/json without a CORS preflight.
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "no content type: send Content-Type: application/json",
        ));
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            format!(
                "content type '{}' is not JSON: send Content-Type: application/json",
                rps_core::redact::clip(essence, 80)
            ),
        ))
    }
}

/// Parses and type-checks a JSON body (the non-HTTP half of [`ApiJson`]).
///
/// One typed pass over the bytes (no intermediate `Value`, no path tracking: a 200-bar window
/// parses in tens of microseconds). Only a body that fails is parsed again: to tell malformed
/// JSON (400) from a wrong shape (422), to recognise the seed's legacy shape, and to name the
/// offending field's path.
pub fn parse_body<T: DeserializeOwned + BodyShape>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed =
        |e: serde_json::Error| ApiError::malformed_json(format!("the body is not valid JSON: {e}"));
    match serde_json::from_slice::<T>(bytes) {
        Ok(v) => return Ok(v),
        Err(e) if e.is_syntax() || e.is_eof() || e.is_io() => return Err(malformed(e)),
        Err(_) => {}
    }
    // A data error: is the document JSON at all, and is it a shape we know?
    let value: Value = serde_json::from_slice(bytes).map_err(malformed)?;
    T::check(&value)?;
    let err = match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(_) => {
            return Err(ApiError::invalid(
                "the body does not match the request schema",
            ));
        }
        Err(e) => e,
    };
    let path = err.path().to_string();
    let inner = err.into_inner();
    if path == "." || path.is_empty() {
        Err(ApiError::invalid(inner.to_string()))
    } else {
        Err(ApiError::invalid(format!("{path}: {inner}")))
    }
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + BodyShape,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_content_type(&req)?;
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge,
                    rej.body_text(),
                )
            } else {
                ApiError::new(rej.status(), ErrorCode::BadBody, rej.body_text())
            }
        })?;
        parse_body(&bytes).map(ApiJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_from_rfc3339_or_milliseconds_and_seconds_are_refused() {
        let t: Ts = serde_json::from_str("\"2022-03-01T00:00:00Z\"").unwrap();
        assert_eq!(t.0, 1_646_092_800_000);
        let t: Ts = serde_json::from_str("1646092800000").unwrap();
        assert_eq!(t.0, 1_646_092_800_000);
        let e = serde_json::from_str::<Ts>("1646092800")
            .unwrap_err()
            .to_string();
        assert!(e.contains("seconds"), "{e}");
        assert!(serde_json::from_str::<Ts>("\"yesterday\"").is_err());
        assert!(serde_json::from_str::<Ts>("true").is_err());
    }

    #[test]
    fn wrong_types_name_the_field_path() {
        let e = parse_body::<PredictRequest>(
            br#"{"coin":"BTC","bars":[{"ts":1646092800000,"open":"x","high":1,"low":1,"close":1}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.detail.starts_with("bars[0].open:"), "{}", e.detail);
    }

    #[test]
    fn malformed_json_is_a_400_and_unknown_fields_a_422() {
        let e = parse_body::<PredictRequest>(b"{\"coin\": ").unwrap_err();
        assert_eq!(
            (e.status, e.error),
            (StatusCode::BAD_REQUEST, ErrorCode::MalformedJson)
        );
        let e = parse_body::<PredictRequest>(br#"{"coin":"BTC","horizon":2}"#).unwrap_err();
        assert_eq!(e.error, "invalid_request");
        assert!(e.detail.contains("horizon"), "{}", e.detail);
    }

    #[test]
    fn the_seed_shape_is_refused_with_a_pointer_to_the_new_one() {
        let e =
            parse_body::<PredictRequest>(br#"{"lag_1":43000.5,"rolling_mean_5":42950,"hour":13}"#)
                .unwrap_err();
        assert_eq!(e.error, "legacy_request_shape");
        assert!(e.detail.contains("\"coin\": \"BTC\""), "{}", e.detail);
        let e = parse_body::<BatchRequest>(
            br#"{"requests":[{"coin":"BTC"},{"lag_1":1,"rolling_mean_5":1,"hour":1}]}"#,
        )
        .unwrap_err();
        assert!(e.detail.starts_with("requests[1]: "), "{}", e.detail);
    }
}
