//! The MLflow scoring protocol (what `mlflow models serve` speaks): `GET /ping`,
//! `GET /version` and `POST /invocations`, so MLflow's own client
//! (`mlflow.pyfunc.scoring_server.client.ScoringServerClient`) and anything that speaks to
//! `mlflow models serve` can call this server. An adapter only: the rows are converted to
//! `/predict`'s bars and forecast by `predict::forecast_window`, the path of `POST /predict`
//! with bars (the one forecasting path).
//!
//! # The request
//! `Content-Type: application/json` with exactly one of `dataframe_split`
//! (`{"columns": [...], "data": [[...], ...]}`, an `index` is ignored), `dataframe_records`
//! (`[{...}, ...]`), `inputs` or `instances` (column → list, or a list of records); or
//! `text/csv` (a header line, then one line per row; a column with an empty name, pandas'
//! index, is ignored). Columns: `ts` (RFC 3339 text, unix seconds or milliseconds), `open`,
//! `high`, `low`, `close`, `volume` (optional; empty or null for none) and `coin` (optional;
//! one coin for every row that gives one; default the model's first training coin).
//!
//! **All rows are one window** of consecutive hourly bars, oldest first, held to `/predict`'s
//! rules (at least `min_bars` of `GET /model`). The answer is **one prediction**, for the hour
//! after the newest row: `{"predictions": [{"ts": <that hour, RFC 3339>, "coin": "BTC",
//! "forecast": <close>, "lower_80": ..., "upper_80": ..., "lower_90": ..., ...}]}`, one
//! `lower_<p>`/`upper_<p>` pair per calibrated level in percent.
//!
//! # Errors
//! MLflow's shape, `{"error_code": "BAD_REQUEST", "message": "..."}`: 400 for any bad input
//! (including an unknown coin), 413 for a body over the limit, 415 for another content type,
//! 503 (`TEMPORARILY_UNAVAILABLE`) while no model is loaded.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::api::{BarIn, ForecastOut};
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate;

/// `POST /invocations` JSON body: exactly one of the four input formats.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"dataframe_split": {"columns": ["ts", "open", "high", "low", "close"],
    "data": [["2022-03-01T00:00:00Z", 43000.0, 43100.0, 42900.0, 43050.0]]}}))]
pub struct MlflowRequest {
    /// pandas' `to_dict(orient="split")`: column names and rows.
    #[serde(default)]
    pub dataframe_split: Option<SplitFrame>,
    /// pandas' `to_dict(orient="records")`: one object per row.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub dataframe_records: Option<Vec<Map<String, Value>>>,
    /// Column name → list of values, or a list of records.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub inputs: Option<Value>,
    /// The same as `inputs` (MLflow's TF-serving form).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub instances: Option<Value>,
    /// Inference parameters: this model takes none (any given is refused).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Map<String, Value>>,
}

/// The `dataframe_split` form.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitFrame {
    /// Column names (`ts`, `open`, `high`, `low`, `close`, `volume`, `coin`).
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    #[schema(value_type = Vec<Vec<Object>>)]
    pub data: Vec<Vec<Value>>,
    /// Row labels (ignored).
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub index: Option<Vec<Value>>,
}

/// One prediction: the forecast of the hour after the window's newest row, with a
/// `lower_<p>`/`upper_<p>` pair per calibrated interval level `p` (percent, e.g. `lower_90`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"ts": "2022-03-01T05:00:00Z", "coin": "BTC", "forecast": 43050.2,
    "lower_80": 42800.0, "upper_80": 43300.0, "lower_90": 42700.0, "upper_90": 43400.0}))]
pub struct MlflowPrediction {
    /// The hour whose close is forecast (RFC 3339).
    pub ts: String,
    /// Coin code.
    pub coin: String,
    /// Forecast close, USD.
    pub forecast: f64,
    /// The interval bounds, USD.
    #[serde(flatten)]
    #[schema(additional_properties = true)]
    pub intervals: std::collections::BTreeMap<String, f64>,
}

/// `POST /invocations` response: MLflow's `{"predictions": [...]}`, one for the window.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MlflowResponse {
    /// Exactly one prediction.
    pub predictions: Vec<MlflowPrediction>,
}

