//! Typed async client for the MLflow REST API (tracking, artifact proxy, model registry),
//! with bounded retries, and the client-side checks that keep MLflow's silent traps away
//! (see docs/MLFLOW.md): non-finite metrics, batch limits, over-long values.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode, Url};
use rps_core::error::chain;
use rps_core::retry;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::{Error, Result};
use crate::types::{
    DatasetInput, Experiment, FileInfo, Metric, ModelVersionInfo, Param, RegisteredModel, Run,
    RunInfo, RunStatus, Tag,
};

/// MLflow's log-batch limits (each violation is a 400).
pub const MAX_BATCH_METRICS: usize = 1000;
/// Most params in one log-batch call.
pub const MAX_BATCH_PARAMS: usize = 100;
/// Most tags in one log-batch call.
pub const MAX_BATCH_TAGS: usize = 100;
/// Most metrics, params and tags together in one log-batch call.
pub const MAX_BATCH_TOTAL: usize = 1000;
/// Longest dataset digest the server accepts.
pub const MAX_DIGEST_LEN: usize = 36;
/// Longest key (metric, param, tag) the server accepts.
pub const MAX_KEY_LEN: usize = 250;
/// Param values longer than this are silently truncated by the server; we refuse them.
pub const MAX_PARAM_VALUE_LEN: usize = 6000;
/// Tag values longer than this are silently truncated by the server; we truncate visibly.
pub const MAX_TAG_VALUE_LEN: usize = 8000;

/// How long to keep trying. A request is retried on connection errors, timeouts, 429 and
/// 5xx; any other answer is final. Backoff doubles from `initial_backoff` up to
/// `max_backoff`, with "equal jitter" (each sleep is uniform in [d/2, d]) so that several
/// clients do not retry in lock-step.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first (at least 1).
    pub max_attempts: u32,
    /// Backoff before the first retry (before jitter).
    pub initial_backoff: Duration,
    /// Cap of the doubling backoff (before jitter).
    pub max_backoff: Duration,
    /// Timeout of one API call (connect + response).
    pub request_timeout: Duration,
    /// Timeout of one artifact upload or download.
    pub transfer_timeout: Duration,
    /// Timeout of establishing a connection.
    pub connect_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts with sleeps of about 2, 4, 8 and 16 s (15–30 s in total with jitter).
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(16),
            request_timeout: Duration::from_secs(30),
            transfer_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The default policy adjusted by MLflow's own environment variables, so a deployment
    /// (or a test of "MLflow is down") can tune it without code:
    /// `MLFLOW_HTTP_REQUEST_MAX_RETRIES` (retries after the first attempt),
    /// `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR` (first sleep in seconds, may be fractional) and
    /// `MLFLOW_HTTP_REQUEST_TIMEOUT` (seconds per API call).
    pub fn from_env() -> Result<Self> {
        let mut p = RetryPolicy::default();
        if let Some(v) = env_nonempty("MLFLOW_HTTP_REQUEST_MAX_RETRIES") {
            let n: u32 = v
                .parse()
                .map_err(|_| config_err("MLFLOW_HTTP_REQUEST_MAX_RETRIES", &v))?;
            p.max_attempts = n.saturating_add(1);
        }
        if let Some(v) = env_nonempty("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR") {
            let s = parse_secs(&v)
                .ok_or_else(|| config_err("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", &v))?;
            p.initial_backoff = s;
            p.max_backoff = p.max_backoff.max(s);
        }
        if let Some(v) = env_nonempty("MLFLOW_HTTP_REQUEST_TIMEOUT") {
            let s = parse_secs(&v).ok_or_else(|| config_err("MLFLOW_HTTP_REQUEST_TIMEOUT", &v))?;
            p.request_timeout = s;
            p.connect_timeout = p.connect_timeout.min(s);
        }
        Ok(p)
    }

    /// The attempts and backoff of this policy as the shared [`retry::Policy`] (equal
    /// jitter).
    pub fn policy(&self) -> retry::Policy {
        retry::Policy {
            attempts: self.max_attempts,
            base: self.initial_backoff,
            cap: self.max_backoff,
            jitter: retry::Jitter::Equal,
        }
    }

    /// Sleep before retry number `retry` (1 = after the first failure).
    pub fn backoff(&self, retry: u32) -> Duration {
        self.policy().delay(retry)
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse_secs(v: &str) -> Option<Duration> {
    let s: f64 = v.trim().parse().ok()?;
    Duration::try_from_secs_f64(s).ok()
}

fn config_err(name: &str, value: &str) -> Error {
    Error::Config {
        name: name.into(),
        value: value.into(),
        reason: "expected a non-negative number".into(),
    }
}

/// Credentials from `MLFLOW_TRACKING_TOKEN` or `MLFLOW_TRACKING_USERNAME`/`_PASSWORD`.
enum Auth {
    None,
    Bearer(SecretString),
    Basic {
        user: String,
        password: SecretString,
    },
}

impl Auth {
    fn from_env() -> Auth {
        if let Some(t) = env_nonempty("MLFLOW_TRACKING_TOKEN") {
            Auth::Bearer(SecretString::from(t))
        } else if let Some(user) = env_nonempty("MLFLOW_TRACKING_USERNAME") {
            let pw = std::env::var("MLFLOW_TRACKING_PASSWORD").unwrap_or_default();
            Auth::Basic {
                user,
                password: SecretString::from(pw),
            }
        } else {
            Auth::None
        }
    }

    fn apply(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => rb,
            Auth::Bearer(t) => rb.bearer_auth(t.expose_secret()),
            Auth::Basic { user, password } => rb.basic_auth(user, Some(password.expose_secret())),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::Bearer(_) => "bearer",
            Auth::Basic { .. } => "basic",
        }
    }
}

