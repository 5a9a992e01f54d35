//! Test fixtures: the shared real bars, a model package trained on them (once per test
//! binary), and `spawn_app()` — the real server on port 0 with an HTTP client.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rps_core::Bar;
use rps_core::time::HOUR_MS;
use rps_serve::{AppState, Application, ModelSpec, ServeConfig, Settings};
use rps_testkit::model::{FixtureModel, Spec};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const COIN: &str = "BTC";
pub const MODEL_NAME: &str = "rps-test-forecaster";
/// The `/feedback` token of test servers ([`TestApp::feedback`] sends it).
pub const FEEDBACK_TOKEN: &str = "test-feedback-token";

/// The real-data fixture's bars (BTC/USD hourly, Bitstamp), ascending.
pub fn bars() -> &'static [Bar] {
    rps_testkit::fixture::bars()
}

/// Index of the first bar at or after `ts`.
pub fn index_at(ts: i64) -> usize {
    bars().partition_point(|b| b.ts < ts)
}

pub use rps_testkit::model::TRAIN_START;

/// The fixture package (rps-testkit's, trained once per test binary).
fn fixture() -> &'static FixtureModel {
    rps_testkit::model::fixture(&Spec {
        label: "rps-serve",
        model_name: MODEL_NAME,
        tmp_dir: env!("CARGO_TARGET_TMPDIR"),
    })
}

/// A model package trained on the shared data (once per test binary; later tests copy it).
pub fn package() -> &'static Path {
    &fixture().package
}

/// The bars whose feature rows the fixture's reference histograms were fitted on (the
/// training split, plus the feature warm-up before it).
pub fn reference_bars() -> &'static [Bar] {
    fixture().reference_bars()
}

/// Copies the fixture package to `dst` (a directory to create).
pub fn copy_package(dst: &Path) -> PathBuf {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(package()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    dst.to_path_buf()
}

/// Edits a package's metadata.json.
pub fn edit_metadata(dir: &Path, f: impl FnOnce(&mut Value)) {
    let p = dir.join("metadata.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Bars as the API's JSON (RFC 3339 times for even rows, milliseconds for odd ones: both
/// forms are accepted).
pub fn bars_json(bars: &[Bar]) -> Value {
    Value::Array(
        bars.iter()
            .enumerate()
            .map(|(i, b)| {
                let ts = if i % 2 == 0 {
                    json!(rps_core::time::fmt_ms(b.ts))
                } else {
                    json!(b.ts)
                };
                json!({"ts": ts, "open": b.open, "high": b.high, "low": b.low,
                       "close": b.close, "volume": b.volume})
            })
            .collect(),
    )
}

/// The `min_bars` bars ending at (and including) hour `newest`.
pub fn window_ending(newest: i64, len: usize) -> &'static [Bar] {
    let end = index_at(newest) + 1;
    &bars()[end - len..end]
}

/// A store directory holding raw bars of BTC.
pub async fn store_with(bars: &[Bar]) -> TempDir {
    let dir = TempDir::new().unwrap();
    let store = rps_core::Store::open(dir.path().to_str().unwrap()).unwrap();
    rps_core::parquet_io::write_bars(&store, COIN, bars)
        .await
        .unwrap();
    dir
}

/// A server whose store holds the fixture's bars up to hour `newest` (keep the directory).
pub async fn app_with_store_until(newest: i64, opts: Opts) -> (TestApp, TempDir) {
    let store = store_with(&bars()[..index_at(newest) + 1]).await;
    let app = spawn_app_with(Opts {
        store: Some(store.path().to_path_buf()),
        ..opts
    })
    .await;
    (app, store)
}

/// What a monitoring test compares against: a server with stored bars up to hour `newest`
/// (returned), a short drift window, its store forecast and its `/drift` before any client
/// sends bars.
pub struct Watched {
    pub app: TestApp,
    pub store: TempDir,
    pub newest: i64,
    pub store_forecast: Value,
    pub drift_before: Value,
}

/// [`Watched`], for tests that check client bars change no monitoring state.
pub async fn watched_app() -> Watched {
    let newest = hour_in_training(900);
    let mut opts = Opts::default();
    opts.settings.drift_min_rows = 24;
    opts.settings.drift_window = 200;
    let (app, store) = app_with_store_until(newest, opts).await;
    let store_forecast = app.store_forecast().await;
    let drift_before: Value = app.get("/drift").await.json().await.unwrap();
    Watched {
        app,
        store,
        newest,
        store_forecast,
        drift_before,
    }
}

/// Options for [`spawn_app_with`].
pub struct Opts {
    pub model: Option<ModelSpec>,
    pub store: Option<PathBuf>,
    pub settings: Settings,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            model: None,
            store: None,
            settings: Settings {
                model_poll_interval: Duration::from_millis(100),
                store_poll_interval: Duration::from_millis(200),
                feedback_token: rps_serve::state::Token::new(FEEDBACK_TOKEN),
                ..Settings::default()
            },
        }
    }
}

