//! Every kind of bad input gets its documented 4xx with a JSON `{error, detail}` body — never
//! a 5xx — and leaves the server serving.

use rps_core::time::{HOUR_MS, fmt_ms};
use serde_json::{Value, json};

use crate::helpers::*;

/// Checks one response: status, error code, a detail mentioning `needle`.
async fn expect(r: reqwest::Response, status: u16, code: &str, needle: &str, case: &str) {
    let got = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{case}: {text}");
    assert_eq!(ctype.as_deref(), Some("application/json"), "{case}: {text}");
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{case}: not JSON ({e}): {text}"));
    assert_eq!(v["error"], code, "{case}: {v}");
    let detail = v["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(needle),
        "{case}: detail {detail:?} lacks {needle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_400_415_or_413() {
    // A 16 KiB limit: the oversized body still fits the socket buffers, so the client has sent
    // it all before the early 413 (with megabytes, the client can hit a closed connection).
    let mut opts = Opts::default();
    opts.settings.max_body_bytes = 16 << 10;
    let app = spawn_app_with(opts).await;
    // (case, content type, body, status, error code, detail contains)
    type Case = (
        &'static str,
        &'static str,
        Vec<u8>,
        u16,
        &'static str,
        &'static str,
    );
    let cases: [Case; 6] = [
        ("truncated JSON", "application/json", br#"{"coin": "BTC","#.to_vec(), 400, "malformed_json", "not valid JSON"),
        ("NaN literal", "application/json", br#"{"coin":"BTC","bars":[{"ts":1546300800000,"open":NaN,"high":1,"low":1,"close":1}]}"#.to_vec(), 400, "malformed_json", ""),
        ("infinite number", "application/json", br#"{"coin":"BTC","bars":[{"ts":1546300800000,"open":1e999,"high":1,"low":1,"close":1}]}"#.to_vec(), 400, "malformed_json", ""),
        ("empty body", "application/json", vec![], 400, "malformed_json", ""),
        ("form body", "application/x-www-form-urlencoded", b"coin=BTC".to_vec(), 415, "unsupported_media_type", "application/json"),
        ("oversized body", "application/json", {
            let mut b = br#"{"coin":"BTC","pad":""#.to_vec();
            b.extend(std::iter::repeat_n(b'x', 64 << 10));
            b.extend(br#""}"#);
            b
        }, 413, "payload_too_large", ""),
    ];
    for (case, ctype, body, status, code, needle) in cases {
        expect(
            app.post_raw("/predict", body, ctype).await,
            status,
            code,
            needle,
            case,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_shapes_and_types_are_422_naming_the_field() {
    let app = spawn_app().await;
    let w = bars_json(window_ending(hour_in_training(100), app.min_bars()));
    let with_bar = |i: usize, field: &str, value: Value| {
        let mut b = w.clone();
        b[i][field] = value;
        json!({"coin": "BTC", "bars": b})
    };
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "coin of the wrong type",
            json!({"coin": 5}),
            "invalid_request",
            "coin",
        ),
        (
            "missing coin",
            json!({"bars": w}),
            "invalid_request",
            "coin",
        ),
        (
            "bars not a list",
            json!({"coin": "BTC", "bars": "x"}),
            "invalid_request",
            "bars",
        ),
        (
            "price as text",
            with_bar(3, "close", json!("abc")),
            "invalid_request",
            "bars[3].close",
        ),
        (
            "unknown field",
            json!({"coin": "BTC", "horizon": 2}),
            "invalid_request",
            "horizon",
        ),
        (
            "ts in seconds",
            with_bar(0, "ts", json!(1_546_300_800)),
            "invalid_request",
            "seconds",
        ),
        (
            "ts not a time",
            with_bar(0, "ts", json!("yesterday")),
            "invalid_request",
            "bars[0].ts",
        ),
        (
            "negative price",
            with_bar(7, "close", json!(-5.0)),
            "invalid_request",
            "bars[7].close",
        ),
        (
            "zero price",
            with_bar(2, "open", json!(0.0)),
            "invalid_request",
            "bars[2].open",
        ),
        (
            "negative volume",
            with_bar(2, "volume", json!(-1.0)),
            "invalid_request",
            "bars[2].volume",
        ),
        (
            "high below low",
            with_bar(4, "high", json!(1.0)),
            "invalid_request",
            "bars[4]",
        ),
        (
            "bad coin code",
            json!({"coin": "BTC/USD"}),
            "invalid_request",
            "coin",
        ),
        (
            "seed's legacy shape",
            json!({"lag_1": 43000.5, "rolling_mean_5": 42950.0, "hour": 13}),
            "legacy_request_shape",
            "\"coin\": \"BTC\"",
        ),
        (
            "no stored bars",
            json!({"coin": "BTC"}),
            "no_data",
            "rps-extract",
        ),
    ];
    for (case, body, code, needle) in cases {
        expect(app.post("/predict", &body).await, 422, code, needle, case).await;
    }
    // A well-formed code of a coin neither the model nor the store knows: 404, no such coin.
    for (case, body, needle) in [
        ("unknown coin", json!({"coin": "DOGE"}), "DOGE"),
        (
            "unknown coin with bars",
            json!({"coin": "ETH", "bars": w}),
            "ETH",
        ),
    ] {
        expect(
            app.post("/predict", &body).await,
            404,
            "unknown_coin",
            needle,
            case,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsorted_gapped_short_and_off_hour_windows_are_422() {
    let app = spawn_app().await;
    let n = app.min_bars();
    let win = || bars_json(window_ending(hour_in_training(100), n + 2));
    let mut unsorted = win();
    unsorted.as_array_mut().unwrap().swap(10, 11);
    let mut dup = win();
    dup[12]["ts"] = dup[11]["ts"].clone();
    let mut gapped = win();
    gapped.as_array_mut().unwrap().remove(20);
    let mut off_hour = win();
    off_hour[5]["ts"] = json!(fmt_ms(
        window_ending(hour_in_training(100), n + 2)[5].ts + 60_000
    ));
    let short = bars_json(window_ending(hour_in_training(100), n - 1));
    let cases = [
        ("unsorted", unsorted, "sorted"),
        ("duplicate hour", dup, "sorted"),
        ("gap", gapped, "1 missing hour(s)"),
        ("off the hour", off_hour, "not on the hour"),
        ("too short", short, &format!("at least {n}")),
    ];
    for (case, bars, needle) in cases {
        let r = app
            .post("/predict", &json!({"coin": "BTC", "bars": bars}))
            .await;
        expect(r, 422, "invalid_request", needle, case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_and_feedback_are_4xx_and_leave_no_trace() {
    let app = spawn_app().await;
    let good = json!({"coin": "BTC", "bars": bars_json(window_ending(hour_in_training(30), app.min_bars()))});
    let r = app.post("/predict/batch", &json!({"requests": []})).await;
    expect(r, 422, "invalid_request", "1 to 64", "empty batch").await;
    let many: Vec<Value> = (0..65).map(|_| json!({"coin": "BTC"})).collect();
    let r = app.post("/predict/batch", &json!({"requests": many})).await;
    expect(r, 422, "invalid_request", "got 65", "too many").await;
    let r = app
        .post(
            "/predict/batch",
            &json!({"requests": [good, {"coin": "XRP"}]}),
        )
        .await;
    expect(r, 404, "unknown_coin", "requests[1].coin", "one bad item").await;
    // All or nothing: the good item was not forecast.
    assert_eq!(
        sample(&app.metrics().await, "rps_inference_latency_seconds_count"),
        Some(0.0)
    );
    let r = app
        .post(
            "/predict/batch",
            &json!({"requests": [{"lag_1": 1, "rolling_mean_5": 1, "hour": 1}]}),
        )
        .await;
    expect(r, 422, "legacy_request_shape", "requests[0]", "legacy item").await;

    let ts = fmt_ms(hour_in_training(31));
    let r = app
        .feedback(&json!({"coin": "BTC", "ts": ts, "close": -3.0}))
        .await;
    expect(r, 422, "invalid_request", "close", "negative actual").await;
    let r = app
        .feedback(&json!({"coin": "DOGE", "ts": ts, "close": 3.0}))
        .await;
    expect(r, 404, "unknown_coin", "DOGE", "feedback unknown coin").await;
    let r = app
        .feedback(&json!({"coin": "BTC", "ts": hour_in_training(31) + 1, "close": 3.0}))
        .await;
    expect(
        r,
        422,
        "invalid_request",
        "on the hour",
        "feedback off the hour",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_routes_and_methods_get_json_errors_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    expect(
        app.get("/predict").await,
        405,
        "method_not_allowed",
        "",
        "GET /predict",
    )
    .await;
    expect(
        app.get("/nope").await,
        404,
        "not_found",
        "/nope",
        "unknown route",
    )
    .await;

    // After all that, a good request still works and no 5xx was ever counted.
    let (status, _) = app.predict_at(hour_in_training(40) + HOUR_MS).await;
    assert_eq!(status, 200);
    let m = app.metrics().await;
    assert!(
        !m.lines()
            .any(|l| l.starts_with("rps_http_requests_total") && l.contains("status=\"5")),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"rps_http_requests_total{route="unmatched",status="404"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"rps_http_requests_total{route="/predict",status="405"}"#
        ),
        Some(1.0),
        "{m}"
    );
}
