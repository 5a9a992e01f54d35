//! The LiveCoinWatch source against a local server that speaks the documented JSON.

use std::time::Duration;

use rps_core::parquet_io::read_bars;
use rps_core::time::HOUR_MS;
use rps_extract::livecoinwatch::ClientOptions;
use rps_extract::{Config, LcwSettings, SourceConfig, run};

use crate::common::*;

fn config(api: &FakeApi, b: &Backend, start: Option<i64>, end: Option<i64>) -> Config {
    Config {
        store: b.location(),
        s3: b.s3_options(),
        source: SourceConfig::Livecoinwatch(LcwSettings {
            api_key: Some(KEY.into()),
            client: ClientOptions {
                base: api.base.clone(),
                request_interval: Duration::ZERO,
                max_retries: 3,
                retry_base: Duration::from_millis(5),
                retry_max: Duration::from_millis(20),
                timeout: Duration::from_secs(10),
            },
            window_hours: 24,
            backfill_days: 30,
            credits_check_above: 10,
        }),
        coins: None,
        start,
        end,
        revisions: Default::default(),
    }
}

fn ms(t: i64) -> String {
    rps_core::time::fmt_ms(t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_backfills_the_range_in_windows_and_resamples_into_hours() {
    let api = FakeApi::start((D0 - 40 * DAY, D0 + 40 * DAY), vec![]).await;
    let b = Backend::local();
    // A range that starts and ends mid-day: three grid windows, 62 hours.
    let (start, end) = (D0 + 5 * HOUR_MS, D0 + 2 * DAY + 19 * HOUR_MS);
    let summary = run(config(&api, &b, Some(start), Some(end))).await.unwrap();

    assert_eq!(
        api.state.history_requests(),
        vec![
            (D0, D0 + DAY),
            (D0 + DAY, D0 + 2 * DAY),
            (D0 + 2 * DAY, D0 + 3 * DAY)
        ]
    );
    let seen = api.state.seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|s| s.key.as_deref() == Some(KEY)),
        "every request carries x-api-key"
    );
    assert!(
        seen.iter()
            .all(|s| s.content_type.as_deref() == Some("application/json"))
    );
    assert_eq!(
        seen[0].endpoint, "coins/map",
        "coin codes are checked first"
    );

    let bars = read_bars(&b.store(), "BTC").await.unwrap();
    assert_eq!(bars.len(), 62);
    assert_eq!((bars[0].ts, bars[61].ts), (start, end - HOUR_MS));
    for bar in &bars {
        let (o, h, l, c, n) = expected_bar(&api.state, bar.ts).unwrap();
        // serde_json's default float parser may differ from the exact value by one ulp.
        let near = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs();
        let ok = near(bar.open, o)
            && near(bar.high, h)
            && near(bar.low, l)
            && near(bar.close, c)
            && bar.points == n;
        assert!(
            ok,
            "hour {}: {:?} vs {:?}",
            ms(bar.ts),
            (bar.open, bar.high, bar.low, bar.close, bar.points),
            (o, h, l, c, n)
        );
        assert_eq!(bar.source, rps_core::Source::Livecoinwatch);
        assert!(bar.volume.is_some() && bar.cap.is_some());
    }
    assert!(
        summary.skipped_points > 0,
        "the fake has null rates; they are skipped, not stored"
    );
    assert!(
        bars.iter().any(|b| b.points == 11),
        "an hour with a null point has 11 points, not 12"
    );
    assert_eq!((summary.coins[0].append.inserted, summary.retries), (62, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_runs_fetch_from_the_last_stored_hour_and_match_the_backfill() {
    let api = FakeApi::start((D0 - 40 * DAY, D0 + 40 * DAY), vec![]).await;
    let backfilled = Backend::local();
    run(config(&api, &backfilled, Some(D0), Some(D0 + 2 * DAY)))
        .await
        .unwrap();

    let hourly = Backend::local();
    run(config(&api, &hourly, Some(D0), Some(D0 + DAY)))
        .await
        .unwrap();
    let before = api.state.history_requests().len();
    // Then hourly runs like Airflow's, each with only --end: they continue from the last
    // stored hour.
    for h in 1..=24 {
        let s = run(config(&api, &hourly, None, Some(D0 + DAY + h * HOUR_MS)))
            .await
            .unwrap();
        assert_eq!(
            s.coins[0].append.inserted, 1,
            "run {h} adds exactly the new hour"
        );
        assert_eq!(
            s.coins[0].append.replaced, 0,
            "the re-fetched last hour is unchanged"
        );
    }
    let incremental = &api.state.history_requests()[before..];
    // One window per hourly run, on the backfill's grid. The first run also re-fetches the last
    // stored hour (23:00 of day 1), which lives in the previous day's window.
    assert_eq!(incremental.len(), 25);
    assert_eq!(incremental[..2], [(D0, D0 + DAY), (D0 + DAY, D0 + 2 * DAY)]);
    assert!(
        incremental[2..]
            .iter()
            .all(|&w| w == (D0 + DAY, D0 + 2 * DAY)),
        "{incremental:?}"
    );

    let a = read_bars(&backfilled.store(), "BTC").await.unwrap();
    let b = read_bars(&hourly.store(), "BTC").await.unwrap();
    assert_eq!(a.len(), 48);
    assert_eq!(
        strip(&a),
        strip(&b),
        "backfill and incremental runs give the same bars"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_start_the_first_run_backfills_thirty_days_and_checks_credits() {
    let api = FakeApi::start((D0 - 40 * DAY, D0 + 40 * DAY), vec![]).await;
    let b = Backend::local();
    let s = run(config(&api, &b, None, Some(D0))).await.unwrap();
    assert_eq!(api.state.history_requests().len(), 30);
    assert_eq!(
        api.state.count("credits"),
        1,
        "a 30-request backfill checks credits first"
    );
    assert_eq!(s.coins[0].append.stored_rows, 30 * 24);
    assert_eq!(s.coins[0].first_ts, Some(D0 - 30 * DAY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_beyond_the_credits_left_is_refused_before_any_history_request() {
    let api = FakeApi::start((D0 - 40 * DAY, D0 + 40 * DAY), vec![]).await;
    *api.state.credits_remaining.lock().unwrap() = 12;
    let b = Backend::local();
    let out = extract_on(
        &b,
        &[
            "--source",
            "livecoinwatch",
            "--api-base",
            &api.base,
            "--end",
            &ms(D0),
        ],
        &[("LIVE_COIN_WATCH_API_KEY", KEY)],
    )
    .await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.error_line().contains("needs 30 requests") && out.error_line().contains("12 credits"),
        "{}",
        out.error_line()
    );
    assert_eq!(api.state.history_requests().len(), 0);
    assert!(b.snapshot().await.is_empty(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_then_200_succeeds_after_one_counted_retry() {
    let api = FakeApi::start((D0 - 40 * DAY, D0 + 40 * DAY), vec![]).await;
    let mut s = Scripted::new(
        "coins/single/history",
        429,
        r#"{"error":{"code":429,"status":"Too Many Requests","description":"slow down"}}"#,
    );
    s.headers.push(("retry-after", "0".into()));
    api.script(s);
    let b = Backend::local();
    let summary = run(config(&api, &b, Some(D0), Some(D0 + DAY)))
        .await
        .unwrap();
    assert_eq!(summary.retries, 1);
    assert_eq!(
        api.state.history_requests().len(),
        2,
        "the window was asked twice"
    );
    assert_eq!(read_bars(&b.store(), "BTC").await.unwrap().len(), 24);
    assert!(summary.to_string().contains("retries=1"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_until_the_last_retry_exit_4_and_leave_the_store_unchanged() {
    let api = FakeApi::start((D0 - 40 * DAY, D0 + 40 * DAY), vec![]).await;
    let b = Backend::local();
    run(config(&api, &b, Some(D0), Some(D0 + DAY)))
        .await
        .unwrap();
    let before = b.snapshot().await;
    for _ in 0..3 {
        api.script(Scripted::new(
            "coins/single/history",
            500,
            r#"{"error":{"code":500,"description":"internal"}}"#,
        ));
    }
    let end = ms(D0 + 2 * DAY);
    let out = extract_on(
        &b,
        &[
            "--source",
            "livecoinwatch",
            "--api-base",
            &api.base,
            "--end",
            &end,
            "--max-retries",
            "2",
            "--retry-base-ms",
            "1",
            "--request-interval-ms",
            "0",
        ],
        &[("LIVE_COIN_WATCH_API_KEY", KEY)],
    )
    .await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.error_line().contains("gave up after 3 attempts")
            && out.error_line().contains("HTTP 500"),
        "{}",
        out.error_line()
    );
    assert_eq!(b.snapshot().await, before, "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_exits_2_naming_the_variable_without_retrying_or_leaking_it() {
    let api = FakeApi::start((D0 - 40 * DAY, D0 + 40 * DAY), vec![]).await;
    let b = Backend::local();
    let wrong = "wrong-key-4f9a1c";
    let out = extract_on(
        &b,
        &[
            "--source",
            "livecoinwatch",
            "--api-base",
            &api.base,
            "--end",
            &ms(D0),
        ],
        &[("LIVE_COIN_WATCH_API_KEY", wrong), ("RUST_LOG", "trace")],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.error_line().contains("LIVE_COIN_WATCH_API_KEY") && out.error_line().contains("401"),
        "{}",
        out.error_line()
    );
    assert!(
        !out.stderr.contains(wrong) && !out.stdout.contains(wrong),
        "the key never appears, even at trace level"
    );
    assert_eq!(
        api.state.seen.lock().unwrap().len(),
        1,
        "a 401 is not retried"
    );
    assert!(b.snapshot().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_exits_2_naming_the_variable() {
    let b = Backend::local();
    let out = extract_on(
        &b,
        &[
            "--source",
            "livecoinwatch",
            "--api-base",
            "http://127.0.0.1:9/",
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.error_line()
            .contains("LIVE_COIN_WATCH_API_KEY is not set"),
        "{}",
        out.error_line()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_client_errors_fail_at_once() {
    let api = FakeApi::start((D0 - 40 * DAY, D0 + 40 * DAY), vec![]).await;
    api.script(Scripted::new(
        "coins/single/history",
        400,
        r#"{"error":{"code":400,"description":"bad range"}}"#,
    ));
    let b = Backend::local();
    let err = run(config(&api, &b, Some(D0), Some(D0 + DAY)))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("HTTP 400") && err.to_string().contains("bad range"),
        "{err}"
    );
    assert_eq!(api.state.history_requests().len(), 1, "no retry of a 400");
    assert_eq!(err.exit_code(), rps_core::ExitCode::External);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_200_is_an_error_not_an_empty_result() {
    let api = FakeApi::start((D0 - 40 * DAY, D0 + 40 * DAY), vec![]).await;
    let b = Backend::local();
    run(config(&api, &b, Some(D0), Some(D0 + DAY)))
        .await
        .unwrap();
    let before = b.snapshot().await;
    for body in [
        r#"{"histroy": []}"#,
        "<html>maintenance</html>",
        r#"{"history": [{"date": "yesterday", "rate": 1}]}"#,
    ] {
        api.script(Scripted::new("coins/single/history", 200, body));
        let out = extract_on(
            &b,
            &[
                "--source",
                "livecoinwatch",
                "--api-base",
                &api.base,
                "--end",
                &ms(D0 + 2 * DAY),
                "--request-interval-ms",
                "0",
            ],
            &[("LIVE_COIN_WATCH_API_KEY", KEY)],
        )
        .await;
        assert_eq!(out.code, 4, "{body}: {}", out.stderr);
        assert!(
            out.error_line().contains("malformed response"),
            "{}",
            out.error_line()
        );
        assert_eq!(b.snapshot().await, before);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_rates_are_skipped_and_the_other_points_make_the_bar() {
    let api = FakeApi::start((D0 - 40 * DAY, D0 + 40 * DAY), vec![]).await;
    let h = D0 + 3 * HOUR_MS;
    let body = serde_json::json!({"history": [
        {"date": h, "rate": null, "volume": null, "cap": null},
        {"date": h + 60_000, "rate": 101.0, "volume": 5.0, "cap": 7.0},
        {"date": h + 120_000, "rate": null, "volume": 6.0, "cap": null},
        {"date": h + 180_000, "rate": 99.0, "volume": 8.0, "cap": 9.0},
        {"date": h + 2 * HOUR_MS, "rate": null},
    ]});
    api.script(Scripted::new(
        "coins/single/history",
        200,
        &body.to_string(),
    ));
    let b = Backend::local();
    let s = run(config(&api, &b, Some(D0), Some(D0 + DAY)))
        .await
        .unwrap();
    let bars = read_bars(&b.store(), "BTC").await.unwrap();
    assert_eq!(
        bars.len(),
        1,
        "an hour of only null rates is a gap, not a bar"
    );
    assert_eq!(
        (
            bars[0].ts,
            bars[0].open,
            bars[0].high,
            bars[0].low,
            bars[0].close,
            bars[0].points
        ),
        (h, 101.0, 101.0, 99.0, 99.0, 2)
    );
    assert_eq!((bars[0].volume, bars[0].cap), (Some(8.0), Some(9.0)));
    assert_eq!(s.skipped_points, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hours_without_observations_stay_gaps() {
    let gap = (D0 + 10 * HOUR_MS, D0 + 13 * HOUR_MS);
    let api = FakeApi::start((D0 - 40 * DAY, D0 + 40 * DAY), vec![gap]).await;
    let b = Backend::local();
    run(config(&api, &b, Some(D0), Some(D0 + DAY)))
        .await
        .unwrap();
    let ts: Vec<i64> = read_bars(&b.store(), "BTC")
        .await
        .unwrap()
        .iter()
        .map(|b| b.ts)
        .collect();
    assert_eq!(ts.len(), 21);
    for h in 0..24 {
        let t = D0 + h * HOUR_MS;
        assert_eq!(ts.contains(&t), !(10..13).contains(&h), "hour {h}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_coin_code_exits_2_before_fetching_and_writes_nothing() {
    let api = FakeApi::start((D0 - 40 * DAY, D0 + 40 * DAY), vec![]).await;
    let b = Backend::local();
    let out = extract_on(
        &b,
        &[
            "--source",
            "livecoinwatch",
            "--api-base",
            &api.base,
            "--coins",
            "BTC,NOPE",
            "--end",
            &ms(D0),
        ],
        &[("LIVE_COIN_WATCH_API_KEY", KEY)],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.error_line().contains("unknown coin code NOPE"),
        "{}",
        out.error_line()
    );
    assert_eq!(api.state.history_requests().len(), 0);
    assert!(b.snapshot().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_coins_land_in_their_own_files_and_the_summary_line_names_them() {
    let api = FakeApi::start((D0 - 40 * DAY, D0 + 40 * DAY), vec![]).await;
    let b = Backend::local();
    let out = extract_on(
        &b,
        &[
            "--source",
            "livecoinwatch",
            "--api-base",
            &api.base,
            "--coins",
            "btc,eth",
            "--start",
            &ms(D0),
            "--end",
            &ms(D0 + DAY),
            "--request-interval-ms",
            "0",
        ],
        &[("LIVE_COIN_WATCH_API_KEY", KEY)],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1);
    assert!(
        out.stdout.contains("coins=BTC,ETH")
            && out.stdout.contains("inserted=48")
            && out.stdout.contains("stored=BTC:24,ETH:24"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("backfill progress"),
        "long runs log their progress"
    );
    for coin in ["BTC", "ETH"] {
        assert_eq!(read_bars(&b.store(), coin).await.unwrap().len(), 24);
    }
}
