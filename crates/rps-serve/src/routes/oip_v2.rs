//! The Open Inference Protocol v2 (KServe/Triton REST), so KServe's and Triton's clients
//! (`tritonclient.http`) can call this server: server and model metadata, liveness and
//! readiness, and `infer`. An adapter only: the input tensors are converted to `/predict`'s
//! bars and forecast by `predict::forecast_window`, the path of `POST /predict` with bars
//! (the one forecasting path).
//!
//! # Tensors
//! The model's name is the served model's registered name (`name` of `GET /model`), its one
//! version the registry version. Inputs, each of shape `[n]`, together **one window** of `n`
//! consecutive hourly bars, oldest first (at least `min_bars` of `GET /model`): `ts` (`INT64`
//! unix seconds or milliseconds, or `BYTES` RFC 3339 text), `open`, `high`, `low`, `close`
//! and the optional `volume` (`FP64`, or `FP32`), and the optional `coin` (`BYTES` `[1]`;
//! default the model's first training coin). Outputs, for the hour after the newest bar:
//! `forecast` (`FP64` `[1]`, the close), `lower` and `upper` (`FP64` `[1, k]`, one column
//! per calibrated interval level), `levels` (`FP64` `[k]`, those levels, e.g. `0.8, 0.9`)
//! and `ts` (`INT64` `[1]`, that hour in unix seconds). The model metadata lists them, and
//! its `parameters` repeat the levels and `min_bars`.
//!
//! Only JSON tensor data is spoken (not the binary-data extension); the server's metadata
//! lists no extensions. A body may come without a content type (tritonclient sends none);
//! any other than JSON is refused with 415. Errors are the protocol's `{"error": "..."}`: 400
//! for bad input, 404 for another model name or version, 503 while no model is loaded.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::api::BarIn;
use crate::error::ApiError;
use crate::model::LoadedModel;
use crate::state::AppState;

/// The protocol's error body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OipError {
    /// What was wrong.
    pub error: String,
}

/// An error of the v2 routes: a status and the protocol's body.
#[derive(Debug)]
pub struct InferError {
    status: StatusCode,
    message: String,
}

impl InferError {
    fn bad(message: impl Into<String>) -> Self {
        Self::with(StatusCode::BAD_REQUEST, message)
    }

    fn with(status: StatusCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        rps_core::redact::clip_in_place(&mut message, crate::error::MAX_DETAIL);
        InferError { status, message }
    }
}

impl From<ApiError> for InferError {
    /// Keeps 413, 415 and 5xx; every other refusal of the input is the protocol's 400.
    fn from(e: ApiError) -> Self {
        Self::with(
            super::protocol_status(e.status),
            format!("{}: {}", e.error, e.detail),
        )
    }
}

impl IntoResponse for InferError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(OipError {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// `GET /v2`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerMetadata {
    /// `rps-serve`.
    pub name: String,
    /// The server's version.
    pub version: String,
    /// Protocol extensions supported: none.
    pub extensions: Vec<String>,
}

/// `GET /v2/health/live`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LiveOut {
    /// Always true while the process answers.
    pub live: bool,
}

/// `GET /v2/health/ready`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadyV2 {
    /// Whether a model is loaded.
    pub ready: bool,
}

/// `GET /v2/models/{name}/ready`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelReady {
    /// The model's name.
    pub name: String,
    /// Always true when 200 (a model is loaded).
    pub ready: bool,
}

/// A tensor's name, element type and shape (`-1`: any length).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TensorMetadata {
    /// Tensor name.
    pub name: String,
    /// Element type (`FP64`, `INT64`, `BYTES`).
    pub datatype: String,
    /// Shape; `-1` is a variable dimension.
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelMetadata {
    /// Registered model name.
    pub name: String,
    /// The one version served.
    pub versions: Vec<String>,
    /// `rps`.
    pub platform: String,
    /// Input tensors (`ts` may also be `BYTES` RFC 3339 text; `volume` and `coin` are
    /// optional).
    pub inputs: Vec<TensorMetadata>,
    /// Output tensors.
    pub outputs: Vec<TensorMetadata>,
    /// `interval_levels` (the columns of `lower`/`upper`), `min_bars` and a note on `ts`.
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
}

