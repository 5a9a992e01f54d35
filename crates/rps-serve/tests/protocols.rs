//! The serving protocols (MLflow scoring, Open Inference Protocol v2): every wire form gives
//! `/predict`'s forecast of the same bars, bad input is refused in the protocol's error
//! shape, and client bars sent this way move no monitoring state either.

use rps_core::Bar;
use rps_core::time::fmt_ms;
use serde_json::{Value, json};

use crate::helpers::*;

/// The window ending at `newest` and `/predict`'s forecast of it.
async fn reference(app: &TestApp, newest: i64) -> (&'static [Bar], Value) {
    let (status, f) = app.predict_at(newest).await;
    assert_eq!(status, 200, "{f}");
    (window_ending(newest, app.min_bars()), f)
}

/// `bars` as MLflow records with RFC 3339 times.
pub fn records(bars: &[Bar]) -> Vec<Value> {
    bars.iter()
        .map(|b| {
            json!({"ts": fmt_ms(b.ts), "open": b.open, "high": b.high, "low": b.low,
                   "close": b.close, "volume": b.volume})
        })
        .collect()
}

/// Asserts an MLflow response is one prediction equal to `/predict`'s `f`.
fn same_prediction(v: &Value, f: &Value, how: &str) {
    let p = v["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("{how}: {v}"));
    assert_eq!(p.len(), 1, "{how}: {v}");
    let p = &p[0];
    assert_eq!(p["ts"], f["for_hour"], "{how}");
    assert_eq!(p["coin"], COIN, "{how}");
    assert_eq!(p["forecast"], f["forecast_close"], "{how}");
    for i in f["intervals"].as_array().unwrap() {
        let pct = (i["level"].as_f64().unwrap() * 100.0).round();
        assert_eq!(p[format!("lower_{pct}")], i["lower"], "{how}: {p}");
        assert_eq!(p[format!("upper_{pct}")], i["upper"], "{how}: {p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mlflow_form_gives_the_forecast_predict_gives() {
    let app = spawn_app().await;
    let (w, f) = reference(&app, hour_in_training(400)).await;
    let rec = records(w);
    let columns = ["ts", "open", "high", "low", "close", "volume"];
    let split = json!({"dataframe_split": {
        "index": (0..w.len()).collect::<Vec<_>>(),
        "columns": columns,
        // Unix seconds: the unit pandas users have.
        "data": w.iter().map(|b| json!([b.ts / 1000, b.open, b.high, b.low, b.close, b.volume]))
            .collect::<Vec<_>>(),
    }});
    let by_column: serde_json::Map<String, Value> = columns
        .iter()
        .map(|c| (c.to_string(), rec.iter().map(|r| r[c].clone()).collect()))
        .collect();
    let forms = [
        ("dataframe_split", split),
        ("dataframe_records", json!({"dataframe_records": rec})),
        ("inputs (columns)", json!({"inputs": by_column})),
        ("inputs (records)", json!({"inputs": rec})),
        ("instances", json!({"instances": rec})),
    ];
    for (how, body) in forms {
        let r = app.post("/invocations", &body).await;
        assert_eq!(r.status(), 200, "{how}");
        same_prediction(&r.json().await.unwrap(), &f, how);
    }

    // CSV, as pandas writes it (its index first, an explicit coin column).
    let mut csv = String::from(",ts,open,high,low,close,volume,coin\n");
    for (i, b) in w.iter().enumerate() {
        let vol = b.volume.map(|v| v.to_string()).unwrap_or_default();
        csv += &format!(
            "{i},{},{},{},{},{},{vol},btc\n",
            fmt_ms(b.ts),
            b.open,
            b.high,
            b.low,
            b.close
        );
    }
    let r = app
        .post_raw("/invocations", csv, "text/csv; charset=utf-8")
        .await;
    assert_eq!(r.status(), 200);
    same_prediction(&r.json().await.unwrap(), &f, "text/csv");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_ping_and_version_answer_like_mlflow() {
    let app = spawn_app().await;
    let r = app.get("/ping").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "\n");
    let r = app.get("/version").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), env!("CARGO_PKG_VERSION"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_mlflow_input_is_a_400_in_mlflows_error_shape() {
    let app = spawn_app().await;
    let w = window_ending(hour_in_training(400), app.min_bars());
    let rec = records(w);
    let mut mixed = rec.clone();
    mixed[3]["coin"] = json!("ETH");
    mixed[4]["coin"] = json!("BTC");
    let mut gapped = rec.clone();
    gapped.remove(10);
    let no_close: Vec<Value> = rec
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("close");
            r
        })
        .collect();
    let cases = [
        ("no form", json!({})),
        ("two forms", json!({"inputs": rec, "instances": rec})),
        ("mixed coins", json!({"dataframe_records": mixed})),
        ("a gap", json!({"dataframe_records": gapped})),
        ("too short", json!({"dataframe_records": rec[..5]})),
        ("no close", json!({"dataframe_records": no_close})),
        (
            "unknown column",
            json!({"dataframe_split": {"columns": ["ts", "price"], "data": [[1, 2]]}}),
        ),
        (
            "unknown coin",
            json!({"inputs": {"ts": [1], "coin": ["NOPE"]}}),
        ),
        ("params", json!({"inputs": rec, "params": {"horizon": 2}})),
    ];
    for (how, body) in cases {
        let r = app.post("/invocations", &body).await;
        assert_eq!(r.status(), 400, "{how}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error_code"], "BAD_REQUEST", "{how}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{how}: {v}"
        );
    }
    let v: Value = app
        .post("/invocations", &json!({"dataframe_records": mixed}))
        .await
        .json()
        .await
        .unwrap();
    assert!(v["message"].as_str().unwrap().contains("one coin"), "{v}");

    for (body, ctype) in [("{", "application/json"), ("ts,close\n1,2,3\n", "text/csv")] {
        let r = app.post_raw("/invocations", body, ctype).await;
        assert_eq!(r.status(), 400, "{ctype}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error_code"],
            "BAD_REQUEST"
        );
    }
    for ctype in ["text/plain", "application/json; charset=latin-1"] {
        let r = app.post_raw("/invocations", "{}", ctype).await;
        assert_eq!(r.status(), 415, "{ctype}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error_code"],
            "BAD_REQUEST"
        );
    }
    let r = app
        .client
        .post(format!("{}/invocations", app.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415, "no content type");
}

