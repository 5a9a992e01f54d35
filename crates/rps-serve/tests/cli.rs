//! The `rps-serve` binary: the start-up message of `serve`, shutdown, and following the
//! registry alias (the drift check the DAG runs is `rps-monitor drift`, tested there).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use rps_testkit::ChildGuard;
use serde_json::Value;
use tempfile::TempDir;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_rps-serve");

#[test]
fn serve_prints_the_page_url_and_a_curl_example_then_stops_on_sigterm() {
    let tmp = TempDir::new().unwrap();
    let pkg = package().to_str().unwrap().to_string();
    let (child, base, text) = start_serve(
        &["--model-dir", &pkg, "--store", tmp.path().to_str().unwrap()],
        &[],
    );
    assert!(
        text.contains(&format!("curl -s -X POST {base}/predict")),
        "{text}"
    );
    let page = http::blocking_get(&format!("{base}/"));
    assert!(page.contains(MODEL_NAME), "the printed URL serves the page");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait();
    assert_eq!(status.code(), Some(0), "a clean shutdown on SIGTERM");
}

/// Starts `rps-serve serve` with `args` and `env`; returns the child, the base URL read from
/// its start-up message, and the message.
fn start_serve(args: &[&str], env: &[(&str, &str)]) -> (ChildGuard, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--addr", "127.0.0.1:0"])
        .args(args)
        .env_remove("MLFLOW_TRACKING_URI");
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Guarded: a failing assertion below still kills the server.
    let mut child = ChildGuard::spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::null()));
    let mut lines = BufReader::new(child.child().stdout.take().unwrap()).lines();
    let mut text = String::new();
    // The message ends with the line saying how to stop the server.
    while !text.contains("Ctrl-C") {
        text.push_str(&lines.next().unwrap().unwrap());
        text.push('\n');
    }
    // Keep reading (and the pipe open) for the life of the server.
    std::thread::spawn(move || lines.for_each(drop));
    let url = text
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:") && w.ends_with('/'))
        .unwrap_or_else(|| panic!("no page URL in:\n{text}"))
        .trim_end_matches('/')
        .to_string();
    (child, url, text)
}