/// One input tensor of an infer request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct InferInput {
    /// Tensor name.
    pub name: String,
    /// Shape (its product is the number of elements).
    pub shape: Vec<u64>,
    /// Element type.
    pub datatype: String,
    /// Tensor parameters (ignored).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// The elements, row-major, flat or nested.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<Value>,
}

/// An output a client asks for.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct RequestedOutput {
    /// Output tensor name.
    pub name: String,
    /// Output parameters (ignored: data is always JSON).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
}

/// `POST /v2/models/{name}/infer` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct InferRequest {
    /// Request id, echoed back.
    #[serde(default)]
    pub id: Option<String>,
    /// Request parameters (ignored).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// The input tensors: one window of bars.
    pub inputs: Vec<InferInput>,
    /// The outputs wanted (default: all).
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
}

/// One output tensor.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InferOutput {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub datatype: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// The elements, row-major, flat.
    #[schema(value_type = Vec<f64>)]
    pub data: Vec<Value>,
}

/// `POST /v2/models/{name}/infer` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InferResponse {
    /// Model name.
    pub model_name: String,
    /// Model version.
    pub model_version: String,
    /// The request's id, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The output tensors.
    pub outputs: Vec<InferOutput>,
}

/// The loaded model, if `name` (and `version`, if given) are its.
fn served(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<LoadedModel>, InferError> {
    let m = state.model().map_err(ApiError::from)?;
    if m.meta().name != name {
        return Err(InferError::with(
            StatusCode::NOT_FOUND,
            format!(
                "no model '{}': this server serves '{}'",
                rps_core::redact::clip(name, 80),
                m.meta().name
            ),
        ));
    }
    if let Some(v) = version
        && v != m.version
    {
        return Err(InferError::with(
            StatusCode::NOT_FOUND,
            format!(
                "model '{name}' has no version '{}': version {} is served",
                rps_core::redact::clip(v, 40),
                m.version
            ),
        ));
    }
    Ok(m)
}

fn tensor(name: &str, datatype: &str, shape: &[i64]) -> TensorMetadata {
    TensorMetadata {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
    }
}

fn metadata(m: &LoadedModel) -> ModelMetadata {
    let levels: Vec<f64> = m.meta().calibration.levels.clone();
    let k = levels.len() as i64;
    let mut parameters = Map::new();
    parameters.insert("interval_levels".into(), Value::from(levels));
    parameters.insert("min_bars".into(), Value::from(m.forecaster.min_bars()));
    parameters.insert(
        "ts".into(),
        Value::from(
            "input ts: INT64 unix seconds or milliseconds, or BYTES RFC 3339; output ts: INT64 \
             unix seconds of the forecast hour",
        ),
    );
    ModelMetadata {
        name: m.meta().name.clone(),
        versions: vec![m.version.clone()],
        platform: "rps".into(),
        inputs: vec![
            tensor("ts", "INT64", &[-1]),
            tensor("open", "FP64", &[-1]),
            tensor("high", "FP64", &[-1]),
            tensor("low", "FP64", &[-1]),
            tensor("close", "FP64", &[-1]),
            tensor("volume", "FP64", &[-1]),
            tensor("coin", "BYTES", &[1]),
        ],
        outputs: vec![
            tensor("forecast", "FP64", &[1]),
            tensor("lower", "FP64", &[1, k]),
            tensor("upper", "FP64", &[1, k]),
            tensor("levels", "FP64", &[k]),
            tensor("ts", "INT64", &[1]),
        ],
        parameters,
    }
}

/// Server metadata.
#[utoipa::path(get, path = "/v2", tag = "oip-v2",
    responses((status = 200, description = "Server name, version and extensions", body = ServerMetadata)))]
pub async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "rps-serve".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: Vec::new(),
    })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/v2/health/live", tag = "oip-v2",
    responses((status = 200, description = "Alive", body = LiveOut)))]
pub async fn live() -> Json<LiveOut> {
    Json(LiveOut { live: true })
}

/// Readiness: a model is loaded (like `/ready`).
#[utoipa::path(get, path = "/v2/health/ready", tag = "oip-v2",
    responses(
        (status = 200, description = "A model is loaded", body = ReadyV2),
        (status = 503, description = "No model yet", body = ReadyV2),
    ))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<ReadyV2>) {
    let ready = state.current_model().is_some();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(ReadyV2 { ready }))
}

