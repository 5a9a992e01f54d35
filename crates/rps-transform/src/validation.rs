//! Reads the rps-validate report (`rps_validate::report::Report`, the `--report` JSON) for
//! the profile: the report's scalars become its summary lines, each coin's checks a table
//! (`coins / BTC / checks`). A missing or unreadable file, or a JSON file that is not a
//! validation report, is shown as a one-line note naming the file, never an error.

use std::path::Path;

use rps_validate::report::{self as vr, Status};
use serde::Serialize;
use serde_json::Value;

/// One check row as shown in the profile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// The check's name in the report (defanged).
    pub name: String,
    /// The check's status as text: `pass`, `warn` or `fail`.
    pub status: String,
    /// `pass`, `warn` or `fail` (the CSS class of the row).
    pub class: &'static str,
    /// How many rows (or gaps) the check flagged, as text.
    pub count: String,
    /// The check's details line (defanged).
    pub details: String,
}

/// A table of checks found at one place in the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Section {
    /// Where in the report the checks are, e.g. `coins / BTC / checks`.
    pub title: String,
    /// The checks, in report order.
    pub checks: Vec<Check>,
}

/// What the profile shows about the validation report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// The report file's path as given (defanged).
    pub path: String,
    /// Why the report could not be shown, if it could not.
    pub error: Option<String>,
    /// The report's scalars as `(key, value)` lines: `settings.*`, `status`, `store`,
    /// `summary.*`, `tool`, `version`, in that (alphabetical) order; empty on error.
    pub summary: Vec<(String, String)>,
    /// One table per coin that has checks; empty on error.
    pub sections: Vec<Section>,
    /// Checks that did not pass (warnings and failures).
    pub not_passed: usize,
}

/// The report has no business putting links into an offline page: URLs it mentions (an
/// endpoint in an error message, say) are shown defanged (`hxxp://`).
pub fn defang(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.to_ascii_lowercase().find("http") {
        out.push_str(&rest[..i]);
        out.push_str(if rest[i..].starts_with('H') {
            "HXXP"
        } else {
            "hxxp"
        });
        rest = &rest[i + 4..];
    }
    out.push_str(rest);
    out
}

/// Loads a report file; failures become [`Report::error`] (and a warning in the log).
pub fn load(path: &Path) -> Report {
    parse(
        path,
        std::fs::read(path).map_err(|e| format!("cannot read it: {e}")),
    )
}

/// Loads a report from a local file or an object URL (`s3://bucket/prefix/name.json`,
/// [`rps_validate::location`]); failures, a missing object included, become
/// [`Report::error`] as with [`load`].
pub async fn load_from(path: &Path) -> Report {
    if !rps_validate::location::is_url(path) {
        return load(path);
    }
    let bytes = match rps_validate::location::read(path).await {
        Ok(Some(b)) => Ok(b),
        Ok(None) => Err("cannot read it: no such object".to_string()),
        Err(e) => Err(format!("cannot read it: {e}")),
    };
    parse(path, bytes)
}

/// What the profile shows of the bytes read from `path` (or why they could not be read).
fn parse(path: &Path, bytes: Result<Vec<u8>, String>) -> Report {
    let label = defang(&path.display().to_string());
    let parsed = bytes
        .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| format!("not JSON: {e}")))
        .and_then(|v| {
            serde_path_to_error::deserialize::<_, vr::Report>(v)
                .map_err(|e| format!("not an rps-validate report: {e}"))
        });
    match parsed {
        Ok(r) => from_report(&label, &r),
        Err(e) => {
            tracing::warn!("validation report {label}: {e}; the profile shows no checks");
            Report {
                path: label,
                error: Some(defang(&e)),
                summary: Vec::new(),
                sections: Vec::new(),
                not_passed: 0,
            }
        }
    }
}

