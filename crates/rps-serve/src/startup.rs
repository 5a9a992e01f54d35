//! Building the application: load the first model, bind the listener (port 0 in tests; the
//! real port is read back), assemble the router with its layers (request metrics, JSON
//! errors, timeout, body limit), and run it with the background hot-reload and store pollers.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rps_core::{ExitCode, Store};
use rps_mlflow::source::{ModelSpec, SourceError};
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::error::{ApiError, ErrorCode, Result, ServeError};
use crate::model::LoadedModel;
use crate::routes;
use crate::state::ReloadOutcome;
use crate::state::{AppState, Settings};

/// Everything `rps-serve serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Listen address (`127.0.0.1:8000`; port 0 picks a free port).
    pub addr: String,
    /// Store location (local directory or `s3://`).
    pub store: String,
    /// The model to serve.
    pub model: ModelSpec,
    /// Where registry downloads are kept.
    pub cache_dir: PathBuf,
    /// Runtime knobs.
    pub settings: Settings,
}

/// A bound, ready-to-run server.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
}

impl Application {
    /// Loads the model, opens the store and binds. A registry alias that points nowhere yet
    /// is not an error: the server starts without a model (`/ready` 503) and the reload poll
    /// loads the first one that appears. Anything else wrong with the model fails fast.
    pub async fn build(config: ServeConfig) -> Result<Application> {
        config
            .settings
            .drift_rule()
            .check()
            .map_err(|(flag, reason)| ServeError::Usage {
                flag: if flag == "share" {
                    "drift-share"
                } else {
                    "psi-threshold"
                },
                reason,
            })?;
        let source = config.model.open(&config.cache_dir)?;
        let store = Store::open(&config.store)?;
        // A registry that cannot be reached (MLflow down, not up yet under compose) is waited
        // for, never a reason to exit: the server runs unready and the poll retries it.
        let unreachable = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, "the model registry is unreachable: starting without a model; /ready answers 503 while it is retried with backoff");
        };
        let mut failed_first = false;
        let model = match source.probe().await {
            Ok(candidate) => match LoadedModel::fetch(&source, &candidate, &store).await {
                Ok(m) => Some(m),
                Err(e) if e.exit_code() == ExitCode::External => {
                    unreachable(&e);
                    failed_first = true;
                    None
                }
                Err(e) => return Err(e),
            },
            Err(e @ SourceError::NoAlias { .. }) => {
                tracing::warn!(error = %e, "starting without a model; /ready answers 503 until one is promoted");
                None
            }
            Err(e) if e.exit_code() == ExitCode::External => {
                unreachable(&e);
                failed_first = true;
                None
            }
            Err(e) => return Err(e.into()),
        };
        let state = AppState::new(config.settings, model, source, store);
        if failed_first {
            state.metrics().observe_reload(false);
        }
        let listener =
            TcpListener::bind(&config.addr)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: config.addr.clone(),
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.addr.clone(),
            source,
        })?;
        Ok(Application {
            listener,
            addr,
            state,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (tests drive reloads and inspect the monitor through it).
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until Ctrl-C or SIGTERM.
    pub async fn run_until_stopped(self) -> Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` completes, with the hot-reload and store pollers running.
    pub async fn run_until(self, stop: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let state = self.state.clone();
        let reloader = tokio::spawn(poll_model(state.clone()));
        let poller = tokio::spawn(poll_store(state.clone()));
        crate::connections::serve(
            self.listener,
            router(state.clone()),
            state.settings(),
            state.metrics(),
            stop,
        )
        .await;
        reloader.abort();
        poller.abort();
        Ok(())
    }
}

/// The longest wait between two checks of a failing model source.
const MAX_POLL_BACKOFF: Duration = Duration::from_secs(300);

/// Checks the model source every poll interval; while the source fails, the wait doubles
/// per failure up to [`MAX_POLL_BACKOFF`] (or the interval, if longer) and returns to the
/// interval once the source answers.
async fn poll_model(state: AppState) {
    let every = state.settings().model_poll_interval;
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(poll_delay(every, failures)).await;
        match state.reload_once().await {
            ReloadOutcome::Swapped { .. } => {
                failures = 0;
                state.refresh_store().await;
            }
            ReloadOutcome::ProbeFailed { .. } => failures = failures.saturating_add(1),
            ReloadOutcome::Unchanged | ReloadOutcome::Waiting | ReloadOutcome::Failed { .. } => {
                failures = 0;
            }
        }
    }
}

/// The wait before the next check after `failures` failed ones in a row.
fn poll_delay(every: Duration, failures: u32) -> Duration {
    let backoff = every.saturating_mul(1u32 << failures.min(16));
    backoff.min(MAX_POLL_BACKOFF.max(every))
}

async fn poll_store(state: AppState) {
    let mut tick = tokio::time::interval(state.settings().store_poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.refresh_store().await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// The router with every route and layer.
pub fn router(state: AppState) -> Router {
    let limit = state.settings().max_body_bytes;
    let timeout = state.settings().request_timeout;
    Router::new()
        .route("/", get(routes::page::index))
        .route("/health", get(routes::health::health))
        .route("/ready", get(routes::health::ready))
        .route("/model", get(routes::model::model))
        .route("/predict", post(routes::predict::predict))
        .route("/predict/batch", post(routes::predict::predict_batch))
        .route("/feedback", post(routes::feedback::feedback))
        .route("/drift", get(routes::drift::drift))
        .route("/metrics", get(routes::metrics::metrics))
        .route("/openapi.json", get(routes::openapi::openapi_json))
        // The serving protocols of the ecosystem: adapters onto the same forecast.
        .route("/ping", get(routes::mlflow_scoring::ping))
        .route("/version", get(routes::mlflow_scoring::version))
        .route("/invocations", post(routes::mlflow_scoring::invocations))
        .route("/v2", get(routes::oip_v2::server_metadata))
        .route("/v2/health/live", get(routes::oip_v2::live))
        .route("/v2/health/ready", get(routes::oip_v2::ready))
        .route("/v2/models/{name}", get(routes::oip_v2::model_metadata))
        .route("/v2/models/{name}/ready", get(routes::oip_v2::model_ready))
        .route("/v2/models/{name}/infer", post(routes::oip_v2::infer))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(routes::oip_v2::version_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(routes::oip_v2::version_ready),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(routes::oip_v2::version_infer),
        )
        .fallback(not_found)
        // Innermost first: body limit, timeout, then JSON errors and request counting
        // outermost so they see the final status of every response (413s and 408s
        // included). One middleware for both: each `from_fn`/`map_response` layer costs a
        // boxed future and a service clone per request.
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!(
            "no route {} {} (see /openapi.json)",
            req.method(),
            rps_core::redact::clip(req.uri().path(), 120)
        ),
    )
}

/// Refuses over-long URIs (414) and request heads (431) with JSON bodies, gives every error
/// response a JSON body ([`json_errors`]) and the API's cache and sniffing headers, then
/// counts it by matched route template (bounded) and status and observes its duration per
/// route.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let mut resp = match oversized(&req, state.settings()) {
        Some(e) => e.into_response(),
        None => next.run(req).await,
    };
    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        resp = json_errors(resp).await;
    }
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    state.metrics().observe_request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        status.as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// The 414 or 431 of a request whose URI or head is larger than the settings allow.
fn oversized(req: &Request, s: &Settings) -> Option<ApiError> {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > s.max_uri_bytes {
        return Some(ApiError::new(
            StatusCode::URI_TOO_LONG,
            ErrorCode::UriTooLong,
            format!(
                "the URI has {uri} bytes; at most {} are accepted",
                s.max_uri_bytes
            ),
        ));
    }
    let head: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    (head > s.max_header_bytes).then(|| {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::HeadersTooLarge,
            format!(
                "the request headers have {head} bytes; at most {} are accepted",
                s.max_header_bytes
            ),
        )
    })
}

/// Gives error responses produced outside the handlers (405, 408, 413 from layers) the same
/// JSON body as handler errors.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::Timeout,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::URI_TOO_LONG => ErrorCode::UriTooLong,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ErrorCode::HeadersTooLarge,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Overloaded,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    };
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut out = ApiError::new(status, code, detail).into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_source_is_checked_ever_less_often_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(poll_delay(s(30), 0), s(30));
        assert_eq!(poll_delay(s(30), 1), s(60));
        assert_eq!(poll_delay(s(30), 3), s(240));
        assert_eq!(poll_delay(s(30), 4), MAX_POLL_BACKOFF);
        assert_eq!(poll_delay(s(30), u32::MAX), MAX_POLL_BACKOFF);
        // An interval longer than the cap is kept as it is.
        assert_eq!(poll_delay(s(600), 5), s(600));
    }
}