/// A typed client for one MLflow server. Cheap to clone (shares the connection pool).
#[derive(Clone)]
pub struct MlflowClient {
    base: Url,
    http: reqwest::Client,
    retry: RetryPolicy,
    auth: Arc<Auth>,
}

impl std::fmt::Debug for MlflowClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print credentials.
        f.debug_struct("MlflowClient")
            .field("base", &self.base.as_str())
            .field("retry", &self.retry)
            .field("auth", &self.auth.kind())
            .finish()
    }
}

/// Why one attempt at a request failed.
enum SendFailure {
    /// Worth another attempt (connection error, timeout, 429, 5xx), described.
    Transient(String),
    /// Final (the request could not even be built).
    Final(Error),
}

/// One request to send, possibly several times.
struct Req<'a> {
    method: Method,
    url: Url,
    endpoint: &'a str,
    query: Vec<(&'a str, String)>,
    body: Option<(Bytes, &'static str)>,
    timeout: Duration,
}

impl MlflowClient {
    /// A client for `base_url` (e.g. `http://127.0.0.1:5055`) with the default retry policy
    /// (adjusted by the `MLFLOW_HTTP_REQUEST_*` variables) and credentials from the env.
    pub fn new(base_url: &str) -> Result<Self> {
        Self::with_retry(base_url, RetryPolicy::from_env()?)
    }

    /// A client with an explicit retry policy.
    pub fn with_retry(base_url: &str, retry: RetryPolicy) -> Result<Self> {
        let base = Url::parse(base_url.trim()).map_err(|e| Error::Config {
            name: "MLFLOW_TRACKING_URI".into(),
            value: base_url.into(),
            reason: e.to_string(),
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::Config {
                name: "MLFLOW_TRACKING_URI".into(),
                value: base_url.into(),
                reason: "only http(s) tracking servers are supported".into(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(retry.connect_timeout)
            .user_agent(concat!("rps-mlflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::Client)?;
        let retry = RetryPolicy {
            max_attempts: retry.max_attempts.max(1),
            ..retry
        };
        Ok(MlflowClient {
            base,
            http,
            retry,
            auth: Arc::new(Auth::from_env()),
        })
    }

    /// A client from `MLFLOW_TRACKING_URI`, or `None` when it is unset or empty.
    pub fn from_env() -> Result<Option<Self>> {
        match env_nonempty("MLFLOW_TRACKING_URI") {
            Some(uri) => Ok(Some(Self::new(&uri)?)),
            None => Ok(None),
        }
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// The retry and timeout settings the client uses.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    // ----------------------------------------------------------------- transport

    fn url(&self, segments: &[&str]) -> Result<Url> {
        let mut u = self.base.clone();
        match u.path_segments_mut() {
            Ok(mut segs) => {
                segs.pop_if_empty();
                for s in segments {
                    segs.extend(s.split('/').filter(|p| !p.is_empty()));
                }
            }
            Err(()) => {
                return Err(Error::Config {
                    name: "MLFLOW_TRACKING_URI".into(),
                    value: self.base.to_string(),
                    reason: "not a base URL".into(),
                });
            }
        }
        Ok(u)
    }

    /// Sends `req`, retrying transient failures; returns the final status and body.
    async fn send(&self, req: Req<'_>) -> Result<(StatusCode, Bytes)> {
        let policy = self.retry.policy();
        let req = &req;
        let outcome = retry::retry_notify(
            &policy,
            |f: &SendFailure| matches!(f, SendFailure::Transient(_)),
            |f, r| {
                if let SendFailure::Transient(failure) = f {
                    tracing::warn!(
                        endpoint = req.endpoint,
                        attempt = r.attempt,
                        max_attempts = r.of,
                        retry_in_ms = r.delay.as_millis() as u64,
                        error = %failure,
                        "MLflow request failed; retrying"
                    );
                }
            },
            move |_| async move { self.send_once(req).await },
        )
        .await;
        match outcome {
            Ok(answer) => Ok(answer),
            Err(retry::Failure {
                error: SendFailure::Final(e),
                ..
            }) => Err(e),
            Err(retry::Failure {
                error: SendFailure::Transient(last),
                attempts,
                ..
            }) => Err(Error::RetriesExhausted {
                method: req.method.to_string(),
                url: req.url.to_string(),
                attempts,
                last,
            }),
        }
    }

    /// One attempt at `req`: any answer but 429 and 5xx is returned as it is.
    async fn send_once(
        &self,
        req: &Req<'_>,
    ) -> std::result::Result<(StatusCode, Bytes), SendFailure> {
        let mut rb = self
            .http
            .request(req.method.clone(), req.url.clone())
            .timeout(req.timeout);
        if !req.query.is_empty() {
            rb = rb.query(&req.query);
        }
        if let Some((body, content_type)) = &req.body {
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, *content_type)
                .body(body.clone());
        }
        rb = self.auth.apply(rb);
        match rb.send().await {
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Ok(body)
                        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS =>
                    {
                        Err(SendFailure::Transient(format!(
                            "HTTP {}: {}",
                            status.as_u16(),
                            truncate(&String::from_utf8_lossy(&body))
                        )))
                    }
                    Ok(body) => Ok((status, body)),
                    Err(e) => Err(SendFailure::Transient(format!(
                        "reading the response: {}",
                        chain(&e)
                    ))),
                }
            }
            Err(e) if e.is_builder() => Err(SendFailure::Final(Error::Client(e))),
            Err(e) => Err(SendFailure::Transient(chain(&e))),
        }
    }

    /// Calls a JSON endpoint under `/api/2.0/mlflow/` and decodes the answer.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        query: Vec<(&str, String)>,
        body: Option<serde_json::Value>,
    ) -> Result<T> {
        let url = self.url(&["api/2.0/mlflow", endpoint])?;
        let body = match body {
            Some(v) => {
                let bytes = serde_json::to_vec(&v).map_err(|source| Error::Decode {
                    endpoint: endpoint.into(),
                    source,
                    body: String::new(),
                })?;
                Some((Bytes::from(bytes), "application/json"))
            }
            None => None,
        };
        let (status, bytes) = self
            .send(Req {
                method,
                url,
                endpoint,
                query,
                body,
                timeout: self.retry.request_timeout,
            })
            .await?;
        if !status.is_success() {
            return Err(api_error(endpoint, status, &bytes));
        }
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map_err(|source| Error::Decode {
            endpoint: endpoint.into(),
            source,
            body: truncate(&String::from_utf8_lossy(&bytes)),
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        query: Vec<(&str, String)>,
    ) -> Result<T> {
        self.call(Method::GET, endpoint, query, None).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: serde_json::Value,
    ) -> Result<T> {
        self.call(Method::POST, endpoint, Vec::new(), Some(body))
            .await
    }

    // ----------------------------------------------------------------- experiments

    /// Creates an experiment and returns its id.
    pub async fn create_experiment(&self, name: &str) -> Result<String> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Resp {
            experiment_id: String,
        }
        let r: Resp = self
            .post("experiments/create", json!({ "name": name }))
            .await?;
        Ok(r.experiment_id)
    }

    /// The experiment named `name`, or `None` when there is none.
    pub async fn get_experiment_by_name(&self, name: &str) -> Result<Option<Experiment>> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Resp {
            experiment: Experiment,
        }
        match self
            .get::<Resp>(
                "experiments/get-by-name",
                vec![("experiment_name", name.to_string())],
            )
            .await
        {
            Ok(r) => Ok(Some(r.experiment)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The id of the active experiment `name`, creating it if needed (a concurrent creator
    /// is tolerated). A deleted experiment of that name is an error: MLflow keeps the name.
    pub async fn get_or_create_experiment(&self, name: &str) -> Result<String> {
        if let Some(exp) = self.get_experiment_by_name(name).await? {
            return active_experiment(exp);
        }
        match self.create_experiment(name).await {
            Ok(id) => Ok(id),
            Err(e) if e.is_already_exists() => match self.get_experiment_by_name(name).await? {
                Some(exp) => active_experiment(exp),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    // ----------------------------------------------------------------- runs

    /// Creates a run (status RUNNING). `start_time_ms` is epoch milliseconds; `user_id` is
    /// taken from `$USER` (MLflow stores an empty one otherwise).
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        tags: &[Tag],
        start_time_ms: i64,
    ) -> Result<Run> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Resp {
            run: Run,
        }
        let tags = checked_tags(tags)?;
        let mut body = json!({
            "experiment_id": experiment_id,
            "start_time": start_time_ms,
            "user_id": current_user(),
            "tags": tags,
        });
        if !run_name.is_empty() {
            body["run_name"] = json!(run_name);
        }
        let r: Resp = self.post("runs/create", body).await?;
        Ok(r.run)
    }

    /// Sets a run's status (and end time, for terminal states).
    pub async fn update_run(
        &self,
        run_id: &str,
        status: RunStatus,
        end_time_ms: Option<i64>,
    ) -> Result<RunInfo> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Resp {
            run_info: RunInfo,
        }
        let mut body = json!({ "run_id": run_id, "status": status.as_str() });
        if let Some(t) = end_time_ms {
            body["end_time"] = json!(t);
        }
        let r: Resp = self.post("runs/update", body).await?;
        Ok(r.run_info)
    }

    /// The run with its info, latest metrics, params, tags and inputs (`runs/get`).
    pub async fn get_run(&self, run_id: &str) -> Result<Run> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Resp {
            run: Run,
        }
        let r: Resp = self
            .get("runs/get", vec![("run_id", run_id.to_string())])
            .await?;
        Ok(r.run)
    }

    /// Every run of the experiments `experiment_ids` that matches `filter` (MLflow's
    /// search syntax, e.g. `attributes.status = 'RUNNING'`), all pages (`runs/search`).
    pub async fn search_runs(&self, experiment_ids: &[String], filter: &str) -> Result<Vec<Run>> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Resp {
            runs: Vec<Run>,
            next_page_token: Option<String>,
        }
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({
                "experiment_ids": experiment_ids,
                "filter": filter,
                "max_results": 1000,
            });
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let r: Resp = self.post("runs/search", body).await?;
            out.extend(r.runs);
            match r.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// Sets (or overwrites) one run tag (`runs/set-tag`); an over-long value is truncated
    /// with a warning, as in [`MlflowClient::log_batch`].
    pub async fn set_tag(&self, run_id: &str, key: &str, value: &str) -> Result<()> {
        let tag = checked_tags(&[Tag::new(key, value)])?
            .pop()
            .ok_or_else(|| Error::invalid("tag", "nothing to set"))?;
        let _: serde_json::Value = self
            .post(
                "runs/set-tag",
                json!({ "run_id": run_id, "key": tag.key, "value": tag.value }),
            )
            .await?;
        Ok(())
    }

    /// Logs metrics, params and tags, split into as many log-batch calls as the server's
    /// limits require. Everything is checked before the first call, so a bad value (a NaN
    /// metric, an over-long param) sends nothing. Returns the number of calls made.
    pub async fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> Result<usize> {
        check_metrics(metrics)?;
        let params = checked_params(params)?;
        let tags = checked_tags(tags)?;
        let chunks = plan_batches(metrics.len(), params.len(), tags.len());
        for c in &chunks {
            let _: serde_json::Value = self
                .post(
                    "runs/log-batch",
                    json!({
                        "run_id": run_id,
                        "metrics": &metrics[c.metrics.clone()],
                        "params": &params[c.params.clone()],
                        "tags": &tags[c.tags.clone()],
                    }),
                )
                .await?;
        }
        Ok(chunks.len())
    }

    /// Logs dataset inputs. Digests longer than 36 characters are refused (the server 400s).
    pub async fn log_inputs(&self, run_id: &str, datasets: &[DatasetInput]) -> Result<()> {
        for d in datasets {
            if d.dataset.name.is_empty() {
                return Err(Error::invalid("dataset name", "must not be empty"));
            }
            let n = d.dataset.digest.chars().count();
            if n == 0 || n > MAX_DIGEST_LEN {
                return Err(Error::invalid(
                    format!("digest of dataset '{}'", d.dataset.name),
                    format!(
                        "'{}' has {n} characters; MLflow accepts 1..={MAX_DIGEST_LEN}",
                        d.dataset.digest
                    ),
                ));
            }
        }
        let _: serde_json::Value = self
            .post(
                "runs/log-inputs",
                json!({ "run_id": run_id, "datasets": datasets }),
            )
            .await?;
        Ok(())
    }

    /// The full history of metric `key` (all pages). Empty for an unknown run or key (that
    /// is what the server answers).
    pub async fn get_metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Resp {
            metrics: Vec<Metric>,
            next_page_token: Option<String>,
        }
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![
                ("run_id", run_id.to_string()),
                ("metric_key", key.to_string()),
                ("max_results", "1000".to_string()),
            ];
            if let Some(t) = &token {
                q.push(("page_token", t.clone()));
            }
            let r: Resp = self.get("metrics/get-history", q).await?;
            out.extend(r.metrics);
            match r.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    // ----------------------------------------------------------------- artifacts

    /// Uploads `bytes` as `rel_path` under the artifact root `artifact_uri` (a run's
    /// `info.artifact_uri`) through the artifact proxy.
    pub async fn upload_artifact_bytes(
        &self,
        artifact_uri: &str,
        rel_path: &str,
        bytes: Bytes,
    ) -> Result<()> {
        let root = proxy_path(artifact_uri)?;
        let rel = clean_rel_path(rel_path)?;
        if rel.is_empty() {
            return Err(Error::invalid(
                "artifact path",
                "a file upload needs a file name",
            ));
        }
        let url = self.url(&["api/2.0/mlflow-artifacts/artifacts", &root, &rel])?;
        let (status, body) = self
            .send(Req {
                method: Method::PUT,
                url,
                endpoint: "mlflow-artifacts/artifacts (PUT)",
                query: Vec::new(),
                body: Some((bytes, "application/octet-stream")),
                timeout: self.retry.transfer_timeout,
            })
            .await?;
        // The proxy answers 200 with an EMPTY body: nothing to decode.
        if !status.is_success() {
            return Err(api_error("mlflow-artifacts/artifacts (PUT)", status, &body));
        }
        Ok(())
    }

    /// Uploads a local file or directory under the artifact root `artifact_uri`, like
    /// MLflow's Python `log_artifact`/`log_artifacts`: a file goes to
    /// `<artifact_path>/<file name>`, a directory's *contents* go under `<artifact_path>/`
    /// (recursively). `artifact_path` may be empty (the root). Returns the uploaded paths,
    /// relative to the artifact root.
    pub async fn log_artifact(
        &self,
        artifact_uri: &str,
        local: &Path,
        artifact_path: &str,
    ) -> Result<Vec<String>> {
        let dest = clean_rel_path(artifact_path)?;
        let meta = std::fs::metadata(local).map_err(|e| Error::io("reading", local, e))?;
        let files: Vec<(PathBuf, String)> = if meta.is_dir() {
            walk_files(local)?
                .into_iter()
                .map(|(p, rel)| (p, join_rel(&dest, &rel)))
                .collect()
        } else {
            let name = local
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| {
                    Error::invalid(
                        "artifact file",
                        format!("{} has no file name", local.display()),
                    )
                })?;
            vec![(local.to_path_buf(), join_rel(&dest, &name))]
        };
        let mut done = Vec::with_capacity(files.len());
        for (path, rel) in files {
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| Error::io("reading", &path, e))?;
            tracing::debug!(file = %path.display(), artifact = %rel, bytes = bytes.len(), "uploading artifact");
            self.upload_artifact_bytes(artifact_uri, &rel, Bytes::from(bytes))
                .await?;
            done.push(rel);
        }
        Ok(done)
    }

    /// Lists a run's artifacts under `path` (root when `None`) through the tracking API.
    /// Returned paths are relative to the run's artifact root.
    pub async fn list_artifacts(&self, run_id: &str, path: Option<&str>) -> Result<Vec<FileInfo>> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Resp {
            files: Vec<FileInfo>,
            next_page_token: Option<String>,
        }
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![("run_id", run_id.to_string())];
            if let Some(p) = path.filter(|p| !p.is_empty()) {
                q.push(("path", clean_rel_path(p)?));
            }
            if let Some(t) = &token {
                q.push(("page_token", t.clone()));
            }
            let r: Resp = self.get("artifacts/list", q).await?;
            out.extend(r.files);
            match r.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// Downloads one artifact file (`rel_path` under the artifact root `artifact_uri`).
    pub async fn download_artifact_bytes(
        &self,
        artifact_uri: &str,
        rel_path: &str,
    ) -> Result<Bytes> {
        let root = proxy_path(artifact_uri)?;
        let rel = clean_rel_path(rel_path)?;
        let url = self.url(&["api/2.0/mlflow-artifacts/artifacts", &root, &rel])?;
        let endpoint = "mlflow-artifacts/artifacts (GET)";
        let (status, body) = self
            .send(Req {
                method: Method::GET,
                url,
                endpoint,
                query: Vec::new(),
                body: None,
                timeout: self.retry.transfer_timeout,
            })
            .await?;
        if !status.is_success() {
            let e = api_error(endpoint, status, &body);
            return Err(if e.is_not_found() {
                Error::NotFound {
                    what: format!("artifact '{rel}' under {artifact_uri}"),
                }
            } else {
                e
            });
        }
        Ok(body)
    }

    /// Lists the directory at `artifact_uri` through the artifact proxy (names relative to it).
    async fn list_proxy(&self, proxy_dir: &str) -> Result<Vec<FileInfo>> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Resp {
            files: Vec<FileInfo>,
        }
        let url = self.url(&["api/2.0/mlflow-artifacts/artifacts"])?;
        let endpoint = "mlflow-artifacts/artifacts (list)";
        let (status, body) = self
            .send(Req {
                method: Method::GET,
                url,
                endpoint,
                query: vec![("path", proxy_dir.to_string())],
                body: None,
                timeout: self.retry.request_timeout,
            })
            .await?;
        if !status.is_success() {
            return Err(api_error(endpoint, status, &body));
        }
        let text: &[u8] = if body.is_empty() { b"{}" } else { &body };
        let r: Resp = serde_json::from_slice(text).map_err(|source| Error::Decode {
            endpoint: endpoint.into(),
            source,
            body: truncate(&String::from_utf8_lossy(&body)),
        })?;
        Ok(r.files)
    }

    /// Downloads everything under the artifact location `uri` (an `mlflow-artifacts:` URI
    /// such as a model version's source, or `runs:/<run_id>/<path>`) into the directory
    /// `dest`, recreating sub-directories. A URI naming a single file downloads that file
    /// into `dest`. Returns the written files, relative to `dest`.
    pub async fn download_artifacts(&self, uri: &str, dest: &Path) -> Result<Vec<PathBuf>> {
        let uri = self.resolve_runs_uri(uri).await?;
        let root = proxy_path(&uri)?;
        let mut files = Vec::new();
        let mut dirs = vec![String::new()];
        while let Some(dir) = dirs.pop() {
            for f in self.list_proxy(&join_rel(&root, &dir)).await? {
                // The proxy returns names relative to the listed directory.
                let name = f.path.rsplit('/').next().unwrap_or(&f.path).to_string();
                let rel = clean_rel_path(&join_rel(&dir, &name))?;
                if f.is_dir {
                    dirs.push(rel);
                } else {
                    files.push(rel);
                }
            }
        }
        tokio::fs::create_dir_all(dest)
            .await
            .map_err(|e| Error::io("creating", dest, e))?;
        if files.is_empty() {
            // Not a directory (or an empty one): try it as a single file.
            let (parent, name) = match root.rsplit_once('/') {
                Some((p, n)) => (format!("mlflow-artifacts:/{p}"), n.to_string()),
                None => {
                    return Err(Error::NotFound {
                        what: format!("artifacts under {uri}"),
                    });
                }
            };
            let bytes = self
                .download_artifact_bytes(&parent, &name)
                .await
                .map_err(|e| {
                    if e.is_not_found() {
                        Error::NotFound {
                            what: format!("artifacts under {uri}"),
                        }
                    } else {
                        e
                    }
                })?;
            write_file(&dest.join(&name), &bytes).await?;
            return Ok(vec![PathBuf::from(name)]);
        }
        files.sort();
        let mut out = Vec::with_capacity(files.len());
        for rel in files {
            let bytes = self.download_artifact_bytes(&uri, &rel).await?;
            let local = rel_to_path(&rel);
            write_file(&dest.join(&local), &bytes).await?;
            out.push(local);
        }
        Ok(out)
    }

    /// Downloads a run's artifacts under `path` (everything when empty) into `dest`.
    pub async fn download_run_artifacts(
        &self,
        run_id: &str,
        path: &str,
        dest: &Path,
    ) -> Result<Vec<PathBuf>> {
        let run = self.get_run(run_id).await?;
        let rel = clean_rel_path(path)?;
        let uri = join_rel(run.info.artifact_uri.trim_end_matches('/'), &rel);
        self.download_artifacts(&uri, dest).await
    }

    /// Turns `runs:/<run_id>/<path>` into the run's `mlflow-artifacts:` location.
    async fn resolve_runs_uri(&self, uri: &str) -> Result<String> {
        let Some(rest) = uri.strip_prefix("runs:/") else {
            return Ok(uri.to_string());
        };
        let rest = rest.trim_start_matches('/');
        let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
        let run = self.get_run(run_id).await?;
        Ok(join_rel(
            run.info.artifact_uri.trim_end_matches('/'),
            &clean_rel_path(path)?,
        ))
    }

    // ----------------------------------------------------------------- model registry

    /// Creates a registered model; an existing one of that name is fine.
    pub async fn create_registered_model(&self, name: &str) -> Result<()> {
        match self
            .post::<serde_json::Value>("registered-models/create", json!({ "name": name }))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_already_exists() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The registered model with its aliases (`registered-models/get`); an unknown model is
    /// a 404 error.
    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Resp {
            registered_model: RegisteredModel,
        }
        let r: Resp = self
            .get("registered-models/get", vec![("name", name.to_string())])
            .await?;
        Ok(r.registered_model)
    }

    /// Creates a model version. `source` must be inside the artifacts of `run_id` (the
    /// server checks it); use `run.info.artifact_uri + "/" + artifact_path`.
    pub async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
    ) -> Result<ModelVersionInfo> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Resp {
            model_version: ModelVersionInfo,
        }
        let r: Resp = self
            .post(
                "model-versions/create",
                json!({ "name": name, "source": source, "run_id": run_id }),
            )
            .await?;
        Ok(r.model_version)
    }

    /// Version `version` of model `name`, with its aliases (`model-versions/get`).
    pub async fn get_model_version(&self, name: &str, version: &str) -> Result<ModelVersionInfo> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Resp {
            model_version: ModelVersionInfo,
        }
        let r: Resp = self
            .get(
                "model-versions/get",
                vec![("name", name.to_string()), ("version", version.to_string())],
            )
            .await?;
        Ok(r.model_version)
    }

    /// Points `alias` at `version` (moving it if it exists).
    pub async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        // The version must be a JSON string: a number is a 400.
        let _: serde_json::Value = self
            .post(
                "registered-models/alias",
                json!({ "name": name, "alias": alias, "version": version }),
            )
            .await?;
        Ok(())
    }

    /// The version `alias` points at, or `None` when the alias does not exist (the server
    /// answers 400 INVALID_PARAMETER_VALUE "... not found" for that). An unknown model is
    /// still an error (`RESOURCE_DOES_NOT_EXIST`).
    pub async fn get_alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersionInfo>> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Resp {
            model_version: ModelVersionInfo,
        }
        match self
            .get::<Resp>(
                "registered-models/alias",
                vec![("name", name.to_string()), ("alias", alias.to_string())],
            )
            .await
        {
            Ok(r) => Ok(Some(r.model_version)),
            Err(Error::Api {
                error_code,
                message,
                ..
            }) if error_code == "INVALID_PARAMETER_VALUE" && message.contains("not found") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes an alias (a missing alias is fine). The server reads the JSON body, not the
    /// query string.
    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        let _: serde_json::Value = self
            .call(
                Method::DELETE,
                "registered-models/alias",
                Vec::new(),
                Some(json!({ "name": name, "alias": alias })),
            )
            .await?;
        Ok(())
    }
}

