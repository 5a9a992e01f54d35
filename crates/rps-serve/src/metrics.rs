//! Every Prometheus metric the server exposes, defined here and nowhere else, so the names in
//! `monitoring/` (alerts, dashboards) have one source of truth.
//!
//! Names follow `rps_<name>_<unit>[_total]`; label sets are small and bounded: routes are the
//! matched route templates (or `unmatched`), coins are only those the model or the store
//! knows, levels come from the model package. Raw request input never becomes a label.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A gauge holding an `f64`.
pub type GaugeF = Gauge<f64, AtomicU64>;

/// The exposed metric names (as Prometheus stores them, counters with `_total`), in the order
/// they are registered. Tests and the monitoring checks use this list.
pub const NAMES: &[&str] = &[
    HTTP_REQUESTS,
    HTTP_DURATION,
    INFERENCE_LATENCY,
    MODEL_INFO,
    MODEL_RELOADS,
    FEATURE_PSI,
    DATA_DRIFT,
    FORECAST_ABS_ERROR,
    CONCEPT_DRIFT,
    PAGE_HINKLEY,
    NEWEST_BAR_AGE,
    FORECAST_CLOSE,
    FORECAST_LOWER,
    FORECAST_UPPER,
    ACTUAL_CLOSE,
    INTERVAL_COVERAGE,
    INTERVAL_ALPHA,
    FORECAST_SIGMA,
    PREDICTIONS,
    OPEN_CONNECTIONS,
    CONNECTIONS_SHED,
];

/// HTTP requests by route template and status code.
pub const HTTP_REQUESTS: &str = "rps_http_requests_total";
/// Seconds from a request's arrival to its response, per route template (all statuses).
pub const HTTP_DURATION: &str = "rps_http_request_duration_seconds";
/// Time to compute features and run the model for one forecast (cache hits excluded).
pub const INFERENCE_LATENCY: &str = "rps_inference_latency_seconds";
/// 1 for the model being served, labelled with its identity.
pub const MODEL_INFO: &str = "rps_model_info";
/// Model reload attempts by result.
pub const MODEL_RELOADS: &str = "rps_model_reloads_total";
/// PSI of each model input over the recent-inputs window vs the package's reference.
pub const FEATURE_PSI: &str = "rps_feature_psi";
/// 1 when at least the drift share of features have a PSI above their limit
/// ([`rps_monitor::drift::DriftRule`]).
pub const DATA_DRIFT: &str = "rps_data_drift";
/// Absolute error of past forecasts once the actual close is known, USD.
pub const FORECAST_ABS_ERROR: &str = "rps_forecast_abs_error_usd";
/// 1 when the Page-Hinkley detector has fired on the forecast errors.
pub const CONCEPT_DRIFT: &str = "rps_concept_drift";
/// The Page-Hinkley statistic (cumulative deviation above its running minimum).
pub const PAGE_HINKLEY: &str = "rps_page_hinkley_statistic";
/// Seconds since the newest stored bar closed, per coin.
pub const NEWEST_BAR_AGE: &str = "rps_newest_bar_age_seconds";
/// Latest forecast close per coin, USD.
pub const FORECAST_CLOSE: &str = "rps_forecast_close_usd";
/// Lower bound of the latest forecast's interval per coin and level, USD.
pub const FORECAST_LOWER: &str = "rps_forecast_lower_usd";
/// Upper bound of the latest forecast's interval per coin and level, USD.
pub const FORECAST_UPPER: &str = "rps_forecast_upper_usd";
/// Latest realised close per coin (store or feedback), USD.
pub const ACTUAL_CLOSE: &str = "rps_actual_close_usd";
/// Realised coverage of each coin's intervals per level over the last 168 scored hours of its
/// calibrator state (share of hours whose close fell inside).
pub const INTERVAL_COVERAGE: &str = "rps_interval_coverage_168h";
/// The calibrator's current miscoverage target αₜ per coin and level (adaptive conformal
/// inference moves it from `1 − level`).
pub const INTERVAL_ALPHA: &str = "rps_interval_alpha";
/// Forecast volatility σ̂ of the next hour's log return per coin (the newest stored hour's).
pub const FORECAST_SIGMA: &str = "rps_forecast_sigma";
/// Forecasts served per coin (cache hits included).
pub const PREDICTIONS: &str = "rps_predictions_total";
/// HTTP connections open right now.
pub const OPEN_CONNECTIONS: &str = "rps_http_open_connections";
/// Connections refused with a 503 because the connection cap was reached.
pub const CONNECTIONS_SHED: &str = "rps_http_connections_shed_total";