/// The OIP input tensors of `bars` (ts as unix seconds, or RFC 3339 text).
pub fn tensors(bars: &[Bar], ts_text: bool) -> Value {
    let n = bars.len();
    let col = |f: fn(&Bar) -> f64| bars.iter().map(f).collect::<Vec<_>>();
    let ts = if ts_text {
        json!({"name": "ts", "datatype": "BYTES", "shape": [n],
               "data": bars.iter().map(|b| fmt_ms(b.ts)).collect::<Vec<_>>()})
    } else {
        json!({"name": "ts", "datatype": "INT64", "shape": [n],
               "data": bars.iter().map(|b| b.ts / 1000).collect::<Vec<_>>()})
    };
    json!([
        ts,
        {"name": "open", "datatype": "FP64", "shape": [n], "data": col(|b| b.open)},
        {"name": "high", "datatype": "FP64", "shape": [n], "data": col(|b| b.high)},
        {"name": "low", "datatype": "FP64", "shape": [n], "data": col(|b| b.low)},
        {"name": "close", "datatype": "FP64", "shape": [n], "data": col(|b| b.close)},
        {"name": "volume", "datatype": "FP64", "shape": [n], "data": col(|b| b.volume.unwrap_or(0.0))},
        {"name": "coin", "datatype": "BYTES", "shape": [1], "data": ["BTC"]},
    ])
}