/// A running server.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    /// The package directory served (a private copy, in `--model-dir` mode).
    pub model_dir: Option<PathBuf>,
    /// Where registry downloads are staged.
    pub cache_dir: PathBuf,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dirs: Vec<TempDir>,
}

/// The server on port 0 with a private copy of the fixture package and an empty store.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Opts::default()).await
}

pub async fn spawn_app_with(opts: Opts) -> TestApp {
    let mut dirs = Vec::new();
    let (model, model_dir) = match opts.model {
        Some(m) => (m, None),
        None => {
            let d = TempDir::new().unwrap();
            let pkg = copy_package(&d.path().join("model"));
            dirs.push(d);
            (ModelSpec::Dir(pkg.clone()), Some(pkg))
        }
    };
    let store_dir = match opts.store {
        Some(s) => s,
        None => {
            let d = TempDir::new().unwrap();
            let p = d.path().to_path_buf();
            dirs.push(d);
            p
        }
    };
    let cache = TempDir::new().unwrap();
    let cache_dir = cache.path().to_path_buf();
    let config = ServeConfig {
        addr: "127.0.0.1:0".into(),
        store: store_dir.to_str().unwrap().into(),
        model,
        cache_dir: cache.path().to_path_buf(),
        settings: opts.settings,
    };
    dirs.push(cache);
    let app = Application::build(config).await.expect("the app builds");
    let base = format!("http://{}", app.addr());
    let state = app.state();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        base,
        client: reqwest::Client::new(),
        state,
        model_dir,
        cache_dir,
        _stop: tx,
        _dirs: dirs,
    }
}

impl TestApp {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        ctype: &str,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs /predict `{"coin": "BTC"}` (the store forecast) and returns its body.
    pub async fn store_forecast(&self) -> Value {
        self.post("/predict", &json!({"coin": COIN}))
            .await
            .json()
            .await
            .unwrap()
    }

    /// POSTs /feedback with the test token.
    pub async fn feedback(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/feedback", self.base))
            .bearer_auth(FEEDBACK_TOKEN)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Writes `bars` as the store's BTC history and waits until the server has read them
    /// (its store forecast is for the hour after the newest).
    pub async fn store_bars(&self, bars: &[Bar]) {
        rps_core::parquet_io::write_bars(self.state.store(), COIN, bars)
            .await
            .unwrap();
        self.state.refresh_store().await;
    }

    /// `min_bars` of the served model.
    pub fn min_bars(&self) -> usize {
        self.state.current_model().unwrap().forecaster.min_bars()
    }

    /// POSTs /predict with the window ending at hour `newest`; returns (status, body).
    pub async fn predict_at(&self, newest: i64) -> (u16, Value) {
        let w = window_ending(newest, self.min_bars());
        let r = self
            .post("/predict", &json!({"coin": COIN, "bars": bars_json(w)}))
            .await;
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// GET /metrics as text.
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }
}

/// The value of one sample line of the exposition, e.g. `rps_data_drift`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// Polls `cond` every 50 ms for up to `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// An hour inside the fixture's training period.
pub fn hour_in_training(k: i64) -> i64 {
    TRAIN_START + (200 + k) * HOUR_MS
}
