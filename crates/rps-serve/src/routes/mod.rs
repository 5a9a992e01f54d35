//! HTTP handlers, one file per resource. Each handler validates its input into typed values
//! and returns `Result<Json<_>, ApiError>`; [`crate::startup`] wires them into the router.

pub mod drift;
pub mod feedback;
pub mod health;
pub mod metrics;
pub mod mlflow_scoring;
pub mod model;
pub mod oip_v2;
pub mod openapi;
pub mod page;
pub mod predict;

use serde_json::Value;

use crate::api::Ts;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate;

/// Validates a coin code and checks the model or the store knows it; `field` names it in
/// the error.
fn known_coin(state: &AppState, raw: &str, field: &str) -> Result<String, ApiError> {
    let coin = validate::coin_code(raw, field)?;
    state.known_coin(&coin, field)?;
    Ok(coin)
}

/// The coin a protocol request means when it names none: the model's first training coin
/// (what the start-up banner's example uses), if the model records one.
fn default_coin(state: &AppState) -> Result<String, ApiError> {
    let model = state.model()?;
    model.meta().data.coins.first().cloned().ok_or_else(|| {
        ApiError::invalid("coin: the model records no coin: send a coin column/tensor")
    })
}

/// Unix seconds below this are read as seconds, at or above it as milliseconds (1e11 s is
/// the year 5138; 1e11 ms is 1973).
const SECONDS_BELOW: i64 = 100_000_000_000;

/// A bar time from a protocol's cell: RFC 3339 text (without an offset, as pandas writes a
/// naive datetime, it is UTC), or whole unix seconds or milliseconds (told apart by size:
/// [`SECONDS_BELOW`]), checked like `/predict`'s `ts`.
fn ts_of(v: &Value) -> Result<Ts, String> {
    let ms = match v {
        Value::String(s) => match serde_json::from_value(Value::String(s.clone())) {
            Ok(ts) => return Ok(ts),
            // pandas writes a naive datetime column without an offset: read it as UTC.
            Err(e) => chrono::NaiveDateTime::parse_from_str(
                &s.replacen(' ', "T", 1),
                "%Y-%m-%dT%H:%M:%S%.f",
            )
            .map_err(|_| e.to_string())?
            .and_utc()
            .timestamp_millis(),
        },
        Value::Number(n) => {
            let whole = n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            });
            match whole {
                Some(t) if (0..SECONDS_BELOW).contains(&t) => t.saturating_mul(1000),
                Some(t) => t,
                None => return Err(format!("{n} is not whole unix seconds or milliseconds")),
            }
        }
        other => {
            return Err(format!(
                "expected RFC 3339 text or unix seconds/milliseconds, got {}",
                rps_core::redact::clip(&other.to_string(), 40)
            ));
        }
    };
    serde_json::from_value(Value::from(ms)).map_err(|e| e.to_string())
}

/// The percent label of an interval level (`0.9` → `90`, `0.975` → `97.5`).
fn level_label(level: f64) -> String {
    let pct = level * 100.0;
    if (pct - pct.round()).abs() < 1e-9 {
        format!("{}", pct.round() as i64)
    } else {
        format!("{pct}")
    }
}

/// The status a serving protocol answers for one of the server's own refusals: 413, 415 and
/// 5xx are kept; every other refusal of the input is the protocol's 400 (MLflow scoring and
/// the Open Inference Protocol both say "bad request" for anything wrong with the input).
pub(crate) fn protocol_status(status: axum::http::StatusCode) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    match status {
        s @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => s,
        s if s.is_server_error() => s,
        _ => StatusCode::BAD_REQUEST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_times_are_text_seconds_or_milliseconds() {
        let ms = 1_646_092_800_000;
        assert_eq!(ts_of(&Value::from("2022-03-01T00:00:00Z")).unwrap().0, ms);
        assert_eq!(ts_of(&Value::from("2022-03-01T00:00:00")).unwrap().0, ms);
        assert_eq!(ts_of(&Value::from("2022-03-01 00:00:00")).unwrap().0, ms);
        assert_eq!(ts_of(&Value::from(1_646_092_800)).unwrap().0, ms);
        assert_eq!(ts_of(&Value::from(ms)).unwrap().0, ms);
        assert_eq!(ts_of(&Value::from(1_646_092_800.0)).unwrap().0, ms);
        assert!(ts_of(&Value::from(1.5)).is_err());
        assert!(ts_of(&Value::from(-5)).is_err());
        assert!(ts_of(&Value::Null).is_err());
        assert!(ts_of(&Value::from("soon")).is_err());
    }

    #[test]
    fn levels_are_labelled_in_percent() {
        assert_eq!(level_label(0.8), "80");
        assert_eq!(level_label(0.9), "90");
        assert_eq!(level_label(0.975), "97.5");
    }
}
