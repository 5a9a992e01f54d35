//! Each route's happy path.

use rps_core::time::{HOUR_MS, fmt_ms};
use rps_features::spec;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_model_describe_the_served_model() {
    let app = spawn_app().await;

    let r = app.get("/health").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");

    let r = app.get("/ready").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["ready"], true);

    let v: Value = app.get("/model").await.json().await.unwrap();
    assert_eq!(v["name"], MODEL_NAME);
    assert_eq!(v["feature_spec_hash"], spec().hash.as_str());
    assert_eq!(
        v["min_bars"].as_u64().unwrap() as usize,
        spec().warmup + v["lookback"].as_u64().unwrap() as usize
    );
    assert_eq!(v["coins"], json!([COIN]));
    assert!(v["trained_at"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(v["source"].as_str().unwrap().starts_with("dir:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_of_bars_gets_a_next_hour_forecast_with_nested_intervals() {
    let app = spawn_app().await;
    let newest = hour_in_training(500);
    let (status, f) = app.predict_at(newest).await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(f["coin"], COIN);
    assert_eq!(f["based_on"], fmt_ms(newest));
    assert_eq!(f["for_hour"], fmt_ms(newest + HOUR_MS));
    assert_eq!(f["source"], "request");
    let last = window_ending(newest, 1)[0].close;
    assert_eq!(f["last_close"].as_f64().unwrap(), last);
    let close = f["forecast_close"].as_f64().unwrap();
    assert!(
        (close / last - 1.0).abs() < 0.1,
        "forecast {close} vs last {last}"
    );
    let iv = f["intervals"].as_array().unwrap();
    assert_eq!(iv.len(), 2);
    let (lo80, hi80) = (
        iv[0]["lower"].as_f64().unwrap(),
        iv[0]["upper"].as_f64().unwrap(),
    );
    let (lo95, hi95) = (
        iv[1]["lower"].as_f64().unwrap(),
        iv[1]["upper"].as_f64().unwrap(),
    );
    assert!(
        lo95 <= lo80 && lo80 < close && close < hi80 && hi80 <= hi95,
        "{iv:?}"
    );
    assert_eq!(f["model"]["name"], MODEL_NAME);
    assert_eq!(
        f["model"]["version"],
        app.state.current_model().unwrap().version.as_str()
    );

    // The same window again gives the same forecast (deterministic model).
    let (_, again) = app.predict_at(newest).await;
    assert_eq!(again["forecast_close"], f["forecast_close"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_forecast_is_computed_once_per_new_bar_and_settles_with_the_next_bar() {
    let newest = hour_in_training(300);
    let upto = index_at(newest) + 1;
    let store = store_with(&bars()[..upto]).await;
    let app = spawn_app_with(Opts {
        store: Some(store.path().to_path_buf()),
        ..Opts::default()
    })
    .await;

    let first: Value = app
        .post("/predict", &json!({"coin": "btc"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["source"], "store", "{first}");
    assert_eq!(first["for_hour"], fmt_ms(newest + HOUR_MS));
    for _ in 0..5 {
        let again: Value = app
            .post("/predict", &json!({"coin": "BTC"}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(again["cached"], true);
        assert_eq!(again["forecast_close"], first["forecast_close"]);
    }
    let m = app.metrics().await;
    assert_eq!(
        sample(&m, "rps_inference_latency_seconds_count"),
        Some(1.0),
        "computed once:\n{m}"
    );
    assert_eq!(
        sample(&m, r#"rps_predictions_total{coin="BTC"}"#),
        Some(6.0)
    );

    // A new bar arrives: the poller forecasts the next hour and the old forecast's actual close
    // (the new bar) settles it.
    rps_core::parquet_io::write_bars(
        &rps_core::Store::open(store.path().to_str().unwrap()).unwrap(),
        COIN,
        &bars()[..upto + 1],
    )
    .await
    .unwrap();
    let moved = eventually(20, || async {
        let v: Value = app
            .post("/predict", &json!({"coin": "BTC"}))
            .await
            .json()
            .await
            .unwrap();
        v["for_hour"] == fmt_ms(newest + 2 * HOUR_MS)
    })
    .await;
    assert!(moved, "the store poller picked up the new bar");
    let m = app.metrics().await;
    assert_eq!(
        sample(&m, "rps_inference_latency_seconds_count"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "rps_forecast_abs_error_usd_count"),
        Some(1.0),
        "{m}"
    );
    let actual = bars()[upto].close;
    assert_eq!(
        sample(&m, r#"rps_actual_close_usd{coin="BTC"}"#),
        Some(actual)
    );
    assert!(sample(&m, r#"rps_newest_bar_age_seconds{coin="BTC"}"#).unwrap() > 0.0);
    let err = (actual - first["forecast_close"].as_f64().unwrap()).abs();
    assert!((sample(&m, "rps_forecast_abs_error_usd_sum").unwrap() - err).abs() < 1e-6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_request_in_order() {
    let newest = hour_in_training(400);
    let store = store_with(&bars()[..index_at(newest) + 1]).await;
    let app = spawn_app_with(Opts {
        store: Some(store.path().to_path_buf()),
        ..Opts::default()
    })
    .await;
    let other = hour_in_training(100);
    let body = json!({"requests": [
        {"coin": "BTC"},
        {"coin": "BTC", "bars": bars_json(window_ending(other, app.min_bars()))},
    ]});
    let r = app.post("/predict/batch", &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let f = v["forecasts"].as_array().unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(f[0]["for_hour"], fmt_ms(newest + HOUR_MS));
    assert_eq!(f[0]["source"], "store");
    assert_eq!(f[1]["for_hour"], fmt_ms(other + HOUR_MS));
    assert_eq!(f[1]["source"], "request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_records_the_realised_error_of_a_store_forecast_once() {
    let newest = hour_in_training(50);
    let (app, _store) = app_with_store_until(newest, Opts::default()).await;
    let f = app.store_forecast().await;
    assert_eq!(f["for_hour"], fmt_ms(newest + HOUR_MS));
    let actual = window_ending(newest + HOUR_MS, 1)[0].close;
    let body = json!({"coin": "BTC", "ts": fmt_ms(newest + HOUR_MS), "close": actual});

    let r = app.feedback(&body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["recorded"], true);
    let err = (actual - f["forecast_close"].as_f64().unwrap()).abs();
    assert!((v["abs_error_usd"].as_f64().unwrap() - err).abs() < 1e-9);

    let v: Value = app.feedback(&body).await.json().await.unwrap();
    assert_eq!(v["recorded"], false, "the same hour counts once");
    let m = app.metrics().await;
    assert_eq!(sample(&m, "rps_forecast_abs_error_usd_count"), Some(1.0));
    assert_eq!(
        sample(&m, r#"rps_actual_close_usd{coin="BTC"}"#),
        Some(actual)
    );

    let r = app
        .feedback(&json!({"coin": "BTC", "ts": fmt_ms(newest + 5 * HOUR_MS), "close": 1.0}))
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "no_forecast");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_every_route_and_the_legacy_decision() {
    let app = spawn_app().await;
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/", "get"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/model", "get"),
        ("/predict", "post"),
        ("/predict/batch", "post"),
        ("/feedback", "post"),
        ("/drift", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    assert!(doc["components"]["schemas"]["PredictRequest"].is_object());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(
        doc["info"]["description"]
            .as_str()
            .unwrap()
            .contains("legacy_request_shape")
    );
    let predict422 = &doc["paths"]["/predict"]["post"]["responses"]["422"]["description"];
    assert!(
        predict422
            .as_str()
            .unwrap()
            .contains("legacy_request_shape")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_closes_forecasts_errors_and_drift() {
    let newest = hour_in_training(600);
    let (app, _store) = app_with_store_until(newest, Opts::default()).await;
    let f = app.store_forecast().await;
    let actual = window_ending(newest + HOUR_MS, 1)[0].close;
    let r = app
        .feedback(&json!({"coin": "BTC", "ts": f["for_hour"], "close": actual}))
        .await;
    assert_eq!(r.status(), 200);

    let r = app.get("/").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = r.text().await.unwrap();
    assert!(html.contains(MODEL_NAME));
    assert!(html.contains("<svg"), "a chart of recent closes");
    assert!(
        html.contains(f["for_hour"].as_str().unwrap()),
        "the store forecast's hour"
    );
    assert!(html.contains(&format!("{:.2}", f["forecast_close"].as_f64().unwrap())));
    assert!(html.contains(&format!("{actual:.2}")), "the realised close");
    assert!(html.contains("Concept drift"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "self-contained"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_openmetrics_with_the_model_identity() {
    let app = spawn_app().await;
    app.get("/health").await;
    let r = app.get("/metrics").await;
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let m = r.text().await.unwrap();
    let v = app.state.current_model().unwrap().version.clone();
    assert!(m.contains(&format!(r#"version="{v}""#)), "{m}");
    assert!(m.contains(&format!(r#"spec_hash="{}""#, spec().hash)));
    assert_eq!(
        sample(
            &m,
            r#"rps_http_requests_total{route="/health",status="200"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, r#"rps_model_reloads_total{result="failure"}"#),
        Some(0.0)
    );
    assert!(m.trim_end().ends_with("# EOF"));
}