/// `{route, status}` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Matched route template, e.g. `/predict`, or `unmatched`.
    pub route: String,
    /// Status code, e.g. `200`.
    pub status: String,
}

/// `{route}` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Matched route template, e.g. `/predict`, or `unmatched`.
    pub route: String,
}

/// Identity of the served model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelInfoLabels {
    /// Registered model name.
    pub name: String,
    /// Registry version.
    pub version: String,
    /// Training run id.
    pub run_id: String,
    /// Feature-spec hash the model was trained with.
    pub spec_hash: String,
}

/// `{result}` of a reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `success` or `failure`.
    pub result: String,
}

/// `{feature}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabels {
    /// Feature name from the feature spec.
    pub feature: String,
}

/// `{coin}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CoinLabels {
    /// Coin code, e.g. `BTC`.
    pub coin: String,
}

/// `{coin, level}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CoinLevelLabels {
    /// Coin code.
    pub coin: String,
    /// Interval coverage level, e.g. `0.9`.
    pub level: String,
}

/// Latency buckets (seconds): 50 µs .. 2.5 s; the alert threshold 0.5 s is a bucket edge.
const LATENCY_BUCKETS: [f64; 15] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
];
/// Request-duration buckets (seconds): 50 µs .. 10 s (the default request timeout); the
/// latency alert's 0.25 s is a bucket edge.
const HTTP_BUCKETS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// A histogram family whose series all use `HTTP_BUCKETS`.
pub type RouteHistograms = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

/// Absolute error buckets (USD): an hourly BTC move is typically tens to hundreds of dollars.
const ERROR_BUCKETS: [f64; 12] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0, 12800.0,
];

/// The server's metrics and the registry that exposes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// [`HTTP_REQUESTS`]
    pub http_requests: Family<HttpLabels, Counter>,
    /// [`HTTP_DURATION`]
    pub http_duration: RouteHistograms,
    /// [`INFERENCE_LATENCY`]
    pub inference_latency: Histogram,
    /// [`MODEL_INFO`]
    pub model_info: Family<ModelInfoLabels, Gauge>,
    /// [`MODEL_RELOADS`]
    pub model_reloads: Family<ReloadLabels, Counter>,
    /// [`FEATURE_PSI`]
    pub feature_psi: Family<FeatureLabels, GaugeF>,
    /// [`DATA_DRIFT`]
    pub data_drift: Gauge,
    /// [`FORECAST_ABS_ERROR`]
    pub forecast_abs_error: Histogram,
    /// [`CONCEPT_DRIFT`]
    pub concept_drift: Gauge,
    /// [`PAGE_HINKLEY`]
    pub page_hinkley: GaugeF,
    /// [`NEWEST_BAR_AGE`]
    pub newest_bar_age: Family<CoinLabels, GaugeF>,
    /// [`FORECAST_CLOSE`]
    pub forecast_close: Family<CoinLabels, GaugeF>,
    /// [`FORECAST_LOWER`]
    pub forecast_lower: Family<CoinLevelLabels, GaugeF>,
    /// [`FORECAST_UPPER`]
    pub forecast_upper: Family<CoinLevelLabels, GaugeF>,
    /// [`ACTUAL_CLOSE`]
    pub actual_close: Family<CoinLabels, GaugeF>,
    /// [`INTERVAL_COVERAGE`]
    pub interval_coverage: Family<CoinLevelLabels, GaugeF>,
    /// [`INTERVAL_ALPHA`]
    pub interval_alpha: Family<CoinLevelLabels, GaugeF>,
    /// [`FORECAST_SIGMA`]
    pub forecast_sigma: Family<CoinLabels, GaugeF>,
    /// [`PREDICTIONS`]
    pub predictions: Family<CoinLabels, Counter>,
    /// [`OPEN_CONNECTIONS`]
    pub open_connections: Gauge,
    /// [`CONNECTIONS_SHED`]
    pub connections_shed: Counter,
    /// [`HTTP_DURATION`] histograms and [`HTTP_REQUESTS`] counters already resolved, by
    /// route then status, so observing a request allocates no label strings (routes and
    /// statuses are bounded sets).
    http_handles: RwLock<HashMap<String, RouteHandles>>,
}