/// MLflow's error body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MlflowError {
    /// `BAD_REQUEST`, `TEMPORARILY_UNAVAILABLE` or `INTERNAL_ERROR`.
    pub error_code: String,
    /// What was wrong (for a bar, `bars[i]` is row `i`).
    pub message: String,
}

/// An error of the MLflow routes: a status and MLflow's body.
#[derive(Debug)]
pub struct ScoringError {
    status: StatusCode,
    body: MlflowError,
}

impl ScoringError {
    fn bad(message: impl Into<String>) -> Self {
        Self::with(StatusCode::BAD_REQUEST, message)
    }

    fn with(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::SERVICE_UNAVAILABLE => "TEMPORARILY_UNAVAILABLE",
            s if s.is_server_error() => "INTERNAL_ERROR",
            _ => "BAD_REQUEST",
        };
        let mut message = message.into();
        rps_core::redact::clip_in_place(&mut message, crate::error::MAX_DETAIL);
        ScoringError {
            status,
            body: MlflowError {
                error_code: code.into(),
                message,
            },
        }
    }
}

impl From<ApiError> for ScoringError {
    /// Keeps 413, 415 and 5xx; every other refusal of the input is MLflow's 400.
    fn from(e: ApiError) -> Self {
        Self::with(
            super::protocol_status(e.status),
            format!("{}: {}", e.error, e.detail),
        )
    }
}

impl IntoResponse for ScoringError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// A plain-text 200.
fn text(body: &'static str) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// MLflow's health check: 200 with a `"\n"` body while a model is loaded (what
/// `ScoringServerClient.ping` and `wait_server_ready` poll), 503 before the first one.
#[utoipa::path(get, path = "/ping", tag = "mlflow",
    responses(
        (status = 200, description = "A model is loaded (body: a newline)", body = String, content_type = "text/plain"),
        (status = 503, description = "No model yet", body = MlflowError),
    ))]
pub async fn ping(State(state): State<AppState>) -> Result<Response, ScoringError> {
    state.model().map_err(ApiError::from)?;
    Ok(text("\n"))
}

/// The server's version (MLflow answers its own version here; this is rps-serve's).
#[utoipa::path(get, path = "/version", tag = "mlflow",
    responses((status = 200, description = "rps-serve's version", body = String, content_type = "text/plain")))]
pub async fn version() -> Response {
    text(env!("CARGO_PKG_VERSION"))
}

/// Scores one window of hourly bars (every row, oldest first) and answers one prediction for
/// the next hour: see the module docs for the formats, columns and errors.
#[utoipa::path(post, path = "/invocations", tag = "mlflow",
    request_body(content((MlflowRequest = "application/json"), (String = "text/csv")),
        description = "One window of consecutive hourly bars (at least `min_bars` of GET /model) \
in one of MLflow's JSON forms, or CSV with a header line"),
    responses(
        (status = 200, description = "One prediction for the hour after the newest row", body = MlflowResponse),
        (status = 400, description = "Bad input: unparsable body, unknown or missing columns, mixed coins, or a window `/predict` would refuse", body = MlflowError),
        (status = 413, description = "Body larger than the limit", body = MlflowError),
        (status = 415, description = "Content type is neither JSON nor CSV", body = MlflowError),
        (status = 503, description = "No model yet", body = MlflowError),
    ))]
pub async fn invocations(
    State(state): State<AppState>,
    body: ScoringBody,
) -> Result<Json<MlflowResponse>, ScoringError> {
    let frame = match body {
        ScoringBody::Json(bytes) => json_frame(&bytes)?,
        ScoringBody::Csv(bytes) => csv_frame(&bytes)?,
    };
    let (coin, bars) = to_bars(&state, &frame)?;
    let out = super::predict::forecast_window(&state, &coin, bars)?;
    Ok(Json(MlflowResponse {
        predictions: vec![prediction(&out)],
    }))
}

