//! `GET /`: a self-contained HTML page for people — the served model, recent closes with the
//! latest forecast and its intervals, the intervals' realised coverage against nominal with
//! the calibrator's αₜ and σ̂, recent forecasts, realised errors and drift status.
//! Rendered with minijinja from `templates/index.html` (inline CSS and SVG, no external
//! assets, so it works offline and behind any proxy).

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::value::Serde;
use minijinja::{Environment, context};
use rps_core::Bar;
use rps_core::time::{HOUR_MS, fmt_ms};
use serde::Serialize;

use crate::api::ForecastOut;
use crate::calibration::{COVERAGE_HOURS, CoinCalibration, replay_hours};
use crate::state::AppState;

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // The template is compiled into the binary; a syntax error is caught by the page test.
    if let Err(e) = env.add_template("index.html", include_str!("../templates/index.html")) {
        tracing::error!(error = %e, "the page template does not parse");
    }
    env
});

/// Bars shown per coin.
const CHART_BARS: usize = 48;

#[derive(Serialize)]
struct CoinView {
    coin: String,
    newest: String,
    last_close: f64,
    chart: Option<Chart>,
    forecast: Option<ForecastOut>,
}

/// One coin's calibrator state: coverage of each level over the last 168 h against nominal.
#[derive(Serialize)]
struct CalibrationView {
    coin: String,
    /// `None` for the package's calibrator as trained (no stored hours replayed).
    first: Option<String>,
    newest: Option<String>,
    scored: usize,
    /// σ̂ of the next hour's log return, in percent.
    sigma_pct: Option<f64>,
    levels: Vec<LevelView>,
}

#[derive(Serialize)]
struct LevelView {
    /// The nominal level in percent (`90`).
    label: String,
    coverage_pct: Option<f64>,
    hours: usize,
    alpha: f64,
    /// More than 10 points below nominal (the 90 % alert's margin).
    low: bool,
}

fn calibration_view(c: &CoinCalibration) -> CalibrationView {
    let r = c.replayed();
    CalibrationView {
        coin: c.coin().to_string(),
        first: r.map(|r| fmt_ms(r.first_ts)),
        newest: r.map(|r| fmt_ms(r.last_ts)),
        scored: c.scored(),
        sigma_pct: c.sigma().map(|s| s * 100.0),
        levels: c
            .coverage()
            .into_iter()
            .map(|l| LevelView {
                label: super::level_label(l.level),
                coverage_pct: l.coverage.map(|v| v * 100.0),
                hours: l.hours,
                alpha: l.alpha,
                low: l.coverage.is_some_and(|v| v < l.level - 0.1),
            })
            .collect(),
    }
}

/// An SVG line chart of closes plus the forecast point and its widest interval.
#[derive(Serialize)]
struct Chart {
    width: f64,
    height: f64,
    points: String,
    forecast_x: f64,
    forecast_y: f64,
    band_top: f64,
    band_bottom: f64,
    min_label: String,
    max_label: String,
}

fn chart(bars: &[Bar], forecast: Option<&ForecastOut>) -> Option<Chart> {
    let (width, height, pad) = (640.0, 180.0, 8.0);
    let newest = bars.last()?.ts;
    let mut lo = bars.iter().map(|b| b.close).fold(f64::INFINITY, f64::min);
    let mut hi = bars
        .iter()
        .map(|b| b.close)
        .fold(f64::NEG_INFINITY, f64::max);
    let f = forecast.filter(|f| f.for_hour_ms == newest + HOUR_MS);
    let widest = f.and_then(|f| {
        f.intervals
            .iter()
            .max_by(|a, b| a.level.total_cmp(&b.level))
    });
    if let Some(i) = widest {
        lo = lo.min(i.lower);
        hi = hi.max(i.upper);
    }
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        hi = lo + 1.0;
    }
    let n = bars.len() as f64; // one extra slot on the right for the forecast
    let x = |k: f64| pad + k * (width - 2.0 * pad) / n.max(1.0);
    let y = |v: f64| pad + (hi - v) / (hi - lo) * (height - 2.0 * pad);
    let points = bars
        .iter()
        .enumerate()
        .map(|(k, b)| format!("{:.1},{:.1}", x(k as f64), y(b.close)))
        .collect::<Vec<_>>()
        .join(" ");
    Some(Chart {
        width,
        height,
        points,
        forecast_x: x(n),
        forecast_y: f.map_or(-10.0, |f| y(f.forecast_close)),
        band_top: widest.map_or(0.0, |i| y(i.upper)),
        band_bottom: widest.map_or(0.0, |i| y(i.lower)),
        min_label: format!("{lo:.2}"),
        max_label: format!("{hi:.2}"),
    })
}

