//! A real Prometheus (Debian's `prometheus` binary) scrapes the real server on loopback with
//! the repository's configuration and rules: after traffic, the query API returns the
//! server's series and every dashboard panel's query returns at least one series.

use std::path::Path;
use std::process::{Command, Stdio};

use rps_testkit::ChildGuard;

use rps_core::time::{HOUR_MS, fmt_ms};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::*;
use crate::monitoring::{dashboard_queries, monitoring_dir};

/// The Prometheus process started by this test (killed when dropped, on failure too).
struct Prometheus {
    _child: ChildGuard,
    base: String,
    _dir: TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts Prometheus with the repository's config, pointed at `target`, scraping every second.
fn start_prometheus(bin: &Path, target: &str) -> Prometheus {
    let dir = TempDir::new().unwrap();
    let config = std::fs::read_to_string(monitoring_dir().join("prometheus.yml"))
        .unwrap()
        .replace("\"rps-serve:8000\"", &format!("\"{target}\""))
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace("scrape_timeout: 5s", "scrape_timeout: 1s");
    assert!(config.contains(target), "the config's target was replaced");
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    std::fs::copy(
        monitoring_dir().join("alerts.yml"),
        dir.path().join("alerts.yml"),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = ChildGuard::spawn(
        Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log),
    );
    Prometheus {
        _child: child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

impl Prometheus {
    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    async fn query(&self, client: &reqwest::Client, expr: &str) -> Vec<Value> {
        let Ok(r) = client
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send()
            .await
        else {
            return vec![];
        };
        let v: Value = r.json().await.unwrap_or_default();
        assert_ne!(v["status"], "error", "query {expr} failed: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus (Debian package prometheus); scripts/test installs it"]
async fn prometheus_scrapes_the_server_and_every_dashboard_query_returns_series() {
    let bin = rps_testkit::service::tool("prometheus");

    // Arrange: a server with stored bars (newest-bar age, store forecast) and a low PSI floor.
    let newest = hour_in_training(700);
    let store = store_with(&bars()[..index_at(newest) + 1]).await;
    let mut opts = Opts {
        store: Some(store.path().to_path_buf()),
        ..Opts::default()
    };
    opts.settings.drift_min_rows = 50;
    let app = spawn_app_with(opts).await;
    let target = app.base.trim_start_matches("http://").to_string();
    let prom = start_prometheus(&bin, &target);
    let client = reqwest::Client::new();

    // Act: traffic of every kind.
    app.get("/health").await;
    app.post("/predict", &json!({"coin": COIN})).await;
    app.post("/predict", &json!({"coin": COIN})).await;
    // A client window (a forecast, no monitoring) and the realised close of the store's.
    let (status, f) = app.predict_at(hour_in_training(100)).await;
    assert_eq!(status, 200, "{f}");
    let actual = window_ending(newest + HOUR_MS, 1)[0].close;
    let r = app
        .feedback(&json!({"coin": COIN, "ts": fmt_ms(newest + HOUR_MS), "close": actual}))
        .await;
    assert_eq!(r.status(), 200);
    app.post("/predict", &json!({"coin": "DOGE"})).await; // a 404 for the error panel

    // Assert: Prometheus sees the target up and the server's series.
    let up = eventually(60, || async {
        prom.query(&client, r#"up{job="rps-serve"} == 1"#)
            .await
            .len()
            == 1
    })
    .await;
    assert!(
        up,
        "Prometheus never scraped the server; its log:\n{}",
        prom.log()
    );
    let series = prom.query(&client, "rps_http_requests_total").await;
    assert!(
        series
            .iter()
            .any(|s| s["metric"]["route"] == "/predict" && s["metric"]["job"] == "rps-serve"),
        "{series:?}"
    );
    let info = prom.query(&client, "rps_model_info").await;
    assert_eq!(
        info[0]["metric"]["version"],
        app.state.current_model().unwrap().version.as_str()
    );

    for (title, expr) in dashboard_queries() {
        let found = eventually(60, || async {
            !prom.query(&client, &expr).await.is_empty()
        })
        .await;
        assert!(
            found,
            "dashboard panel {title:?}: `{expr}` returned no series"
        );
    }

    // The alert rules loaded and evaluate without errors.
    let rules: Value = client
        .get(format!("{}/api/v1/rules", prom.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut loaded: Vec<&str> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    loaded.sort_unstable();
    // Every alert of the repository's rule file loaded, and nothing else.
    let file = std::fs::read_to_string(monitoring_dir().join("alerts.yml")).unwrap();
    let mut written: Vec<&str> = file
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    written.sort_unstable();
    assert!(written.len() >= 9, "{written:?}");
    assert_eq!(loaded, written);
    let healthy = eventually(30, || async {
        let v: Value = client
            .get(format!("{}/api/v1/rules", prom.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["data"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["health"] == "ok")
    })
    .await;
    assert!(healthy, "a rule failed to evaluate");
}