fn prediction(out: &ForecastOut) -> MlflowPrediction {
    let mut intervals = std::collections::BTreeMap::new();
    for i in &out.intervals {
        let p = super::level_label(i.level);
        intervals.insert(format!("lower_{p}"), i.lower);
        intervals.insert(format!("upper_{p}"), i.upper);
    }
    MlflowPrediction {
        ts: out.for_hour.clone(),
        coin: out.coin.clone(),
        forecast: out.forecast_close,
        intervals,
    }
}

/// A `/invocations` body: JSON or CSV by its content type (MLflow's rule: only a `charset`
/// parameter, only UTF-8).
#[derive(Debug)]
pub enum ScoringBody {
    /// `application/json`.
    Json(Bytes),
    /// `text/csv`.
    Csv(Bytes),
}

impl<S: Send + Sync> FromRequest<S> for ScoringBody {
    type Rejection = ScoringError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let unsupported = |what: &str| {
            ScoringError::with(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("{what}: send Content-Type: application/json or text/csv (UTF-8)"),
            )
        };
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("?").to_ascii_lowercase());
        let Some(ct) = ct else {
            return Err(unsupported("no content type"));
        };
        let mut parts = ct.split(';').map(str::trim);
        let essence = parts.next().unwrap_or("").to_string();
        for p in parts.filter(|p| !p.is_empty()) {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            if k.trim() != "charset" || !v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8") {
                return Err(unsupported(&format!(
                    "content type parameter '{}' is not supported",
                    rps_core::redact::clip(p, 40)
                )));
            }
        }
        let csv = match essence.as_str() {
            "application/json" => false,
            "text/csv" => true,
            other => {
                return Err(unsupported(&format!(
                    "content type '{}'",
                    rps_core::redact::clip(other, 80)
                )));
            }
        };
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            let status = if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            ScoringError::with(status, rej.body_text())
        })?;
        Ok(if csv {
            ScoringBody::Csv(bytes)
        } else {
            ScoringBody::Json(bytes)
        })
    }
}