/// One route's resolved series.
#[derive(Debug)]
struct RouteHandles {
    duration: Histogram,
    by_status: Vec<(u16, Counter)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registry names drop the `_total` suffix: the OpenMetrics encoder appends it to counters.
fn reg_name(full: &'static str) -> &'static str {
    full.strip_suffix("_total").unwrap_or(full)
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(http_histogram as fn() -> Histogram),
            inference_latency: Histogram::new(LATENCY_BUCKETS),
            model_info: Family::default(),
            model_reloads: Family::default(),
            feature_psi: Family::default(),
            data_drift: Gauge::default(),
            forecast_abs_error: Histogram::new(ERROR_BUCKETS),
            concept_drift: Gauge::default(),
            page_hinkley: GaugeF::default(),
            newest_bar_age: Family::default(),
            forecast_close: Family::default(),
            forecast_lower: Family::default(),
            forecast_upper: Family::default(),
            actual_close: Family::default(),
            interval_coverage: Family::default(),
            interval_alpha: Family::default(),
            forecast_sigma: Family::default(),
            predictions: Family::default(),
            open_connections: Gauge::default(),
            connections_shed: Counter::default(),
            http_handles: RwLock::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            reg_name(HTTP_REQUESTS),
            "HTTP requests by route template and status code",
            m.http_requests.clone(),
        );
        r.register(
            HTTP_DURATION,
            "Seconds from request arrival to response, by route template",
            m.http_duration.clone(),
        );
        r.register(
            INFERENCE_LATENCY,
            "Seconds to compute features and run the model for one forecast (cache hits excluded)",
            m.inference_latency.clone(),
        );
        r.register(
            MODEL_INFO,
            "1 for the model being served; its identity is in the labels",
            m.model_info.clone(),
        );
        r.register(
            reg_name(MODEL_RELOADS),
            "Model reload attempts by result (success, failure)",
            m.model_reloads.clone(),
        );
        r.register(
            FEATURE_PSI,
            "Population stability index of each model input, recent inputs vs training reference",
            m.feature_psi.clone(),
        );
        r.register(
            DATA_DRIFT,
            "1 when at least the drift share of features have a PSI above their calibrated limit",
            m.data_drift.clone(),
        );
        r.register(
            FORECAST_ABS_ERROR,
            "Absolute error in USD of past forecasts once the actual close is known",
            m.forecast_abs_error.clone(),
        );
        r.register(
            CONCEPT_DRIFT,
            "1 when the Page-Hinkley detector has fired on forecast errors (until a new model loads)",
            m.concept_drift.clone(),
        );
        r.register(
            PAGE_HINKLEY,
            "Page-Hinkley statistic on scaled absolute forecast errors",
            m.page_hinkley.clone(),
        );
        r.register(
            NEWEST_BAR_AGE,
            "Seconds since the newest stored bar of each coin closed (bar open time + 1 h)",
            m.newest_bar_age.clone(),
        );
        r.register(
            FORECAST_CLOSE,
            "Latest forecast close per coin, USD",
            m.forecast_close.clone(),
        );
        r.register(
            FORECAST_LOWER,
            "Lower bound of the latest forecast interval per coin and coverage level, USD",
            m.forecast_lower.clone(),
        );
        r.register(
            FORECAST_UPPER,
            "Upper bound of the latest forecast interval per coin and coverage level, USD",
            m.forecast_upper.clone(),
        );
        r.register(
            ACTUAL_CLOSE,
            "Latest realised close per coin, USD",
            m.actual_close.clone(),
        );
        r.register(
            INTERVAL_COVERAGE,
            "Realised coverage of the intervals per coin and level over the last 168 scored hours",
            m.interval_coverage.clone(),
        );
        r.register(
            INTERVAL_ALPHA,
            "Current adaptive miscoverage target alpha_t of the online calibrator per coin and level",
            m.interval_alpha.clone(),
        );
        r.register(
            FORECAST_SIGMA,
            "Forecast volatility (sigma of the next hour's log return) per coin, newest stored hour",
            m.forecast_sigma.clone(),
        );
        r.register(
            reg_name(PREDICTIONS),
            "Forecasts served per coin, cache hits included",
            m.predictions.clone(),
        );
        r.register(
            OPEN_CONNECTIONS,
            "HTTP connections open right now (at most --max-connections)",
            m.open_connections.clone(),
        );
        r.register(
            reg_name(CONNECTIONS_SHED),
            "Connections answered 503 and closed because --max-connections were open",
            m.connections_shed.clone(),
        );
        // Both reload results exist from the start at 0, so the first failure is an increase
        // that `increase()` (and the reload alert) can see.
        for result in ["success", "failure"] {
            let _ = m.model_reloads.get_or_create(&ReloadLabels {
                result: result.into(),
            });
        }
        Metrics { registry, ..m }
    }