/// The model's metadata: versions, platform and tensors.
#[utoipa::path(get, path = "/v2/models/{name}", tag = "oip-v2",
    params(("name" = String, Path, description = "The registered model name (GET /model)")),
    responses(
        (status = 200, description = "Model metadata", body = ModelMetadata),
        (status = 404, description = "Another model name", body = OipError),
        (status = 503, description = "No model yet", body = OipError),
    ))]
pub async fn model_metadata(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ModelMetadata>, InferError> {
    let m = served(&state, &name, None)?;
    Ok(Json(metadata(&m)))
}

/// The metadata of one version of the model (the served one).
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}", tag = "oip-v2",
    params(("name" = String, Path, description = "The registered model name"),
        ("version" = String, Path, description = "The served version")),
    responses(
        (status = 200, description = "Model metadata", body = ModelMetadata),
        (status = 404, description = "Another model name or version", body = OipError),
        (status = 503, description = "No model yet", body = OipError),
    ))]
pub async fn version_metadata(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModelMetadata>, InferError> {
    let m = served(&state, &name, Some(&version))?;
    Ok(Json(metadata(&m)))
}

/// Whether the model is loaded and can infer.
#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "oip-v2",
    params(("name" = String, Path, description = "The registered model name")),
    responses(
        (status = 200, description = "Ready", body = ModelReady),
        (status = 404, description = "Another model name", body = OipError),
        (status = 503, description = "No model yet", body = OipError),
    ))]
pub async fn model_ready(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ModelReady>, InferError> {
    let m = served(&state, &name, None)?;
    Ok(Json(ModelReady {
        name: m.meta().name.clone(),
        ready: true,
    }))
}

/// Whether a version of the model is loaded and can infer.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/ready", tag = "oip-v2",
    params(("name" = String, Path, description = "The registered model name"),
        ("version" = String, Path, description = "The served version")),
    responses(
        (status = 200, description = "Ready", body = ModelReady),
        (status = 404, description = "Another model name or version", body = OipError),
        (status = 503, description = "No model yet", body = OipError),
    ))]
pub async fn version_ready(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModelReady>, InferError> {
    let m = served(&state, &name, Some(&version))?;
    Ok(Json(ModelReady {
        name: m.meta().name.clone(),
        ready: true,
    }))
}

/// Forecasts the hour after a window of bars given as tensors (see the module docs).
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "oip-v2",
    params(("name" = String, Path, description = "The registered model name")),
    request_body(content = InferRequest, description = "Input tensors `ts`, `open`, `high`, `low`, `close` [, `volume`, `coin`]: one window of consecutive hourly bars"),
    responses(
        (status = 200, description = "Output tensors `forecast`, `lower`, `upper`, `levels`, `ts`", body = InferResponse),
        (status = 400, description = "Bad input: unparsable body, unknown or missing tensors, wrong datatypes or shapes, or a window `/predict` would refuse", body = OipError),
        (status = 404, description = "Another model name", body = OipError),
        (status = 413, description = "Body larger than the limit", body = OipError),
        (status = 415, description = "Content type is not JSON", body = OipError),
        (status = 503, description = "No model yet", body = OipError),
    ))]
pub async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: InferBody,
) -> Result<Json<InferResponse>, InferError> {
    run_infer(&state, &name, None, &body.0)
}

/// [`infer`] on one version of the model (the served one).
#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/infer", tag = "oip-v2",
    params(("name" = String, Path, description = "The registered model name"),
        ("version" = String, Path, description = "The served version")),
    request_body(content = InferRequest, description = "As for /v2/models/{name}/infer"),
    responses(
        (status = 200, description = "Output tensors", body = InferResponse),
        (status = 400, description = "Bad input", body = OipError),
        (status = 404, description = "Another model name or version", body = OipError),
        (status = 413, description = "Body larger than the limit", body = OipError),
        (status = 415, description = "Content type is not JSON", body = OipError),
        (status = 503, description = "No model yet", body = OipError),
    ))]
