//! Shared test helpers: stores (local and the S3 test server), the real binary, a local HTTP
//! server speaking the LiveCoinWatch JSON, and small CSV fixtures cut from the real-data fixture.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rps_core::Store;
use rps_core::storage::S3Options;
use rps_core::time::HOUR_MS;
use serde_json::{Value, json};

pub const KEY: &str = "test-key-not-secret";
/// 2024-03-01T00:00:00Z.
pub const D0: i64 = 1_709_251_200_000;
pub const DAY: i64 = 24 * HOUR_MS;
pub const TICK: i64 = 300_000;

// ---------------------------------------------------------------- the binary

/// What a run of the binary gave.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The `error: ...` line (the one-line error the binary prints last).
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .rfind(|l| l.starts_with("error: "))
            .unwrap_or("")
    }
}

/// Runs `rps-extract` with a clean environment plus `env`.
pub async fn extract(args: &[&str], env: &[(&str, &str)]) -> Out {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rps-extract"))
            .args(&args)
            .env_clear()
            .env("RUST_LOG", "info")
            .envs(env)
            .output()
            .expect("binary runs");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .expect("join")
}

// ---------------------------------------------------------------- stores

/// A store under test: a local temp directory or a fresh bucket on the S3 test server.
pub enum Backend {
    Local(tempfile::TempDir),
    S3 { endpoint: String, bucket: String },
}

impl Backend {
    pub fn local() -> Backend {
        Backend::Local(tempfile::tempdir().expect("tempdir"))
    }

    /// A fresh bucket on the S3 test server (the test fails when the server is not there).
    pub async fn s3(test: &str) -> Backend {
        let endpoint = rps_testkit::service::s3_endpoint();
        s3_credentials_env();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let mut bucket = format!(
            "rpsx-{}-{}-{}",
            test.replace('_', "-"),
            std::process::id(),
            nanos % 1_000_000_000
        );
        bucket.truncate(63);
        let bucket = bucket.trim_end_matches('-').to_ascii_lowercase();
        let resp = reqwest::Client::new()
            .put(format!("{}/{bucket}", endpoint.trim_end_matches('/')))
            .send()
            .await
            .expect("S3 test server answers");
        assert!(
            resp.status().is_success(),
            "create bucket {bucket}: {}",
            resp.status()
        );
        Backend::S3 { endpoint, bucket }
    }

    pub fn location(&self) -> String {
        match self {
            Backend::Local(d) => d.path().join("data").display().to_string(),
            Backend::S3 { bucket, .. } => format!("s3://{bucket}/rps"),
        }
    }

    pub fn s3_options(&self) -> S3Options {
        match self {
            Backend::Local(_) => S3Options::default(),
            Backend::S3 { endpoint, .. } => S3Options {
                endpoint: Some(endpoint.clone()),
            },
        }
    }

    pub fn store(&self) -> Store {
        Store::open_with(&self.location(), &self.s3_options()).expect("store opens")
    }

    /// Environment for the binary to reach this store.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Backend::Local(_) => vec![],
            Backend::S3 { endpoint, .. } => vec![
                ("AWS_ENDPOINT_URL", endpoint.clone()),
                ("AWS_ACCESS_KEY_ID", "rps-test".into()),
                ("AWS_SECRET_ACCESS_KEY", "rps-test-secret".into()),
                ("AWS_REGION", "us-east-1".into()),
            ],
        }
    }

    /// Every object of the store with its bytes, to prove a failed run changed nothing.
    pub async fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let store = self.store();
        let mut out = BTreeMap::new();
        for key in store.list("").await.expect("list") {
            let bytes = store
                .get(&key)
                .await
                .expect("get")
                .expect("listed object exists");
            out.insert(key, bytes.to_vec());
        }
        out
    }
}