    /// Counts one HTTP response and observes how long it took.
    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        {
            let handles = self.http_handles.read().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = handles.get(route)
                && let Some((_, c)) = h.by_status.iter().find(|(s, _)| *s == status)
            {
                h.duration.observe(seconds);
                c.inc();
                return;
            }
        }
        // The first response of this route or (route, status): resolve its series once.
        let mut handles = self.http_handles.write().unwrap_or_else(|p| p.into_inner());
        let h = handles
            .entry(route.to_string())
            .or_insert_with(|| RouteHandles {
                duration: self
                    .http_duration
                    .get_or_create(&RouteLabels {
                        route: route.to_string(),
                    })
                    .clone(),
                by_status: Vec::new(),
            });
        h.duration.observe(seconds);
        let counter = match h.by_status.iter().find(|(s, _)| *s == status) {
            Some((_, c)) => c.clone(),
            None => {
                let c = self
                    .http_requests
                    .get_or_create(&HttpLabels {
                        route: route.to_string(),
                        status: status.to_string(),
                    })
                    .clone();
                h.by_status.push((status, c.clone()));
                c
            }
        };
        counter.inc();
    }

    /// Counts one reload attempt.
    pub fn observe_reload(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.model_reloads
            .get_or_create(&ReloadLabels {
                result: result.into(),
            })
            .inc();
    }

    /// Replaces the model-info series with the new model's identity.
    pub fn set_model_info(&self, labels: ModelInfoLabels) {
        self.model_info.clear();
        self.model_info.get_or_create(&labels).set(1);
    }

    /// Renders the OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail; an encoder error would only come from a metric
        // that refuses to encode, which none of ours does.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_name_appears_in_the_exposition_once_touched() {
        let m = Metrics::new();
        m.observe_request("/health", 200, 0.001);
        m.inference_latency.observe(0.001);
        m.set_model_info(ModelInfoLabels {
            name: "n".into(),
            version: "1".into(),
            run_id: "r".into(),
            spec_hash: "h".into(),
        });
        m.observe_reload(true);
        m.feature_psi
            .get_or_create(&FeatureLabels {
                feature: "logret".into(),
            })
            .set(0.1);
        m.forecast_abs_error.observe(12.0);
        let coin = CoinLabels { coin: "BTC".into() };
        let lvl = CoinLevelLabels {
            coin: "BTC".into(),
            level: "0.9".into(),
        };
        m.newest_bar_age.get_or_create(&coin).set(5.0);
        m.forecast_close.get_or_create(&coin).set(1.0);
        m.forecast_lower.get_or_create(&lvl).set(1.0);
        m.forecast_upper.get_or_create(&lvl).set(1.0);
        m.actual_close.get_or_create(&coin).set(1.0);
        m.interval_coverage.get_or_create(&lvl).set(0.9);
        m.interval_alpha.get_or_create(&lvl).set(0.1);
        m.forecast_sigma.get_or_create(&coin).set(0.004);
        m.predictions.get_or_create(&coin).inc();
        let text = m.encode();
        for name in NAMES {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} missing from exposition:\n{text}"
            );
        }
        assert!(text.contains(r#"rps_http_requests_total{route="/health",status="200"} 1"#));
    }

    #[test]
    fn requests_count_per_route_and_status_through_the_cached_handles() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.observe_request("/predict", 200, 0.0004);
        }
        m.observe_request("/predict", 422, 0.2);
        m.observe_request("/health", 200, 0.00003);
        let text = m.encode();
        assert!(text.contains(r#"rps_http_requests_total{route="/predict",status="200"} 3"#));
        assert!(text.contains(r#"rps_http_requests_total{route="/predict",status="422"} 1"#));
        assert!(text.contains(r#"rps_http_requests_total{route="/health",status="200"} 1"#));
        // Durations per route, all statuses together, in the buckets they fell in.
        let bucket = |route: &str, le: &str| {
            let key = format!(
                r#"rps_http_request_duration_seconds_bucket{{le="{le}",route="{route}"}} "#
            );
            text.lines()
                .find_map(|l| l.strip_prefix(key.as_str()))
                .unwrap_or_else(|| panic!("no bucket {route} {le} in\n{text}"))
                .to_string()
        };
        assert_eq!(bucket("/predict", "0.0005"), "3");
        assert_eq!(bucket("/predict", "0.25"), "4");
        assert_eq!(bucket("/health", "0.00005"), "1");
        assert!(text.contains(r#"rps_http_request_duration_seconds_count{route="/predict"} 4"#));
    }

    #[test]
    fn a_new_model_replaces_the_old_model_info_series() {
        let m = Metrics::new();
        let info = |v: &str| ModelInfoLabels {
            name: "n".into(),
            version: v.into(),
            run_id: "r".into(),
            spec_hash: "h".into(),
        };
        m.set_model_info(info("1"));
        m.set_model_info(info("2"));
        let text = m.encode();
        assert!(text.contains(r#"version="2""#));
        assert!(!text.contains(r#"version="1""#));
    }
}