/// The test MLflow server's URI, a registry on it, and a model name no other test uses.
fn mlflow_with_a_fresh_name(prefix: &str) -> (String, rps_mlflow::Registry, String) {
    let uri = rps_testkit::service::mlflow_uri();
    let reg = rps_mlflow::Registry::Mlflow(rps_mlflow::MlflowRegistry::new(
        rps_mlflow::MlflowClient::new(&uri).unwrap(),
    ));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("{prefix}-{}-{nanos}", std::process::id());
    (uri, reg, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the MLflow test server; scripts/test starts it"]
async fn serve_loads_the_champion_from_mlflow_and_follows_its_alias() {
    let (uri, reg, name) = mlflow_with_a_fresh_name("rps-serve-test");
    let v1 = crate::reload::promote_as(&reg, &name, package()).await;
    let store = TempDir::new().unwrap();
    let (child, base, _) = start_serve(
        &[
            "--model-name",
            &name,
            "--poll-interval",
            "200ms",
            "--store",
            store.path().to_str().unwrap(),
        ],
        &[("MLFLOW_TRACKING_URI", &uri)],
    );
    let client = ::reqwest::Client::new();
    let model = |client: &::reqwest::Client| {
        let url = format!("{base}/model");
        let client = client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let m = model(&client).await;
    assert_eq!(m["version"], v1.as_str());
    assert_eq!(m["source"], format!("models:/{name}@champion"));

    let tmp = TempDir::new().unwrap();
    let v2 = crate::reload::promote_as(&reg, &name, &copy_package(&tmp.path().join("model"))).await;
    let followed = eventually(60, || async {
        model(&client).await["version"] == v2.as_str()
    })
    .await;
    drop(child);
    assert!(
        followed,
        "the server follows models:/{name}@champion to version {v2}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_without_a_champion_and_becomes_ready_when_one_is_promoted() {
    let reg_dir = TempDir::new().unwrap();
    let store = TempDir::new().unwrap();
    let (child, base, text) = start_serve(
        &[
            "--registry",
            reg_dir.path().to_str().unwrap(),
            "--model-name",
            MODEL_NAME,
            "--poll-interval",
            "200ms",
            "--store",
            store.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(text.contains("no model yet"), "{text}");
    let client = ::reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    let r = get("/health").await.unwrap();
    assert_eq!(r.status(), 200);
    let r = get("/ready").await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ready"], false, "{body}");
    assert!(body["model_version"].is_null(), "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("no model yet"),
        "{body}"
    );
    let r = client
        .post(format!("{base}/predict"))
        .json(&serde_json::json!({"coin": COIN}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "no_model", "{body}");
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("rps_http_requests_total"), "{metrics}");

    // A first champion appears in the registry: the same process loads it.
    let reg = rps_mlflow::Registry::Local(rps_mlflow::LocalRegistry::open(reg_dir.path()).unwrap());
    let v1 = crate::reload::promote_as(&reg, MODEL_NAME, package()).await;
    let ready = eventually(30, || async {
        match get("/ready").await {
            Ok(r) if r.status() == 200 => {
                let body: Value = r.json().await.unwrap();
                body["model_version"] == v1.as_str()
            }
            _ => false,
        }
    })
    .await;
    let n = {
        let m: Value = get("/model").await.unwrap().json().await.unwrap();
        m["min_bars"].as_u64().unwrap() as usize
    };
    let w = window_ending(hour_in_training(10), n);
    let r = client
        .post(format!("{base}/predict"))
        .json(&serde_json::json!({"coin": COIN, "bars": bars_json(w)}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    drop(child);
    assert!(
        ready,
        "/ready turns 200 with version {v1} without a restart"
    );
    assert_eq!(status, 200);
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The failed-reload count on `/metrics`.
async fn reload_failures(client: &::reqwest::Client, base: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("rps_model_reloads_total{") && l.contains("result=\"failure\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_running_unready_while_its_mlflow_is_unreachable() {
    let store = TempDir::new().unwrap();
    let uri = format!("http://127.0.0.1:{}", closed_port());
    let (child, base, text) = start_serve(
        &[
            "--model-name",
            MODEL_NAME,
            "--poll-interval",
            "100ms",
            "--store",
            store.path().to_str().unwrap(),
        ],
        &[
            ("MLFLOW_TRACKING_URI", &uri),
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"),
        ],
    );
    assert!(text.contains("no model yet"), "{text}");
    let client = ::reqwest::Client::new();
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = client.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // The start-up attempt and the retries that follow are counted as failed reloads.
    let counted = eventually(30, || async {
        reload_failures(&client, &base).await >= 2.0
    })
    .await;
    let mut child = child;
    let still_running = child.child().try_wait().unwrap().is_none();
    drop(child);
    assert!(counted, "failed checks of the registry are counted");
    assert!(
        still_running,
        "an unreachable registry never stops the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the MLflow test server; scripts/test starts it"]
async fn serve_started_before_its_mlflow_loads_the_champion_once_mlflow_answers() {
    let (uri, reg, name) = mlflow_with_a_fresh_name("rps-serve-late");
    let v1 = crate::reload::promote_as(&reg, &name, package()).await;
    // The server is pointed at a port where MLflow is not reachable yet.
    let port = closed_port();
    let store = TempDir::new().unwrap();
    let (child, base, _) = start_serve(
        &[
            "--model-name",
            &name,
            "--poll-interval",
            "100ms",
            "--store",
            store.path().to_str().unwrap(),
        ],
        &[
            ("MLFLOW_TRACKING_URI", &format!("http://127.0.0.1:{port}")),
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"),
        ],
    );
    let client = ::reqwest::Client::new();
    let r = client.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        eventually(30, || async {
            reload_failures(&client, &base).await >= 2.0
        })
        .await
    );

    // MLflow "comes up" on that port: a forwarder to the real server.
    let target = uri
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let forwarder = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let ready = eventually(60, || async {
        match client.get(format!("{base}/ready")).send().await {
            Ok(r) if r.status() == 200 => {
                let body: Value = r.json().await.unwrap();
                body["model_version"] == v1.as_str()
            }
            _ => false,
        }
    })
    .await;
    drop(child);
    forwarder.abort();
    assert!(
        ready,
        "the champion v{v1} is loaded once MLflow answers, without a restart"
    );
}

#[test]
fn probe_exits_0_on_a_2xx_answer_and_4_otherwise() {
    let reg_dir = TempDir::new().unwrap();
    let store = TempDir::new().unwrap();
    // A server without a model: /health 200, /ready 503.
    let (child, base, _) = start_serve(
        &[
            "--registry",
            reg_dir.path().to_str().unwrap(),
            "--model-name",
            MODEL_NAME,
            "--store",
            store.path().to_str().unwrap(),
        ],
        &[],
    );
    let probe = |url: &str| {
        Command::new(BIN)
            .args(["probe", "--url", url, "--timeout", "2s"])
            .output()
            .unwrap()
    };
    let ok = probe(&format!("{base}/health"));
    let unready = probe(&format!("{base}/ready"));
    let closed = probe(&format!("http://127.0.0.1:{}/health", closed_port()));
    drop(child);
    assert_eq!(ok.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("answered 200"));
    assert_eq!(unready.status.code(), Some(4));
    let err = String::from_utf8_lossy(&unready.stderr);
    assert!(err.contains("HTTP 503"), "{err}");
    assert_eq!(closed.status.code(), Some(4));
    let err = String::from_utf8_lossy(&closed.stderr);
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error: ")).count(),
        1,
        "{err}"
    );
}

mod http {
    /// A tiny blocking GET (the test is synchronous; reqwest's blocking client is not enabled).
    pub fn blocking_get(url: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
    }
}