fn active_experiment(exp: Experiment) -> Result<String> {
    if exp.lifecycle_stage == "deleted" {
        return Err(Error::invalid(
            format!("experiment '{}'", exp.name),
            format!(
                "it is deleted (id {}); restore it in MLflow or use another name",
                exp.experiment_id
            ),
        ));
    }
    Ok(exp.experiment_id)
}

fn current_user() -> String {
    ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|v| env_nonempty(v))
        .unwrap_or_else(|| "rps".to_string())
}

/// Maps a non-success answer: JSON with `error_code` -> [`Error::Api`], anything else ->
/// [`Error::Http`] with the raw text.
fn api_error(endpoint: &str, status: StatusCode, body: &[u8]) -> Error {
    #[derive(Deserialize)]
    struct ApiErr {
        error_code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<ApiErr>(body) {
        Ok(e) => Error::Api {
            endpoint: endpoint.into(),
            status: status.as_u16(),
            error_code: e.error_code,
            message: e.message,
        },
        Err(_) => Error::Http {
            endpoint: endpoint.into(),
            status: status.as_u16(),
            body: truncate(&String::from_utf8_lossy(body)),
        },
    }
}

/// Upstream error bodies are clipped to this many bytes in errors and logs.
const MAX_BODY_ECHO: usize = 2000;

fn truncate(s: &str) -> String {
    rps_core::redact::clip(s, MAX_BODY_ECHO)
}

// --------------------------------------------------------------------- checks and batching

/// Index ranges of one log-batch call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchChunk {
    /// Indices of the metrics this call sends.
    pub metrics: std::ops::Range<usize>,
    /// Indices of the params this call sends.
    pub params: std::ops::Range<usize>,
    /// Indices of the tags this call sends.
    pub tags: std::ops::Range<usize>,
}