/// What the profile shows of a validation report read from `path`.
pub fn from_report(path: &str, r: &vr::Report) -> Report {
    let mut summary = Vec::new();
    let mut line = |k: &str, v: String| summary.push((defang(k), defang(&v)));
    // In the order the profile has always listed them (alphabetical, as the report's JSON
    // keys sort), settings first.
    for (k, v) in fields(&r.settings) {
        line(&format!("settings.{k}"), v);
    }
    line("status", label(r.status));
    line("store", r.store.clone());
    for (k, v) in fields(&r.summary) {
        line(&format!("summary.{k}"), v);
    }
    line("tool", r.tool.clone());
    line("version", r.version.clone());
    let sections: Vec<Section> = r
        .coins
        .iter()
        .filter(|c| !c.checks.is_empty())
        .map(|c| Section {
            title: defang(&format!("coins / {} / checks", c.coin)),
            checks: c.checks.iter().map(check).collect(),
        })
        .collect();
    let not_passed = sections
        .iter()
        .flat_map(|s| &s.checks)
        .filter(|c| c.class != "pass")
        .count();
    Report {
        path: defang(path),
        error: None,
        summary,
        sections,
        not_passed,
    }
}

/// The fields of a flat struct as `(name, value)` in name order, each value as its JSON text
/// (strings unquoted, `null` empty), so numbers read as in the report file (`2.0`, `0.01`).
fn fields<T: Serialize>(v: &T) -> Vec<(String, String)> {
    match serde_json::to_value(v) {
        Ok(Value::Object(map)) => map.into_iter().map(|(k, x)| (k, scalar(&x))).collect(),
        _ => Vec::new(),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn label(s: Status) -> String {
    match s {
        Status::Pass => "pass",
        Status::Warn => "warn",
        Status::Fail => "fail",
    }
    .to_string()
}

fn check(c: &vr::Check) -> Check {
    Check {
        name: defang(&c.name),
        status: label(c.status),
        class: match c.status {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        },
        count: c.count.to_string(),
        details: defang(&c.details),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rps_validate::checks::Settings;
    use rps_validate::report::{CoinReport, Severity};

    fn sample() -> vr::Report {
        let checks = vec![
            vr::Check::counted("null_ratio.close", Severity::Error, 0, "ok".into(), vec![]),
            vr::Check::counted("gaps", Severity::Warning, 3, "3 gaps".into(), vec![]),
            vr::Check::counted("ohlc", Severity::Error, 2, "see http://x".into(), vec![]),
        ];
        let btc = CoinReport::new("BTC", "raw/BTC.parquet", 10, None, checks, vec![]);
        let eth = CoinReport::new("ETH", "raw/ETH.parquet", 0, None, vec![], vec![]);
        vr::Report::new("./data", Settings::default(), vec![btc, eth])
    }

    #[test]
    fn per_coin_checks_become_titled_tables() {
        let r = from_report("v.json", &sample());
        let lines: Vec<String> = r.summary.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            lines,
            vec![
                "settings.end=",
                "settings.max_null_ratio=0.01",
                "settings.max_staleness_hours=2.0",
                "settings.outlier_z=10.0",
                "status=fail",
                "store=./data",
                "summary.checks=3",
                "summary.coins=2",
                "summary.failed=1",
                "summary.passed=1",
                "summary.rows=10",
                "summary.unreadable=0",
                "summary.warned=1",
                "tool=rps-validate",
                &format!("version={}", env!("CARGO_PKG_VERSION")),
            ]
        );
        assert_eq!(r.sections.len(), 1, "a coin without checks has no table");
        assert_eq!(r.sections[0].title, "coins / BTC / checks");
        let classes: Vec<_> = r.sections[0].checks.iter().map(|c| c.class).collect();
        assert_eq!(classes, vec!["pass", "warn", "fail"]);
        assert_eq!(r.not_passed, 2);
        assert_eq!(r.sections[0].checks[1].count, "3");
        assert_eq!(r.sections[0].checks[2].details, "see hxxp://x");
    }

    #[test]
    fn a_written_report_reads_back_the_same() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("validation.json");
        sample().write(&p).unwrap();
        let label = p.display().to_string();
        assert_eq!(load(&p), from_report(&label, &sample()));
    }

    #[test]
    fn a_missing_report_is_a_note_not_an_error() {
        let r = load(Path::new("/nonexistent/validation.json"));
        assert!(r.error.unwrap().contains("cannot read"));
    }

    #[test]
    fn json_that_is_not_a_validation_report_is_a_one_line_note() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("other.json");
        std::fs::write(
            &p,
            r#"{"status": "warn", "coins": {"BTC": {"checks": []}}}"#,
        )
        .unwrap();
        let e = load(&p).error.unwrap();
        assert!(e.starts_with("not an rps-validate report: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        std::fs::write(&p, "{not json").unwrap();
        assert!(load(&p).error.unwrap().starts_with("not JSON: "));
    }
}
