//! What a hostile or careless client must not be able to do: falsify the monitoring with
//! bars or closes of its own, hold connections or descriptors forever, stall a shutdown,
//! make a response break its own schema, or read infrastructure details out of errors.

use std::time::Duration;

use rps_core::Bar;
use rps_core::time::HOUR_MS;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// `bars` with every price multiplied by `k` and a spike of ×`spike` on the newest close.
fn wild(src: &[Bar], k: f64, spike: f64) -> Vec<Bar> {
    let mut out: Vec<Bar> = src
        .iter()
        .map(|b| Bar {
            open: b.open * k,
            high: b.high * k,
            low: b.low * k,
            close: b.close * k,
            ..b.clone()
        })
        .collect();
    if let Some(b) = out.last_mut() {
        b.close *= spike;
        b.high = b.high.max(b.close);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_a_client_sends_get_a_forecast_and_change_no_monitoring_state() {
    let Watched {
        app,
        store: _store,
        newest,
        store_forecast: store_f,
        drift_before,
    } = watched_app().await;
    assert_eq!(drift_before["data"]["drift"], false, "{drift_before}");
    let gauge = r#"rps_forecast_close_usd{coin="BTC"}"#;
    assert_eq!(
        sample(&app.metrics().await, gauge),
        store_f["forecast_close"].as_f64()
    );
    let calibration = app.state.calibration(COIN).unwrap().calibrator().state();

    // Five windows of wild bars ending at the store's newest hour, the last with a spike:
    // each gets its forecast (for the same hour the store forecast waits for).
    let w = window_ending(newest, app.min_bars());
    for k in [1e-3, 50.0, 1e3, 7.0, 1e4] {
        let r = app
            .post(
                "/predict",
                &json!({"coin": COIN, "bars": bars_json(&wild(w, k, 40.0))}),
            )
            .await;
        let f: Value = r.json().await.unwrap();
        assert_eq!(f["source"], "request", "{f}");
        assert_eq!(f["for_hour"], store_f["for_hour"], "{f}");
    }

    // Nothing moved: the PSI window, the drift verdict, the latest-forecast gauge, the
    // calibrator state the intervals come from.
    let drift_after: Value = app.get("/drift").await.json().await.unwrap();
    assert_eq!(drift_after["data"], drift_before["data"]);
    assert_eq!(
        app.state.calibration(COIN).unwrap().calibrator().state(),
        calibration
    );
    let m = app.metrics().await;
    assert_eq!(sample(&m, "rps_data_drift"), Some(0.0));
    assert_eq!(sample(&m, gauge), store_f["forecast_close"].as_f64());

    // The genuine close settles the store's forecast, not a client's.
    let actual = window_ending(newest + HOUR_MS, 1)[0].close;
    let v: Value = app
        .feedback(&json!({"coin": COIN, "ts": store_f["for_hour"], "close": actual}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["forecast_close"], store_f["forecast_close"], "{v}");
    assert!(v["abs_error_usd"].as_f64().unwrap() < 0.05 * actual, "{v}");
    let d: Value = app.get("/drift").await.json().await.unwrap();
    assert!(d["concept"]["statistic"].as_f64().unwrap() < 5.0, "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_needs_the_configured_token_and_is_off_without_one() {
    let newest = hour_in_training(300);
    let (app, _store) = app_with_store_until(newest, Opts::default()).await;
    let f = app.store_forecast().await;
    let body = json!({"coin": COIN, "ts": f["for_hour"], "close": 1.0});
    let url = format!("{}/feedback", app.base);
    for (case, auth) in [
        ("no token", None),
        ("wrong token", Some("Bearer guess")),
        ("token as basic auth", Some("Basic dGVzdA==")),
    ] {
        let mut req = app.client.post(&url).json(&body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{case}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "unauthorized", "{case}: {v}");
    }
    let d: Value = app.get("/drift").await.json().await.unwrap();
    assert_eq!(d["concept"]["samples"], 0, "nothing was recorded: {d}");

    let mut opts = Opts::default();
    opts.settings.feedback_token = None;
    let (off, _store) = app_with_store_until(newest, opts).await;
    let r = off
        .client
        .post(format!("{}/feedback", off.base))
        .bearer_auth(FEEDBACK_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "feedback_disabled", "{v}");
    assert!(v["detail"].as_str().unwrap().contains("--feedback-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_a_json_content_type_is_refused_with_415() {
    let app = spawn_app().await;
    for ctype in [
        None,
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut req = app
            .client
            .post(format!("{}/predict", app.base))
            .body(r#"{"coin":"BTC"}"#);
        if let Some(c) = ctype {
            req = req.header("content-type", c);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 415, "{ctype:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "unsupported_media_type", "{v}");
    }
}

/// Reads until the server closes the connection (or `limit` passes); returns what arrived
/// and whether the server closed it.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_after_the_header_timeout() {
    let mut opts = Opts::default();
    opts.settings.header_timeout = Duration::from_millis(500);
    let app = spawn_app_with(opts).await;
    let addr = app.base.trim_start_matches("http://").to_string();

    // A client trickling its header lines.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = slow.write_all(b"x-slow: 1\r\n").await;
    }
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(closed, "a trickled request head keeps its connection");

    // A kept-alive connection after one answered request.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (text, closed) = read_until_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(closed, "an idle keep-alive connection stays open");

    // A connection that never sends a byte.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    assert!(closed, "a silent connection stays open");
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_get_a_json_503_and_service_resumes_when_one_closes() {
    let mut opts = Opts::default();
    opts.settings.max_connections = 3;
    let app = spawn_app_with(opts).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Let the server accept all three before the fourth arrives.
    assert!(
        eventually(5, || async {
            app.state.metrics().open_connections.get() == 3
        })
        .await
    );

    let mut extra = TcpStream::connect(&addr).await.unwrap();
    extra
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (text, closed) = read_until_closed(&mut extra, Duration::from_secs(10)).await;
    assert!(closed);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"], "overloaded", "{body}");
    assert!(app.state.metrics().connections_shed.get() >= 1);

    drop(held.pop());
    assert!(
        eventually(5, || async {
            app.state.metrics().open_connections.get() == 2
        })
        .await
    );
    let r = reqwest::Client::new()
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_ends_within_the_grace_period_though_a_client_holds_a_request_open() {
    let mut settings = Opts::default().settings;
    settings.shutdown_grace = Duration::from_millis(300);
    settings.header_timeout = Duration::from_secs(3600);
    settings.request_timeout = Duration::from_secs(3600);
    let dir = tempfile::TempDir::new().unwrap();
    let pkg = copy_package(&dir.path().join("model"));
    let app = rps_serve::Application::build(rps_serve::ServeConfig {
        addr: "127.0.0.1:0".into(),
        store: dir.path().join("store").to_str().unwrap().into(),
        model: rps_serve::ModelSpec::Dir(pkg),
        cache_dir: dir.path().join("cache"),
        settings,
    })
    .await
    .unwrap();
    let addr = app.addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    // A request whose body never finishes: the connection is busy, not idle.
    let mut stuck = TcpStream::connect(addr).await.unwrap();
    stuck
        .write_all(
            b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"coin\":",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), server).await;
    assert!(
        ended.is_ok(),
        "the server still waits for the stuck client 20 s after the stop"
    );
    let (_, closed) = read_until_closed(&mut stuck, Duration::from_secs(5)).await;
    assert!(closed, "the stuck connection was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_whose_forecast_cannot_be_represented_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let w = window_ending(hour_in_training(100), app.min_bars());
    let huge = wild(w, f64::MAX / 1e6 / w[0].high, 1.0);
    let r = app
        .post("/predict", &json!({"coin": COIN, "bars": bars_json(&huge)}))
        .await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request", "{v}");
    assert!(
        v["detail"].as_str().unwrap().starts_with("bars[0].open:"),
        "{v}"
    );

    // The largest accepted prices still give finite numbers in every field.
    let top = wild(
        w,
        0.9e12 / w.iter().map(|b| b.high).fold(0.0, f64::max),
        1.0,
    );
    let r = app
        .post("/predict", &json!({"coin": COIN, "bars": bars_json(&top)}))
        .await;
    let text = r.text().await.unwrap();
    assert!(!text.contains("null"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_uris_and_large_headers_get_json_errors() {
    let app = spawn_app().await;
    let r = app
        .get(&format!("/health?pad={}", "x".repeat(10 << 10)))
        .await;
    assert_eq!(r.status(), 414);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "uri_too_long", "{v}");

    let r = app
        .client
        .get(format!("{}/health", app.base))
        .header("x-pad", "y".repeat(20 << 10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "headers_too_large", "{v}");
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_as_strict_as_the_server_and_lists_every_error_code() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let schemas = &doc["components"]["schemas"];
    let codes: Vec<&str> = schemas["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for code in rps_serve::error::ErrorCode::ALL {
        assert!(codes.contains(&code.as_str()), "{code} missing: {codes:?}");
    }
    assert!(codes.contains(&"cannot_forecast"));
    assert_eq!(
        schemas["PredictRequest"]["properties"]["coin"]["pattern"],
        rps_serve::validate::COIN_PATTERN
    );
    assert_eq!(
        schemas["BarIn"]["properties"]["close"]["exclusiveMinimum"],
        0.0
    );
    assert!(
        doc["components"]["securitySchemes"]["bearer"].is_object(),
        "{doc}"
    );

    // The server refuses what the pattern refuses.
    for coin in ["", " BTC", "BT-C", "ABCDEFGHIJKLMNOPQ"] {
        let r = app.post("/predict", &json!({"coin": coin})).await;
        assert_eq!(r.status(), 422, "{coin:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_no_sniff_and_no_store_and_never_echo_much_or_name_the_store() {
    let app = spawn_app().await;
    let long = format!("/{}", "a".repeat(6000));
    for r in [
        app.get("/health").await,
        app.get(&long).await,
        app.post("/predict", &json!({"coin": "nope!"})).await,
    ] {
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(text.len() < 1024, "{status}: {} bytes echoed", text.len());
    }

    // A store that cannot be read: a 503 that does not say where the store is.
    let store = tempfile::TempDir::new().unwrap();
    std::fs::create_dir_all(store.path().join("raw")).unwrap();
    std::fs::write(store.path().join("raw/BTC.parquet"), b"not parquet").unwrap();
    let broken = spawn_app_with(Opts {
        store: Some(store.path().to_path_buf()),
        ..Opts::default()
    })
    .await;
    let r = broken.post("/predict", &json!({"coin": COIN})).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "store_unavailable", "{v}");
    let detail = v["detail"].as_str().unwrap();
    let path = store.path().to_str().unwrap();
    assert!(
        !detail.contains(path) && !detail.contains("parquet"),
        "{detail}"
    );
}