pub async fn version_infer(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    body: InferBody,
) -> Result<Json<InferResponse>, InferError> {
    run_infer(&state, &name, Some(&version), &body.0)
}

fn run_infer(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    body: &[u8],
) -> Result<Json<InferResponse>, InferError> {
    let m = served(state, name, version)?;
    let req: InferRequest = serde_json::from_slice(body)
        .map_err(|e| InferError::bad(format!("the body is not an inference request: {e}")))?;
    let (coin, bars) = to_bars(state, &req.inputs)?;
    let out = super::predict::forecast_window(state, &coin, bars)?;
    let k = out.intervals.len() as u64;
    let all = vec![
        output("forecast", "FP64", vec![1], vec![out.forecast_close.into()]),
        output(
            "lower",
            "FP64",
            vec![1, k],
            out.intervals.iter().map(|i| i.lower.into()).collect(),
        ),
        output(
            "upper",
            "FP64",
            vec![1, k],
            out.intervals.iter().map(|i| i.upper.into()).collect(),
        ),
        output(
            "levels",
            "FP64",
            vec![k],
            out.intervals.iter().map(|i| i.level.into()).collect(),
        ),
        output(
            "ts",
            "INT64",
            vec![1],
            vec![(out.for_hour_ms / 1000).into()],
        ),
    ];
    let outputs = match &req.outputs {
        None => all,
        Some(wanted) => {
            let mut picked = Vec::with_capacity(wanted.len());
            for w in wanted {
                let Some(o) = all.iter().find(|o| o.name == w.name) else {
                    return Err(InferError::bad(format!(
                        "outputs: no output '{}' (forecast, lower, upper, levels, ts)",
                        rps_core::redact::clip(&w.name, 40)
                    )));
                };
                picked.push(o.clone());
            }
            picked
        }
    };
    Ok(Json(InferResponse {
        model_name: m.meta().name.clone(),
        model_version: m.version.clone(),
        id: req.id.clone(),
        outputs,
    }))
}

fn output(name: &str, datatype: &str, shape: Vec<u64>, data: Vec<Value>) -> InferOutput {
    InferOutput {
        name: name.into(),
        datatype: datatype.into(),
        shape,
        data,
    }
}

/// The elements of a tensor, flattened row-major, checked against its shape.
fn elements(t: &InferInput) -> Result<Vec<&Value>, InferError> {
    fn flatten<'a>(v: &'a [Value], out: &mut Vec<&'a Value>) {
        for x in v {
            match x {
                Value::Array(inner) => flatten(inner, out),
                other => out.push(other),
            }
        }
    }
    let mut out = Vec::new();
    flatten(&t.data, &mut out);
    let want = t
        .shape
        .iter()
        .try_fold(1u64, |acc, d| acc.checked_mul(*d))
        .unwrap_or(u64::MAX);
    if want != out.len() as u64 {
        return Err(InferError::bad(format!(
            "{}: shape {:?} holds {want} elements, data has {}",
            t.name,
            t.shape,
            out.len()
        )));
    }
    Ok(out)
}

const FLOATS: [&str; 2] = ["FP64", "FP32"];
const INTS: [&str; 8] = [
    "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8",
];