pub fn output<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name}: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oip_v2_metadata_and_readiness_describe_the_served_model() {
    let app = spawn_app().await;
    let v: Value = app.get("/v2").await.json().await.unwrap();
    assert_eq!(v["name"], "rps-serve");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["extensions"], json!([]));
    assert_eq!(app.get("/v2/health/live").await.status(), 200);
    assert_eq!(app.get("/v2/health/ready").await.status(), 200);

    let version = app.state.current_model().unwrap().version.clone();
    let r = app.get(&format!("/v2/models/{MODEL_NAME}/ready")).await;
    assert_eq!(r.status(), 200);
    let r = app
        .get(&format!("/v2/models/{MODEL_NAME}/versions/{version}/ready"))
        .await;
    assert_eq!(r.status(), 200);
    let m: Value = app
        .get(&format!("/v2/models/{MODEL_NAME}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["name"], MODEL_NAME);
    assert_eq!(m["versions"], json!([version]));
    assert_eq!(m["platform"], "rps");
    let names = |k: &str| -> Vec<String> {
        m[k].as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names("inputs"),
        ["ts", "open", "high", "low", "close", "volume", "coin"]
    );
    assert_eq!(
        names("outputs"),
        ["forecast", "lower", "upper", "levels", "ts"]
    );
    let k = m["parameters"]["interval_levels"].as_array().unwrap().len();
    assert_eq!(m["outputs"][1]["shape"], json!([1, k]));
    assert_eq!(
        m["parameters"]["min_bars"].as_u64().unwrap() as usize,
        app.min_bars()
    );

    for path in [
        "/v2/models/other".to_string(),
        "/v2/models/other/ready".to_string(),
        format!("/v2/models/{MODEL_NAME}/versions/999/ready"),
        format!("/v2/models/{MODEL_NAME}/versions/999"),
    ] {
        let r = app.get(&path).await;
        assert_eq!(r.status(), 404, "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oip_v2_infer_gives_the_forecast_predict_gives() {
    let app = spawn_app().await;
    let (w, f) = reference(&app, hour_in_training(400)).await;
    let version = app.state.current_model().unwrap().version.clone();
    let lowers: Vec<Value> = f["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["lower"].clone())
        .collect();
    let uppers: Vec<Value> = f["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["upper"].clone())
        .collect();
    for (path, ts_text) in [
        (format!("/v2/models/{MODEL_NAME}/infer"), false),
        (format!("/v2/models/{MODEL_NAME}/infer"), true),
        (
            format!("/v2/models/{MODEL_NAME}/versions/{version}/infer"),
            false,
        ),
    ] {
        let r = app
            .post(&path, &json!({"id": "q1", "inputs": tensors(w, ts_text)}))
            .await;
        assert_eq!(r.status(), 200, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["model_name"], MODEL_NAME);
        assert_eq!(v["model_version"], version);
        assert_eq!(v["id"], "q1");
        let fc = output(&v, "forecast");
        assert_eq!(
            (&fc["datatype"], &fc["shape"]),
            (&json!("FP64"), &json!([1]))
        );
        assert_eq!(fc["data"], json!([f["forecast_close"]]), "{path} {ts_text}");
        assert_eq!(output(&v, "lower")["shape"], json!([1, lowers.len()]));
        assert_eq!(output(&v, "lower")["data"], Value::Array(lowers.clone()));
        assert_eq!(output(&v, "upper")["data"], Value::Array(uppers.clone()));
        assert_eq!(
            output(&v, "ts")["data"],
            json!([f["for_hour_ms"].as_i64().unwrap() / 1000])
        );
    }

    // Only the outputs asked for; a body without a content type (tritonclient's) is JSON.
    let body = json!({"inputs": tensors(w, false), "outputs": [{"name": "forecast"}]});
    let r = app
        .client
        .post(format!("{}/v2/models/{MODEL_NAME}/infer", app.base))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["outputs"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["outputs"][0]["data"], json!([f["forecast_close"]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_oip_input_is_a_400_and_another_model_a_404() {
    let app = spawn_app().await;
    let w = window_ending(hour_in_training(400), app.min_bars());
    let infer = format!("/v2/models/{MODEL_NAME}/infer");
    let with = |f: &dyn Fn(&mut Vec<Value>)| {
        let mut t = tensors(w, false).as_array().unwrap().clone();
        f(&mut t);
        json!({"inputs": t})
    };
    let cases = [
        ("no inputs", json!({})),
        (
            "missing close",
            with(&|t| t.retain(|x| x["name"] != "close")),
        ),
        ("unknown input", with(&|t| t[0]["name"] = json!("price"))),
        (
            "wrong datatype",
            with(&|t| t[1]["datatype"] = json!("BYTES")),
        ),
        ("shape mismatch", with(&|t| t[2]["shape"] = json!([3]))),
        (
            "lengths differ",
            with(&|t| {
                t[4]["data"].as_array_mut().unwrap().pop();
                t[4]["shape"] = json!([w.len() - 1]);
            }),
        ),
        (
            "out of order",
            with(&|t| {
                let ts = t[0]["data"][5].as_i64().unwrap();
                t[0]["data"][5] = json!(ts + 7200);
            }),
        ),
        (
            "unknown output",
            json!({"inputs": tensors(w, false), "outputs": [{"name": "median"}]}),
        ),
        ("not an object", json!("ts, open, high")),
    ];
    for (how, body) in cases {
        let r = app.post(&infer, &body).await;
        assert_eq!(r.status(), 400, "{how}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{how}: {v}"
        );
    }
    let r = app
        .client
        .post(format!("{}{infer}", app.base))
        .header("inference-header-content-length", "10")
        .body(json!({"inputs": tensors(w, false)}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "binary data extension");
    let r = app.post_raw(&infer, "{}", "text/plain").await;
    assert_eq!(r.status(), 415);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    let r = app
        .post(
            "/v2/models/other/infer",
            &json!({"inputs": tensors(w, false)}),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_clients_bars_move_no_monitoring_state() {
    let Watched {
        app,
        store: _store,
        newest,
        store_forecast: store_f,
        drift_before,
    } = watched_app().await;
    let gauge = r#"rps_forecast_close_usd{coin="BTC"}"#;
    let before = sample(&app.metrics().await, gauge);
    assert_eq!(before, store_f["forecast_close"].as_f64());

    // Windows of prices ×1000 with a spike, through both protocols.
    let wild: Vec<Bar> = window_ending(newest, app.min_bars())
        .iter()
        .map(|b| Bar {
            open: b.open * 1e3,
            high: b.high * 1e3 * 40.0,
            low: b.low * 1e3,
            close: b.close * 1e3,
            ..b.clone()
        })
        .collect();
    let r = app
        .post(
            "/invocations",
            &json!({"dataframe_records": records(&wild)}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .post(
            &format!("/v2/models/{MODEL_NAME}/infer"),
            &json!({"inputs": tensors(&wild, false)}),
        )
        .await;
    assert_eq!(r.status(), 200);

    let drift_after: Value = app.get("/drift").await.json().await.unwrap();
    assert_eq!(drift_after["data"], drift_before["data"]);
    assert_eq!(drift_after["concept"], drift_before["concept"]);
    let m = app.metrics().await;
    assert_eq!(sample(&m, gauge), before);
    assert_eq!(sample(&m, "rps_data_drift"), Some(0.0));
    // They are predictions all the same.
    assert!(m.contains(r#"rps_predictions_total{coin="BTC"}"#), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_routes_are_in_the_openapi_document() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    for path in [
        "/ping",
        "/version",
        "/invocations",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
}