/// Splits `m` metrics, `p` params and `t` tags into log-batch calls that respect the
/// server's limits (≤1000 metrics, ≤100 params, ≤100 tags, ≤1000 in total), preserving
/// order. No calls for nothing.
pub fn plan_batches(m: usize, p: usize, t: usize) -> Vec<BatchChunk> {
    let (mut mi, mut pi, mut ti) = (0, 0, 0);
    let mut out = Vec::new();
    while mi < m || pi < p || ti < t {
        let np = (p - pi).min(MAX_BATCH_PARAMS);
        let nt = (t - ti).min(MAX_BATCH_TAGS);
        let nm = (m - mi)
            .min(MAX_BATCH_METRICS)
            .min(MAX_BATCH_TOTAL - np - nt);
        out.push(BatchChunk {
            metrics: mi..mi + nm,
            params: pi..pi + np,
            tags: ti..ti + nt,
        });
        mi += nm;
        pi += np;
        ti += nt;
    }
    out
}

/// Refuses non-finite values and bad keys before anything is sent.
pub fn check_metrics(metrics: &[Metric]) -> Result<()> {
    for m in metrics {
        check_key("metric", &m.key)?;
        if !m.value.is_finite() {
            return Err(Error::NonFiniteMetric {
                key: m.key.clone(),
                step: m.step,
                value: m.value,
            });
        }
    }
    Ok(())
}