/// The S3 client in this process reads its keys from `AWS_*` variables; moto accepts any.
/// Set once, before any S3 store is opened, and only where the developer has not set them.
#[allow(unsafe_code)]
fn s3_credentials_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "rps-test"),
            ("AWS_SECRET_ACCESS_KEY", "rps-test-secret"),
        ] {
            if std::env::var_os(k).is_none() {
                // SAFETY: std's environment functions hold a process-wide lock, and no code in
                // this test binary reads the environment through libc directly.
                unsafe { std::env::set_var(k, v) };
            }
        }
    });
}

/// Runs the binary against a backend, with extra env.
pub async fn extract_on(b: &Backend, args: &[&str], env: &[(&str, &str)]) -> Out {
    let loc = b.location();
    let mut all: Vec<&str> = vec!["--store", &loc];
    all.extend_from_slice(args);
    let benv = b.env();
    let mut e: Vec<(&str, &str)> = benv.iter().map(|(k, v)| (*k, v.as_str())).collect();
    e.extend_from_slice(env);
    extract(&all, &e).await
}

// ---------------------------------------------------------------- CSV fixtures

pub const CDD_HEADER: &str = "unix,Date,Symbol,Open,High,Low,Close,Volume BTC,Volume USD";

/// Writes lines as a file in `dir`.
pub fn write_lines(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").expect("write fixture");
    p
}

/// Bars without the ingestion time, for comparing runs.
pub fn strip(bars: &[rps_core::Bar]) -> Vec<rps_core::Bar> {
    bars.iter()
        .cloned()
        .map(|mut b| {
            b.ingested_at = 0;
            b
        })
        .collect()
}

// ---------------------------------------------------------------- fake LiveCoinWatch