/// The dashboard page.
#[utoipa::path(get, path = "/", tag = "service",
    responses((status = 200, description = "HTML page: closes, forecasts, errors, drift", content_type = "text/html", body = String)))]
pub async fn index(State(state): State<AppState>) -> Response {
    let Some(model) = state.current_model() else {
        let detail = state.no_model().to_string();
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Html(format!(
                "<!doctype html><meta charset=\"utf-8\"><title>rps-serve</title>\
                 <meta http-equiv=\"refresh\" content=\"10\"><h1>rps-serve</h1><p>{}</p>",
                detail.replace('&', "&amp;").replace('<', "&lt;")
            )),
        )
            .into_response();
    };
    let recent = state.recent_bars(CHART_BARS).await;
    let (psi, rows) = state.psi();
    let (latest, forecasts, realised, ph) = state.with_monitor(|m| {
        (
            m.latest_forecast.clone(),
            m.recent_forecasts.iter().rev().cloned().collect::<Vec<_>>(),
            m.recent_realised.iter().rev().cloned().collect::<Vec<_>>(),
            (
                m.ph.drift(),
                m.ph.statistic(),
                m.ph.lambda(),
                m.ph.samples(),
            ),
        )
    });
    let coins: Vec<CoinView> = recent
        .iter()
        .map(|(coin, bars)| {
            let f = latest.get(coin).cloned();
            CoinView {
                coin: coin.clone(),
                newest: bars.last().map(|b| fmt_ms(b.ts)).unwrap_or_default(),
                last_close: bars.last().map_or(f64::NAN, |b| b.close),
                chart: chart(bars, f.as_ref()),
                forecast: f,
            }
        })
        .collect();
    let mae = if realised.is_empty() {
        None
    } else {
        Some(realised.iter().map(|r| r.abs_error).sum::<f64>() / realised.len() as f64)
    };
    let realised: Vec<_> = realised
        .into_iter()
        .map(|r| {
            context! { coin => r.coin, hour => fmt_ms(r.ts), forecast => r.forecast_close,
            actual => r.actual_close, error => r.abs_error, version => r.model_version }
        })
        .collect();
    let mut psi_rows: Vec<(String, f64)> = psi
        .as_ref()
        .map(|s| s.psi.clone().into_iter().collect())
        .unwrap_or_default();
    psi_rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let calibration: Vec<CalibrationView> = model
        .calibration
        .all()
        .iter()
        .map(|c| calibration_view(c))
        .collect();
    let settings = state.settings();
    let ctx = context! {
        model => context! {
            name => model.meta().name.clone(), version => model.version.clone(),
            run_id => model.meta().run_id.clone(), trained_at => model.meta().created_at.clone(),
            source => model.source.clone(), min_bars => model.forecaster.min_bars(),
        },
        coins => Serde(&coins),
        calibration => Serde(&calibration),
        coverage_hours => COVERAGE_HOURS,
        replay_hours => replay_hours(&model.forecaster),
        forecasts => Serde(&forecasts),
        realised,
        mae,
        data_drift => psi.as_ref().is_some_and(|s| s.drift),
        psi_ready => psi.is_some(),
        psi_rows => Serde(&psi_rows),
        psi_max => psi.as_ref().map(|s| s.max_psi),
        drifted => psi.as_ref().map_or(0, |s| s.drifted.len()),
        evaluated => psi.as_ref().map_or(0, |s| s.psi.len()),
        share_needed => settings.drift_share,
        window_rows => rows,
        min_rows => settings.drift_min_rows,
        concept_drift => ph.0, ph_stat => ph.1, ph_lambda => ph.2, ph_samples => ph.3,
    };
    match TEMPLATES
        .get_template("index.html")
        .and_then(|t| t.render(ctx))
    {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering the page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html(format!("<p>page error: {e}</p>")),
            )
                .into_response()
        }
    }
}