/// Checks keys and value lengths, and drops exact duplicates (the server 400s on a key
/// repeated within one batch).
pub(crate) fn checked_params(params: &[Param]) -> Result<Vec<Param>> {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    let mut out = Vec::with_capacity(params.len());
    for p in params {
        check_key("param", &p.key)?;
        let n = p.value.chars().count();
        if n > MAX_PARAM_VALUE_LEN {
            return Err(Error::invalid(
                format!("param '{}'", p.key),
                format!(
                    "value has {n} characters; MLflow would silently truncate it to {MAX_PARAM_VALUE_LEN}"
                ),
            ));
        }
        match seen.get(p.key.as_str()) {
            Some(v) if *v == p.value => continue,
            Some(v) => {
                return Err(Error::invalid(
                    format!("param '{}'", p.key),
                    format!(
                        "given twice with different values ('{v}' and '{}')",
                        p.value
                    ),
                ));
            }
            None => {
                seen.insert(&p.key, &p.value);
                out.push(p.clone());
            }
        }
    }
    Ok(out)
}

/// Checks keys; truncates over-long values visibly (a warning) instead of letting the
/// server do it silently: tags describe a run (e.g. an error message) and must not make
/// marking it FAILED fail.
fn checked_tags(tags: &[Tag]) -> Result<Vec<Tag>> {
    let mut out: Vec<Tag> = Vec::with_capacity(tags.len());
    for t in tags {
        check_key("tag", &t.key)?;
        let mut t = t.clone();
        if t.value.chars().count() > MAX_TAG_VALUE_LEN {
            tracing::warn!(key = %t.key, "tag value longer than {MAX_TAG_VALUE_LEN} characters; truncating");
            t.value = t.value.chars().take(MAX_TAG_VALUE_LEN).collect();
        }
        // Later values win, as they would on the server; keep one per key per batch.
        if let Some(prev) = out.iter_mut().find(|o| o.key == t.key) {
            *prev = t;
        } else {
            out.push(t);
        }
    }
    Ok(out)
}