/// A canned answer the fake returns (once) for `endpoint` before behaving normally.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub endpoint: &'static str,
    pub status: u16,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Scripted {
    pub fn new(endpoint: &'static str, status: u16, body: &str) -> Scripted {
        Scripted {
            endpoint,
            status,
            body: body.into(),
            headers: vec![],
        }
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub endpoint: String,
    pub body: Value,
    pub key: Option<String>,
    pub content_type: Option<String>,
}

/// How the fake behaves.
#[derive(Debug)]
pub struct FakeState {
    pub seen: Mutex<Vec<Seen>>,
    pub scripted: Mutex<VecDeque<Scripted>>,
    pub known: Vec<String>,
    pub credits_remaining: Mutex<u64>,
    /// Observations exist in [from, to) ...
    pub data: (i64, i64),
    /// ... except in these ranges (gaps).
    pub gaps: Vec<(i64, i64)>,
}

impl FakeState {
    pub fn history_requests(&self) -> Vec<(i64, i64)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.endpoint == "coins/single/history")
            .map(|s| {
                (
                    s.body["start"].as_i64().unwrap(),
                    s.body["end"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    pub fn count(&self, endpoint: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.endpoint == endpoint)
            .count()
    }
}

/// The deterministic price of the fake at time `t` (so any window agrees with any other).
pub fn fake_rate(t: i64) -> Option<f64> {
    let i = t / TICK;
    if i % 17 == 5 {
        return None; // LiveCoinWatch sometimes has null rates
    }
    Some(30_000.0 * (1.0 + 0.02 * ((t as f64) / 7_200_000.0).sin()) + (i % 11) as f64)
}

/// The observation times the fake has in `[start, end]` (the API's range is inclusive).
pub fn fake_times(state: &FakeState, start: i64, end: i64) -> Vec<i64> {
    let first = start.max(state.data.0).div_euclid(TICK) * TICK;
    let first = if first < start.max(state.data.0) {
        first + TICK
    } else {
        first
    };
    let mut out = Vec::new();
    let mut t = first;
    while t <= end && t < state.data.1 {
        if !state.gaps.iter().any(|&(a, b)| t >= a && t < b) {
            out.push(t);
        }
        t += TICK;
    }
    out
}

/// A running fake LiveCoinWatch API.
pub struct FakeApi {
    pub base: String,
    pub state: Arc<FakeState>,
}

impl FakeApi {
    pub async fn start(data: (i64, i64), gaps: Vec<(i64, i64)>) -> FakeApi {
        let state = Arc::new(FakeState {
            seen: Mutex::new(vec![]),
            scripted: Mutex::new(VecDeque::new()),
            known: vec!["BTC".into(), "ETH".into()],
            credits_remaining: Mutex::new(10_000),
            data,
            gaps,
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        // A trailing slash, like the real base URL.
        FakeApi {
            base: format!("http://{addr}/"),
            state,
        }
    }

    pub fn script(&self, s: Scripted) {
        self.state.scripted.lock().unwrap().push_back(s);
    }
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn handle(
    State(st): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let endpoint = uri.path().trim_start_matches('/').to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    st.seen.lock().unwrap().push(Seen {
        endpoint: endpoint.clone(),
        body: body.clone(),
        key: key.clone(),
        content_type,
    });
    if method != Method::POST {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": {"code": 405, "description": "POST only"}}),
        );
    }
    let canned = {
        let mut q = st.scripted.lock().unwrap();
        match q.front() {
            Some(s) if s.endpoint == endpoint => q.pop_front(),
            _ => None,
        }
    };
    if let Some(s) = canned {
        let mut resp = (StatusCode::from_u16(s.status).unwrap(), s.body).into_response();
        for (k, v) in s.headers {
            resp.headers_mut().insert(k, v.parse().unwrap());
        }
        return resp;
    }
    if key.as_deref() != Some(KEY) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": 401, "status": "Unauthorized", "description": "Unauthorized: invalid API key"}}),
        );
    }
    match endpoint.as_str() {
        "credits" => json_response(
            StatusCode::OK,
            json!({"dailyCreditsRemaining": *st.credits_remaining.lock().unwrap(), "dailyCreditsLimit": 10000}),
        ),
        "coins/map" => {
            let codes: Vec<String> = body["codes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let found: Vec<Value> = codes
                .iter()
                .filter(|c| st.known.contains(c))
                .map(|c| json!({"code": c, "rate": 30000.0, "volume": 2.0e10, "cap": 6.0e11, "liquidity": 1.0e9, "delta": {"hour": 1.0, "day": 1.01}}))
                .collect();
            json_response(StatusCode::OK, Value::Array(found))
        }
        "coins/single/history" => {
            let (Some(start), Some(end)) = (body["start"].as_i64(), body["end"].as_i64()) else {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": {"code": 400, "description": "start/end required"}}),
                );
            };
            if body["code"]
                .as_str()
                .is_none_or(|c| !st.known.iter().any(|k| k == c))
            {
                return json_response(
                    StatusCode::NOT_FOUND,
                    json!({"error": {"code": 404, "description": "coin not found"}}),
                );
            }
            let history: Vec<Value> = fake_times(&st, start, end)
                .into_iter()
                .map(|t| {
                    let rate = fake_rate(t);
                    json!({"date": t, "rate": rate, "volume": 2.0e10 + (t / TICK % 100) as f64, "cap": rate.map(|r| r * 19.6e6)})
                })
                .collect();
            json_response(StatusCode::OK, json!({"history": history}))
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": {"code": 404, "description": "no such endpoint"}}),
        ),
    }
}

/// The bar the fake's observations give for the hour at `h` (what resampling must produce).
pub fn expected_bar(state: &FakeState, h: i64) -> Option<(f64, f64, f64, f64, u32)> {
    let rates: Vec<f64> = fake_times(state, h, h + HOUR_MS - 1)
        .into_iter()
        .filter_map(fake_rate)
        .collect();
    if rates.is_empty() {
        return None;
    }
    let hi = rates.iter().cloned().fold(f64::MIN, f64::max);
    let lo = rates.iter().cloned().fold(f64::MAX, f64::min);
    Some((rates[0], hi, lo, *rates.last().unwrap(), rates.len() as u32))
}