/// Rows of named cells, whatever the wire form.
#[derive(Debug, Default)]
struct Frame {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

impl Frame {
    /// From records: the columns are every key, in order of first appearance; a record
    /// without one has null there.
    fn from_records(records: &[Value], at: &str) -> Result<Frame, ScoringError> {
        let mut f = Frame::default();
        let objs = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.as_object().ok_or_else(|| {
                    ScoringError::bad(format!("{at}[{i}]: a record must be an object"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for o in &objs {
            for k in o.keys() {
                if !f.columns.contains(k) {
                    f.columns.push(k.clone());
                }
            }
        }
        f.rows = objs
            .iter()
            .map(|o| {
                f.columns
                    .iter()
                    .map(|c| o.get(c).cloned().unwrap_or(Value::Null))
                    .collect()
            })
            .collect();
        Ok(f)
    }

    /// From columns: name → list of values, all of one length.
    fn from_columns(cols: &Map<String, Value>, at: &str) -> Result<Frame, ScoringError> {
        let mut f = Frame::default();
        let mut lists = Vec::new();
        for (k, v) in cols {
            let Value::Array(list) = v else {
                return Err(ScoringError::bad(format!(
                    "{at}.{k}: a column must be a list"
                )));
            };
            if let Some(first) = lists.first().map(|l: &&Vec<Value>| l.len())
                && list.len() != first
            {
                return Err(ScoringError::bad(format!(
                    "{at}.{k}: has {} values, the first column {first}",
                    list.len()
                )));
            }
            f.columns.push(k.clone());
            lists.push(list);
        }
        let n = lists.first().map_or(0, |l| l.len());
        f.rows = (0..n)
            .map(|i| lists.iter().map(|l| l[i].clone()).collect())
            .collect();
        Ok(f)
    }
}

fn json_frame(bytes: &[u8]) -> Result<Frame, ScoringError> {
    let req: MlflowRequest = serde_json::from_slice(bytes).map_err(|e| {
        ScoringError::bad(format!(
            "the body is not one of MLflow's JSON forms (dataframe_split, dataframe_records, \
             inputs, instances): {e}"
        ))
    })?;
    if req.params.as_ref().is_some_and(|p| !p.is_empty()) {
        return Err(ScoringError::bad("params: this model takes no parameters"));
    }
    let MlflowRequest {
        dataframe_split,
        dataframe_records,
        inputs,
        instances,
        ..
    } = req;
    let given = [
        dataframe_split.is_some(),
        dataframe_records.is_some(),
        inputs.is_some(),
        instances.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ScoringError::bad(
            "send exactly one of dataframe_split, dataframe_records, inputs or instances",
        ));
    }
    if let Some(split) = dataframe_split {
        for (i, row) in split.data.iter().enumerate() {
            if row.len() != split.columns.len() {
                return Err(ScoringError::bad(format!(
                    "dataframe_split.data[{i}]: has {} values for {} columns",
                    row.len(),
                    split.columns.len()
                )));
            }
        }
        return Ok(Frame {
            columns: split.columns,
            rows: split.data,
        });
    }
    if let Some(records) = dataframe_records {
        let records: Vec<Value> = records.into_iter().map(Value::Object).collect();
        return Frame::from_records(&records, "dataframe_records");
    }
    let (at, v) = match (inputs, instances) {
        (Some(v), _) => ("inputs", v),
        (None, Some(v)) => ("instances", v),
        (None, None) => ("inputs", Value::Null),
    };
    match v {
        Value::Object(cols) => Frame::from_columns(&cols, at),
        Value::Array(records) => Frame::from_records(&records, at),
        _ => Err(ScoringError::bad(format!(
            "{at}: must be an object (column -> list) or a list of records"
        ))),
    }
}

/// CSV: a header, then rows; cells that parse as numbers are numbers, empty cells null.
fn csv_frame(bytes: &[u8]) -> Result<Frame, ScoringError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ScoringError::bad(format!("the CSV is not UTF-8: {e}")))?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let bad = |e: csv::Error| ScoringError::bad(format!("the body is not valid CSV: {e}"));
    let header = rdr.headers().map_err(bad)?.clone();
    let mut f = Frame {
        columns: header.iter().map(str::to_string).collect(),
        rows: Vec::new(),
    };
    for rec in rdr.records() {
        let rec = rec.map_err(bad)?;
        f.rows.push(rec.iter().map(csv_cell).collect());
    }
    // pandas writes its index as a first column with an empty name.
    if let Some(i) = f.columns.iter().position(String::is_empty) {
        f.columns.remove(i);
        for r in &mut f.rows {
            r.remove(i);
        }
    }
    Ok(f)
}

fn csv_cell(s: &str) -> Value {
    let s = s.trim();
    if s.is_empty() {
        return Value::Null;
    }
    if let Ok(i) = s.parse::<i64>() {
        return Value::from(i);
    }
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() => Value::from(x),
        _ => Value::String(s.to_string()),
    }
}

/// The columns of a bar frame.
const COLUMNS: [&str; 7] = ["ts", "open", "high", "low", "close", "volume", "coin"];

/// Turns the frame's rows into `/predict`'s bars and the one coin they are of.
fn to_bars(state: &AppState, f: &Frame) -> Result<(String, Vec<BarIn>), ScoringError> {
    for (i, c) in f.columns.iter().enumerate() {
        if !COLUMNS.contains(&c.as_str()) {
            return Err(ScoringError::bad(format!(
                "column '{}' is not a bar field (ts, open, high, low, close, volume, coin)",
                rps_core::redact::clip(c, 40)
            )));
        }
        if f.columns[..i].contains(c) {
            return Err(ScoringError::bad(format!("column '{c}' is given twice")));
        }
    }
    let col = |name: &str| f.columns.iter().position(|c| c == name);
    let need = |name: &'static str| {
        col(name).ok_or_else(|| ScoringError::bad(format!("column '{name}' is missing")))
    };
    let (ts, open, high, low, close) = (
        need("ts")?,
        need("open")?,
        need("high")?,
        need("low")?,
        need("close")?,
    );
    let (volume, coin_col) = (col("volume"), col("coin"));
    let mut coin: Option<String> = None;
    let mut bars = Vec::with_capacity(f.rows.len());
    for (i, row) in f.rows.iter().enumerate() {
        let num = |j: usize, name: &str| {
            row[j].as_f64().ok_or_else(|| {
                ScoringError::bad(format!(
                    "row {i}, {name}: expected a number, got {}",
                    rps_core::redact::clip(&row[j].to_string(), 40)
                ))
            })
        };
        // A null coin (a record without one, pandas' NaN) leaves it to the other rows.
        if let Some(j) = coin_col.filter(|j| !row[*j].is_null()) {
            let Value::String(raw) = &row[j] else {
                return Err(ScoringError::bad(format!(
                    "row {i}, coin: expected a coin code"
                )));
            };
            let c = validate::coin_code(raw, &format!("row {i}, coin"))?;
            match &coin {
                Some(first) if *first != c => {
                    return Err(ScoringError::bad(format!(
                        "row {i}, coin: {c} differs from row 0's {first}: the rows are one \
                         window of one coin"
                    )));
                }
                Some(_) => {}
                None => coin = Some(c),
            }
        }
        bars.push(BarIn {
            ts: super::ts_of(&row[ts])
                .map_err(|e| ScoringError::bad(format!("row {i}, ts: {e}")))?,
            open: num(open, "open")?,
            high: num(high, "high")?,
            low: num(low, "low")?,
            close: num(close, "close")?,
            volume: match volume {
                Some(j) if !row[j].is_null() => Some(num(j, "volume")?),
                _ => None,
            },
        });
    }
    let coin = match coin {
        Some(c) => c,
        None => super::default_coin(state)?,
    };
    Ok((coin, bars))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(f: &Frame) -> Vec<&str> {
        f.columns.iter().map(String::as_str).collect()
    }

