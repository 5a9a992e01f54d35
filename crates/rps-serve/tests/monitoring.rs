//! The monitoring configuration in `monitoring/`: promtool accepts the Prometheus config and
//! the alert rules, the rule unit tests pass, and every metric the alerts and the dashboard
//! use is one the server defines (and every metric the server defines is watched).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use rps_serve::metrics::NAMES;
use serde_json::Value;

/// The repository's `monitoring/` directory.
pub fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../monitoring")
        .canonicalize()
        .unwrap()
}

fn promtool(args: &[&str]) {
    let promtool = rps_testkit::service::tool("promtool");
    let out = Command::new(promtool)
        .args(args)
        .current_dir(monitoring_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs promtool (Debian package prometheus); scripts/test installs it"]
fn promtool_accepts_the_config_and_the_rules() {
    promtool(&["check", "config", "prometheus.yml"]);
    promtool(&["check", "rules", "alerts.yml"]);
}

#[test]
#[ignore = "needs promtool (Debian package prometheus); scripts/test installs it"]
fn every_alert_passes_its_promtool_unit_tests() {
    let tests: Vec<String> = std::fs::read_dir(monitoring_dir().join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert!(!tests.is_empty());
    let alerts = std::fs::read_to_string(monitoring_dir().join("alerts.yml")).unwrap();
    let tested = tests
        .iter()
        .map(|t| std::fs::read_to_string(t).unwrap())
        .collect::<String>();
    for line in alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tested.contains(&format!("alertname: {line}")),
            "alert {line} has no unit test"
        );
    }
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    promtool(&args);
}

/// The dashboard's PromQL expressions.
pub fn dashboard_queries() -> Vec<(String, String)> {
    let path = monitoring_dir().join("grafana/dashboards/rps-serve.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            out.push((
                p["title"].as_str().unwrap().to_string(),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("rps_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(base.to_string());
        i = end;
    }
    out
}

#[test]
fn alerts_and_dashboard_use_only_metrics_the_server_defines_and_watch_them_all() {
    let alerts = std::fs::read_to_string(monitoring_dir().join("alerts.yml")).unwrap();
    let exprs: String = dashboard_queries()
        .into_iter()
        .map(|(_, e)| e + "\n")
        .collect();
    let used: BTreeSet<String> = metric_names(&alerts)
        .into_iter()
        .chain(metric_names(&exprs))
        .collect();
    let defined: BTreeSet<String> = NAMES.iter().map(|s| s.to_string()).collect();
    let unknown: Vec<_> = used.difference(&defined).collect();
    assert!(
        unknown.is_empty(),
        "monitoring uses undefined metrics: {unknown:?}"
    );
    let shown = metric_names(&exprs);
    let unwatched: Vec<_> = defined.difference(&shown).collect();
    assert!(
        unwatched.is_empty(),
        "the dashboard does not show: {unwatched:?}"
    );
}

#[test]
fn grafana_provisioning_points_at_the_dashboard_and_the_datasource_it_uses() {
    let g = monitoring_dir().join("grafana");
    let ds = std::fs::read_to_string(g.join("provisioning/datasources/prometheus.yml")).unwrap();
    assert!(ds.contains("uid: prometheus") && ds.contains("type: prometheus"));
    let d: Value = serde_json::from_str(
        &std::fs::read_to_string(g.join("dashboards/rps-serve.json")).unwrap(),
    )
    .unwrap();
    for p in d["panels"].as_array().unwrap() {
        assert_eq!(p["datasource"]["uid"], "prometheus", "{}", p["title"]);
    }
    let prov = std::fs::read_to_string(g.join("provisioning/dashboards/rps.yml")).unwrap();
    assert!(prov.contains("type: file"));
}
