//! The online calibrator in serving: at start (and on a reload) every coin's state is a
//! replay of its last `W + warmup + lookback + 1` stored hours through the model; new stored
//! bars extend it to exactly what a fresh replay of the longer history gives; a change of the
//! replayed history rebuilds it; every forecast path takes its intervals from it; client bars
//! never move it; `/metrics` and the page report its coverage, αₜ and σ̂. Each expectation is
//! computed here, independently of the server, with rps-model's `replay` over the same bars.

use rps_core::Bar;
use rps_core::time::HOUR_MS;
use rps_features::{FeatureFrame, compute, spec};
use rps_model::intervals::{OnlineCalibrator, ScoredHour, replay};
use rps_model::{Forecast, Forecaster};
use rps_testkit::model::TRAIN_END;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::protocols::{output, records, tensors};

/// An hour `k` hours after the fixture model's training data ends.
fn after_training(k: i64) -> i64 {
    TRAIN_END + k * HOUR_MS
}

fn forecaster() -> Forecaster {
    Forecaster::load(package()).unwrap()
}

/// The hours of bars the issue says a state is built from: W + warmup + lookback + 1.
fn replay_hours(fc: &Forecaster) -> i64 {
    (fc.metadata().calibrator.window + spec().warmup + fc.lookback() + 1) as i64
}

/// The fixture's bars from hour `first` to hour `newest`, both included.
fn hours(first: i64, newest: i64) -> &'static [Bar] {
    &bars()[index_at(first)..=index_at(newest)]
}

/// A replay from the package's calibrator of every feature row of some bars.
struct Fresh {
    bars: Vec<Bar>,
    cal: OnlineCalibrator,
    scored: Vec<ScoredHour>,
    frame: FeatureFrame,
    newest: i64,
}

fn fresh(fc: &Forecaster, bars: &[Bar]) -> Fresh {
    let frame = compute(COIN, bars);
    let mut cal = fc.calibrator();
    let mut scored = Vec::new();
    replay(fc, &mut cal, &frame, 0..frame.len(), |h| {
        scored.push(h.clone())
    })
    .unwrap();
    Fresh {
        bars: bars.to_vec(),
        cal,
        scored,
        frame,
        newest: bars.last().unwrap().ts,
    }
}

impl Fresh {
    /// Per level: the share of the scored hours of the last 168 h that covered.
    fn coverage(&self) -> Vec<f64> {
        let since = self.newest - 168 * HOUR_MS;
        let recent: Vec<&ScoredHour> = self.scored.iter().filter(|h| h.ts >= since).collect();
        assert!(!recent.is_empty());
        (0..self.cal.levels().len())
            .map(|k| recent.iter().filter(|h| h.covered[k]).count() as f64 / recent.len() as f64)
            .collect()
    }

    /// σ̂ after the newest bar.
    fn sigma(&self, fc: &Forecaster) -> f64 {
        let n = self.frame.len();
        assert_eq!(self.frame.ts[n - 1], self.newest);
        fc.sigma_at(&self.frame, n - 1)
    }

    /// The forecast serving makes for the `min_bars` bars ending at the newest hour.
    fn forecast(&self, fc: &Forecaster) -> Forecast {
        let w = &self.bars[self.bars.len() - fc.min_bars()..];
        fc.predict_with(&compute(COIN, w), &self.cal).unwrap()
    }
}

/// Asserts the served state of BTC is `want`'s, replayed from hour `first`.
fn assert_state(app: &TestApp, want: &Fresh, first: i64) {
    let s = app
        .state
        .calibration(COIN)
        .expect("a calibrator state for BTC");
    assert_eq!(
        s.replayed().map(|r| (r.first_ts, r.last_ts)),
        Some((first, want.newest)),
        "the hours replayed"
    );
    assert_eq!(s.scored(), want.scored.len(), "hours scored");
    let (got, want) = (s.calibrator().state(), want.cal.state());
    assert_eq!(got.levels, want.levels);
    assert_eq!(got.alpha, want.alpha, "αₜ");
    assert_eq!(got.scores.len(), want.scores.len(), "scores in the window");
    let differ = got
        .scores
        .iter()
        .zip(&want.scores)
        .position(|(a, b)| a != b);
    assert_eq!(differ, None, "the first score that differs");
}