/// Turns the input tensors into `/predict`'s bars and the coin they are of.
fn to_bars(state: &AppState, inputs: &[InferInput]) -> Result<(String, Vec<BarIn>), InferError> {
    const NAMES: [&str; 7] = ["ts", "open", "high", "low", "close", "volume", "coin"];
    for (i, t) in inputs.iter().enumerate() {
        if !NAMES.contains(&t.name.as_str()) {
            return Err(InferError::bad(format!(
                "inputs[{i}]: no input '{}' (ts, open, high, low, close, volume, coin)",
                rps_core::redact::clip(&t.name, 40)
            )));
        }
        if inputs[..i].iter().any(|p| p.name == t.name) {
            return Err(InferError::bad(format!(
                "input '{}' is given twice",
                t.name
            )));
        }
    }
    let find = |name: &str| inputs.iter().find(|t| t.name == name);
    let need = |name: &'static str| {
        find(name).ok_or_else(|| InferError::bad(format!("input '{name}' is missing")))
    };
    let floats = |t: &InferInput| -> Result<Vec<f64>, InferError> {
        if !FLOATS.contains(&t.datatype.as_str()) {
            return Err(InferError::bad(format!(
                "{}: datatype must be FP64 (or FP32), got {}",
                t.name,
                rps_core::redact::clip(&t.datatype, 20)
            )));
        }
        elements(t)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_f64()
                    .ok_or_else(|| InferError::bad(format!("{}[{i}]: expected a number", t.name)))
            })
            .collect()
    };
    let ts_t = need("ts")?;
    let is_int = INTS.contains(&ts_t.datatype.as_str());
    if !is_int && ts_t.datatype != "BYTES" {
        return Err(InferError::bad(format!(
            "ts: datatype must be INT64 (unix seconds or milliseconds) or BYTES (RFC 3339), got {}",
            rps_core::redact::clip(&ts_t.datatype, 20)
        )));
    }
    let ts = elements(ts_t)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let typed = if is_int {
                v.is_i64() || v.is_u64()
            } else {
                v.is_string()
            };
            if !typed {
                return Err(InferError::bad(format!(
                    "ts[{i}]: expected {}",
                    if is_int { "an integer" } else { "a string" }
                )));
            }
            super::ts_of(v).map_err(|e| InferError::bad(format!("ts[{i}]: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let open = floats(need("open")?)?;
    let high = floats(need("high")?)?;
    let low = floats(need("low")?)?;
    let close = floats(need("close")?)?;
    let volume = find("volume").map(floats).transpose()?;
    let n = ts.len();
    for (name, len) in [
        ("open", open.len()),
        ("high", high.len()),
        ("low", low.len()),
        ("close", close.len()),
        ("volume", volume.as_ref().map_or(n, Vec::len)),
    ] {
        if len != n {
            return Err(InferError::bad(format!(
                "{name}: has {len} elements, ts has {n}: every input is one value per bar"
            )));
        }
    }
    let coin = match find("coin") {
        Some(t) => {
            if t.datatype != "BYTES" {
                return Err(InferError::bad("coin: datatype must be BYTES"));
            }
            let vals = elements(t)?;
            let [Value::String(raw)] = vals.as_slice() else {
                return Err(InferError::bad("coin: one string, shape [1]"));
            };
            crate::validate::coin_code(raw, "coin")?
        }
        None => super::default_coin(state)?,
    };
    let bars = (0..n)
        .map(|i| BarIn {
            ts: ts[i],
            open: open[i],
            high: high[i],
            low: low[i],
            close: close[i],
            volume: volume.as_ref().map(|v| v[i]),
        })
        .collect();
    Ok((coin, bars))
}

/// An infer body: JSON, declared as such or without a content type (tritonclient sends
/// none; the route has no side effect a cross-site post could abuse). The binary-data
/// extension (`Inference-Header-Content-Length`) is refused.
#[derive(Debug)]
pub struct InferBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for InferBody {
    type Rejection = InferError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("?").to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or("").trim();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(InferError::with(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "content type '{}' is not JSON: send Content-Type: application/json",
                        rps_core::redact::clip(essence, 80)
                    ),
                ));
            }
        }
        if req
            .headers()
            .contains_key("inference-header-content-length")
        {
            return Err(InferError::bad(
                "the binary tensor data extension is not supported: send JSON tensor data \
                 (tritonclient: binary_data=False)",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            let status = if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            InferError::with(status, rej.body_text())
        })?;
        Ok(InferBody(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, datatype: &str, shape: Vec<u64>, data: Value) -> InferInput {
        InferInput {
            name: name.into(),
            shape,
            datatype: datatype.into(),
            parameters: None,
            data: serde_json::from_value(data).unwrap(),
        }
    }

    #[test]
    fn nested_data_is_flattened_and_checked_against_the_shape() {
        let t = input(
            "lower",
            "FP64",
            vec![2, 2],
            serde_json::json!([[1, 2], [3, 4]]),
        );
        assert_eq!(elements(&t).unwrap().len(), 4);
        let t = input("open", "FP64", vec![3], serde_json::json!([1, 2]));
        assert!(elements(&t).unwrap_err().message.contains("holds 3"));
        let t = input("open", "FP64", vec![u64::MAX, 2], serde_json::json!([1]));
        assert!(elements(&t).is_err());
    }
}