    /// The rows as column → value maps (the forms need not keep the column order).
    fn named(f: &Frame) -> Vec<std::collections::BTreeMap<&str, &Value>> {
        f.rows
            .iter()
            .map(|r| f.columns.iter().map(String::as_str).zip(r).collect())
            .collect()
    }

    #[test]
    fn the_json_forms_give_the_same_frame() {
        let split = json_frame(
            br#"{"dataframe_split":{"index":[0,1],"columns":["ts","close"],"data":[[1,2.5],[2,3.5]]}}"#,
        )
        .unwrap();
        let records =
            json_frame(br#"{"dataframe_records":[{"ts":1,"close":2.5},{"ts":2,"close":3.5}]}"#)
                .unwrap();
        let inputs = json_frame(br#"{"inputs":{"ts":[1,2],"close":[2.5,3.5]}}"#).unwrap();
        let instances =
            json_frame(br#"{"instances":[{"ts":1,"close":2.5},{"ts":2,"close":3.5}]}"#).unwrap();
        assert_eq!(named(&split).len(), 2);
        for f in [&records, &inputs, &instances] {
            assert_eq!(named(f), named(&split));
        }
    }

    #[test]
    fn none_two_or_unknown_forms_are_refused() {
        for body in [
            &br#"{}"#[..],
            br#"{"inputs":{"a":[1]},"instances":[]}"#,
            br#"{"data":[]}"#,
            br#"{"inputs":5}"#,
            br#"{"inputs":{"ts":[1,2],"close":[1]}}"#,
            br#"{"dataframe_split":{"columns":["ts"],"data":[[1,2]]}}"#,
            br#"{"inputs":{"ts":[1]},"params":{"k":1}}"#,
            b"[1,2]",
        ] {
            let e = json_frame(body).unwrap_err();
            assert_eq!(
                e.status,
                StatusCode::BAD_REQUEST,
                "{}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(e.body.error_code, "BAD_REQUEST");
        }
    }

    #[test]
    fn csv_cells_are_typed_and_the_pandas_index_dropped() {
        let f = csv_frame(b",ts,close,volume\n0,2022-03-01T00:00:00Z,2.5,\n1,1646096400,3,7\n")
            .unwrap();
        assert_eq!(cols(&f), ["ts", "close", "volume"]);
        assert_eq!(f.rows[0][0], Value::from("2022-03-01T00:00:00Z"));
        assert_eq!(f.rows[0][2], Value::Null);
        assert_eq!(f.rows[1][1], Value::from(3));
        assert!(csv_frame(b"ts,close\n1,2,3\n").is_err());
    }
}