/// MLflow keys: 1..=250 characters of alphanumerics, `_ - . space : /`, not path-escaping.
pub fn check_key(kind: &str, key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        Some("must not be empty".to_string())
    } else if key.chars().count() > MAX_KEY_LEN {
        Some(format!("longer than {MAX_KEY_LEN} characters"))
    } else if let Some(c) = key
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | ':' | '/')))
    {
        Some(format!(
            "contains '{c}'; allowed are alphanumerics and _ - . space : /"
        ))
    } else if key.split('/').any(|s| s == "..") || key.starts_with('/') {
        Some("must not be a path escaping upwards or absolute".to_string())
    } else {
        None
    };
    match reason {
        Some(r) => Err(Error::invalid(format!("{kind} key '{key}'"), r)),
        None => Ok(()),
    }
}

// --------------------------------------------------------------------- artifact paths

/// The artifact-proxy path of an `mlflow-artifacts:` URI: strip the scheme, any
/// `//authority` and the leading `/` (`mlflow-artifacts:/1/<run>/artifacts` ->
/// `1/<run>/artifacts`). Other schemes are unsupported (the server must serve artifacts).
pub fn proxy_path(artifact_uri: &str) -> Result<String> {
    let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
        return Err(Error::UnsupportedArtifactUri {
            uri: artifact_uri.into(),
            reason: "only the mlflow-artifacts: proxy is supported (start the server with artifact serving, \
                     the default)"
                .into(),
        });
    };
    let rest = match rest.strip_prefix("//") {
        Some(with_authority) => with_authority
            .find('/')
            .map_or("", |i| &with_authority[i..]),
        None => rest,
    };
    let p = clean_rel_path(rest.trim_start_matches('/'))?;
    Ok(p)
}