/// Asserts a response's `intervals` are `want`'s, bit for bit.
fn assert_intervals(f: &Value, want: &Forecast, how: &str) {
    let got = f["intervals"]
        .as_array()
        .unwrap_or_else(|| panic!("{how}: {f}"));
    assert_eq!(got.len(), want.intervals.len(), "{how}: {f}");
    for (g, w) in got.iter().zip(&want.intervals) {
        assert_eq!(g["level"].as_f64(), Some(w.level), "{how}");
        assert_eq!(g["lower"].as_f64(), Some(w.lower), "{how}: {f}");
        assert_eq!(g["upper"].as_f64(), Some(w.upper), "{how}: {f}");
    }
    assert_eq!(f["forecast_close"].as_f64(), Some(want.close), "{how}");
}

/// Asserts `/metrics` carries `want`'s coverage and αₜ per level and its σ̂.
async fn assert_gauges(app: &TestApp, fc: &Forecaster, want: &Fresh) {
    let m = app.metrics().await;
    let close = |a: Option<f64>, b: f64, what: &str| {
        let a = a.unwrap_or_else(|| panic!("no {what} in\n{m}"));
        assert!(
            (a - b).abs() <= 1e-12 * b.abs().max(1e-300),
            "{what}: {a} vs {b}"
        );
    };
    let coverage = want.coverage();
    for (k, level) in want.cal.levels().iter().enumerate() {
        let labels = format!(r#"{{coin="{COIN}",level="{level}"}}"#);
        close(
            sample(&m, &format!("rps_interval_coverage_168h{labels}")),
            coverage[k],
            "coverage",
        );
        close(
            sample(&m, &format!("rps_interval_alpha{labels}")),
            want.cal.alpha()[k],
            "alpha",
        );
    }
    close(
        sample(&m, &format!(r#"rps_forecast_sigma{{coin="{COIN}"}}"#)),
        want.sigma(fc),
        "sigma",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intervals_served_at_start_are_those_of_a_replay_of_the_last_stored_hours() {
    let fc = forecaster();
    let newest = after_training(300);
    let (app, _store) = app_with_store_until(newest, Opts::default()).await;
    let first = newest - (replay_hours(&fc) - 1) * HOUR_MS;
    let want = fresh(&fc, hours(first, newest));
    // The fixture has no gap: every row whose window and outcome are in the bars is scored.
    let w = fc.metadata().calibrator.window;
    assert_eq!(want.scored.len(), w + 1);
    assert_state(&app, &want, first);

    // The store forecast, a client's window of the same bars, and the serving protocols all
    // take their intervals from that state.
    let expected = want.forecast(&fc);
    let initial = fc
        .predict(&compute(COIN, window_ending(newest, fc.min_bars())))
        .unwrap();
    assert_ne!(
        expected.intervals, initial.intervals,
        "the replayed state moved the intervals away from the package's as trained"
    );
    let f = app.store_forecast().await;
    assert_intervals(&f, &expected, "store forecast");
    let (status, c) = app.predict_at(newest).await;
    assert_eq!(status, 200, "{c}");
    assert_intervals(&c, &expected, "client bars");
    let window = window_ending(newest, fc.min_bars());
    let v: Value = app
        .post(
            "/invocations",
            &json!({"dataframe_records": records(window)}),
        )
        .await
        .json()
        .await
        .unwrap();
    for i in &expected.intervals {
        let pct = (i.level * 100.0).round();
        let p = &v["predictions"][0];
        assert_eq!(p[format!("lower_{pct}")].as_f64(), Some(i.lower), "{v}");
        assert_eq!(p[format!("upper_{pct}")].as_f64(), Some(i.upper), "{v}");
    }
    let v: Value = app
        .post(
            &format!("/v2/models/{MODEL_NAME}/infer"),
            &json!({"inputs": tensors(window, false)}),
        )
        .await
        .json()
        .await
        .unwrap();
    let lowers: Vec<f64> = expected.intervals.iter().map(|i| i.lower).collect();
    assert_eq!(output(&v, "lower")["data"], json!(lowers), "{v}");

    // The gauges and the page report the same state.
    assert_gauges(&app, &fc, &want).await;
    let html = app.get("/").await.text().await.unwrap();
    assert!(
        html.contains("Prediction intervals: coverage of the last 168 h"),
        "{html}"
    );
    for (k, c) in want.coverage().iter().enumerate() {
        assert!(
            html.contains(&format!("{:.1} %", c * 100.0)),
            "coverage {k}"
        );
        assert!(
            html.contains(&format!("{:.4}", want.cal.alpha()[k])),
            "α {k}"
        );
    }
    assert!(
        html.contains(&format!("{:.3} %", want.sigma(&fc) * 100.0)),
        "σ̂"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_stored_bars_extend_the_state_to_a_replay_of_the_longer_history() {
    let fc = forecaster();
    let newest = after_training(600);
    let (app, _store) = app_with_store_until(newest, Opts::default()).await;
    let first = newest - (replay_hours(&fc) - 1) * HOUR_MS;
    assert_state(&app, &fresh(&fc, hours(first, newest)), first);
    let start_alpha = fc.calibrator().alpha().to_vec();

    // One new hour, then 47 at once: each time the state is the replay of every stored hour
    // from the same first hour, and every forecast path uses it.
    for later in [1, 48] {
        let now = newest + later * HOUR_MS;
        app.store_bars(&bars()[..=index_at(now)]).await;
        let want = fresh(&fc, hours(first, now));
        assert_eq!(
            want.scored.len(),
            fc.metadata().calibrator.window + 1 + later as usize
        );
        assert_state(&app, &want, first);
        let expected = want.forecast(&fc);
        assert_intervals(&app.store_forecast().await, &expected, "store forecast");
        let (status, c) = app.predict_at(now).await;
        assert_eq!(status, 200, "{c}");
        assert_intervals(&c, &expected, "client bars");
        assert_gauges(&app, &fc, &want).await;
        assert_ne!(want.cal.alpha(), &start_alpha[..]);
    }

    // A replayed bar rewritten (with the next hour): the state is rebuilt from the last
    // hours of the new history.
    let now = newest + 49 * HOUR_MS;
    let mut revised = bars()[..=index_at(now)].to_vec();
    let k = index_at(newest - 100 * HOUR_MS);
    revised[k].close *= 1.01;
    revised[k].high = revised[k].high.max(revised[k].close);
    app.store_bars(&revised).await;
    let first = now - (replay_hours(&fc) - 1) * HOUR_MS;
    let want = fresh(&fc, &revised[index_at(first)..]);
    assert_state(&app, &want, first);
    assert_intervals(
        &app.store_forecast().await,
        &want.forecast(&fc),
        "store forecast after the rebuild",
    );
    assert_gauges(&app, &fc, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_a_client_sends_never_move_the_calibrator_state() {
    let fc = forecaster();
    let newest = after_training(200);
    let (app, _store) = app_with_store_until(newest, Opts::default()).await;
    let before = app.state.calibration(COIN).unwrap();
    let store_f = app.store_forecast().await;
    let gauges = |m: &str| {
        m.lines()
            .filter(|l| l.starts_with("rps_interval_") || l.starts_with("rps_forecast_sigma"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let gauges_before = gauges(&app.metrics().await);
    assert_eq!(gauges_before.len(), 2 * fc.calibrator().levels().len() + 1);

    // The real hours after the store's newest (what the store will hold an hour later), and
    // a wild window, through /predict, /predict/batch and both protocols.
    for later in [1, 24] {
        let w = window_ending(newest + later * HOUR_MS, fc.min_bars());
        let wild: Vec<Bar> = w
            .iter()
            .map(|b| Bar {
                open: b.open * 7.0,
                high: b.high * 7.0 * 3.0,
                low: b.low * 7.0,
                close: b.close * 7.0,
                ..b.clone()
            })
            .collect();
        for sent in [w, &wild[..]] {
            let r = app
                .post("/predict", &json!({"coin": COIN, "bars": bars_json(sent)}))
                .await;
            assert_eq!(r.status(), 200);
            let r = app
                .post(
                    "/predict/batch",
                    &json!({"requests": [{"coin": COIN, "bars": bars_json(sent)}]}),
                )
                .await;
            assert_eq!(r.status(), 200);
            let r = app
                .post("/invocations", &json!({"dataframe_records": records(sent)}))
                .await;
            assert_eq!(r.status(), 200);
            let r = app
                .post(
                    &format!("/v2/models/{MODEL_NAME}/infer"),
                    &json!({"inputs": tensors(sent, false)}),
                )
                .await;
            assert_eq!(r.status(), 200);
        }
    }

    let after = app.state.calibration(COIN).unwrap();
    assert_eq!(after.calibrator().state(), before.calibrator().state());
    assert_eq!(after.replayed(), before.replayed());
    assert_eq!(after.scored(), before.scored());
    assert_eq!(gauges(&app.metrics().await), gauges_before);
    let f = app.store_forecast().await;
    assert_eq!(f["intervals"], store_f["intervals"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_stored_bars_the_package_state_serves_until_bars_land() {
    let fc = forecaster();
    let app = spawn_app().await;
    let s = app
        .state
        .calibration(COIN)
        .expect("the model's coin has a state");
    assert_eq!(s.replayed(), None);
    assert_eq!(s.calibrator().state(), fc.calibrator().state());
    let h = after_training(100);
    let initial = fc
        .predict(&compute(COIN, window_ending(h, fc.min_bars())))
        .unwrap();
    let (status, f) = app.predict_at(h).await;
    assert_eq!(status, 200, "{f}");
    assert_intervals(&f, &initial, "client bars, no stored hours");
    let m = app.metrics().await;
    for (k, level) in fc.calibrator().levels().iter().enumerate() {
        let labels = format!(r#"{{coin="{COIN}",level="{level}"}}"#);
        assert_eq!(
            sample(&m, &format!("rps_interval_alpha{labels}")),
            Some(fc.calibrator().alpha()[k])
        );
        assert_eq!(
            sample(&m, &format!("rps_interval_coverage_168h{labels}")),
            None,
            "no scored hour, no coverage series"
        );
    }
    assert!(!m.contains("rps_forecast_sigma{"), "{m}");

    // Bars land: the state is built from the last stored hours.
    app.store_bars(&bars()[..=index_at(h)]).await;
    let first = h - (replay_hours(&fc) - 1) * HOUR_MS;
    let want = fresh(&fc, hours(first, h));
    assert_state(&app, &want, first);
    assert_intervals(
        &app.store_forecast().await,
        &want.forecast(&fc),
        "store forecast",
    );
    assert_gauges(&app, &fc, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_model_serves_with_its_own_replayed_state() {
    let newest = after_training(400);
    let (app, _store) = app_with_store_until(newest, Opts::default()).await;
    let old = app.state.calibration(COIN).unwrap();

    // The same weights with a faster ACI step: a model whose replayed state differs.
    let dir = app.model_dir.clone().unwrap();
    edit_metadata(&dir, |m| {
        m["calibrator"]["gamma"] = json!(0.05);
        m["version"] = json!("8");
    });
    assert!(
        eventually(60, || async {
            app.state.current_model().unwrap().version == "8"
        })
        .await
    );
    let fc = Forecaster::load(&dir).unwrap();
    assert_eq!(fc.calibrator().params().gamma, 0.05);
    let first = newest - (replay_hours(&fc) - 1) * HOUR_MS;
    let want = fresh(&fc, hours(first, newest));
    assert_state(&app, &want, first);
    assert_ne!(
        want.cal.alpha(),
        old.calibrator().alpha(),
        "the new step gives another state"
    );
    let f = app.store_forecast().await;
    assert_eq!(f["model"]["version"], "8");
    assert_intervals(&f, &want.forecast(&fc), "store forecast of the new model");
    assert_gauges(&app, &fc, &want).await;
}