/// Normalises a relative artifact path: `/`-separated, no empty or `.` segments, no `..`.
pub fn clean_rel_path(p: &str) -> Result<String> {
    let mut parts = Vec::new();
    for seg in p.split(['/', '\\']) {
        match seg {
            "" | "." => {}
            ".." => {
                return Err(Error::invalid(
                    "artifact path",
                    format!("'{p}' escapes its root with '..'"),
                ));
            }
            s => parts.push(s),
        }
    }
    Ok(parts.join("/"))
}

fn join_rel(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

fn rel_to_path(rel: &str) -> PathBuf {
    rel.split('/').collect()
}

/// All regular files under `dir` (following symlinks), with their `/`-joined relative
/// paths, sorted so uploads are deterministic.
pub(crate) fn walk_files(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, rel)) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| Error::io("listing", &d, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("listing", &d, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let r = join_rel(&rel, &name);
            let meta = std::fs::metadata(&path).map_err(|e| Error::io("reading", &path, e))?;
            if meta.is_dir() {
                stack.push((path, r));
            } else {
                out.push((path, r));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

async fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| Error::io("creating", parent, e))?;
    }
    tokio::fs::write(path, bytes)
        .await
        .map_err(|e| Error::io("writing", path, e))
}

/// Milliseconds since the Unix epoch (MLflow's timestamp unit).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_every_log_batch_limit_and_keep_everything_in_order() {
        for (m, p, t) in [
            (0, 0, 0),
            (1, 0, 0),
            (1000, 100, 100),
            (2501, 250, 3),
            (5, 0, 230),
            (999, 1, 0),
        ] {
            let chunks = plan_batches(m, p, t);
            let (mut mi, mut pi, mut ti) = (0, 0, 0);
            for c in &chunks {
                assert!(c.metrics.len() <= MAX_BATCH_METRICS);
                assert!(c.params.len() <= MAX_BATCH_PARAMS);
                assert!(c.tags.len() <= MAX_BATCH_TAGS);
                assert!(c.metrics.len() + c.params.len() + c.tags.len() <= MAX_BATCH_TOTAL);
                assert!(!(c.metrics.is_empty() && c.params.is_empty() && c.tags.is_empty()));
                assert_eq!(
                    (c.metrics.start, c.params.start, c.tags.start),
                    (mi, pi, ti)
                );
                (mi, pi, ti) = (c.metrics.end, c.params.end, c.tags.end);
            }
            assert_eq!((mi, pi, ti), (m, p, t));
        }
        assert!(plan_batches(0, 0, 0).is_empty());
        assert_eq!(plan_batches(1000, 100, 100).len(), 2);
    }

    #[test]
    fn a_nan_or_infinite_metric_is_refused_with_its_key_and_step() {
        let e = check_metrics(&[
            Metric::new("ok", 1.0, 0, 1),
            Metric::new("loss", f64::NAN, 7, 1),
        ])
        .unwrap_err();
        assert!(
            matches!(&e, Error::NonFiniteMetric { key, step: 7, .. } if key == "loss"),
            "{e}"
        );
        assert!(check_metrics(&[Metric::new("x", f64::NEG_INFINITY, 0, 1)]).is_err());
    }

    #[test]
    fn the_proxy_path_comes_from_the_artifact_uri_with_or_without_authority() {
        assert_eq!(
            proxy_path("mlflow-artifacts:/1/abc/artifacts").unwrap(),
            "1/abc/artifacts"
        );
        assert_eq!(
            proxy_path("mlflow-artifacts://host:5000/1/abc/artifacts/model").unwrap(),
            "1/abc/artifacts/model"
        );
        assert!(matches!(
            proxy_path("s3://bucket/1/abc").unwrap_err(),
            Error::UnsupportedArtifactUri { .. }
        ));
        assert!(proxy_path("mlflow-artifacts:/1/../2").is_err());
    }

    #[test]
    fn relative_artifact_paths_are_normalised_and_may_not_escape() {
        assert_eq!(
            clean_rel_path("/model//sub/./a.txt").unwrap(),
            "model/sub/a.txt"
        );
        assert_eq!(clean_rel_path("").unwrap(), "");
        assert!(clean_rel_path("model/../../etc").is_err());
    }

    #[test]
    fn keys_follow_mlflow_rules() {
        assert!(check_key("metric", "val/rmse usd:1h-x_y.z").is_ok());
        assert!(check_key("metric", "").is_err());
        assert!(check_key("metric", "a=b").is_err());
        assert!(check_key("metric", "../x").is_err());
        assert!(check_key("metric", &"k".repeat(251)).is_err());
    }

    #[test]
    fn identical_duplicate_params_collapse_and_conflicting_ones_are_refused() {
        let ps = checked_params(&[Param::new("lr", "0.1"), Param::new("lr", "0.1")]).unwrap();
        assert_eq!(ps.len(), 1);
        assert!(checked_params(&[Param::new("lr", "0.1"), Param::new("lr", "0.2")]).is_err());
        assert!(checked_params(&[Param::new("long", "x".repeat(6001))]).is_err());
    }

    #[test]
    fn backoff_doubles_is_capped_and_jitters_within_half() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(16),
            ..RetryPolicy::default()
        };
        for (retry, full) in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 16), (40, 16)] {
            let d = p.backoff(retry);
            let full = Duration::from_secs(full);
            assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?}");
        }
    }

    #[test]
    fn a_non_http_tracking_uri_is_a_configuration_error() {
        assert!(matches!(
            MlflowClient::with_retry("file:./mlruns", RetryPolicy::default()),
            Err(Error::Config { .. })
        ));
        assert!(MlflowClient::with_retry("http://127.0.0.1:5055/", RetryPolicy::default()).is_ok());
    }

    #[test]
    fn api_urls_keep_a_base_path_prefix_and_encode_segments() {
        let c = MlflowClient::with_retry("http://h:1/mlflow/", RetryPolicy::default()).unwrap();
        let u = c
            .url(&[
                "api/2.0/mlflow-artifacts/artifacts",
                "1/r/artifacts",
                "a b.txt",
            ])
            .unwrap();
        assert_eq!(
            u.as_str(),
            "http://h:1/mlflow/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/a%20b.txt"
        );
    }

    #[test]
    fn a_non_json_error_body_is_kept_as_raw_text() {
        let e = api_error("x", StatusCode::NOT_FOUND, b"<html>nope</html>");
        assert!(matches!(&e, Error::Http { status: 404, body, .. } if body == "<html>nope</html>"));
        let e = api_error(
            "x",
            StatusCode::BAD_REQUEST,
            br#"{"error_code":"RESOURCE_ALREADY_EXISTS","message":"m"}"#,
        );
        assert!(e.is_already_exists());
    }
}
