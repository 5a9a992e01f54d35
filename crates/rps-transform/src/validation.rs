//! Reads an rps-validate report for the profile without depending on its exact layout:
//! any array of objects that look like checks (`name`/`check`/`rule` and `status`/`passed`,
//! optional `count` and `details`/`message`) becomes a table titled by its JSON path
//! (e.g. `coins / BTC / checks`); top-level scalars become the report's summary lines.
//! A missing or unreadable report is shown as a note, never an error.

use std::path::Path;

use serde_json::Value;

/// One check row as shown in the profile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub status: String,
    /// `pass`, `warn` or `fail` (the CSS class of the row).
    pub class: &'static str,
    pub count: String,
    pub details: String,
}

/// A table of checks found at one place in the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Section {
    pub title: String,
    pub checks: Vec<Check>,
}

/// What the profile shows about the validation report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub path: String,
    /// Why the report could not be shown, if it could not.
    pub error: Option<String>,
    pub summary: Vec<(String, String)>,
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
    let label = defang(&path.display().to_string());
    let parsed = std::fs::read(path)
        .map_err(|e| format!("cannot read it: {e}"))
        .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| format!("not JSON: {e}")));
    match parsed {
        Ok(v) => from_json(&label, &v),
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

/// Interprets an already parsed report.
pub fn from_json(path: &str, v: &Value) -> Report {
    let mut report = Report {
        path: defang(path),
        error: None,
        summary: Vec::new(),
        sections: Vec::new(),
        not_passed: 0,
    };
    // Summary lines: top-level scalars, and the fields of top-level objects made only of
    // scalars (e.g. `summary.failed`, `settings.max_null_ratio`).
    let is_scalar = |x: &Value| !x.is_object() && !x.is_array();
    if let Value::Object(map) = v {
        for (k, x) in map {
            match x {
                x if is_scalar(x) => report.summary.push((defang(k), defang(&scalar(x)))),
                Value::Object(inner) if inner.values().all(is_scalar) => {
                    for (k2, y) in inner {
                        report
                            .summary
                            .push((defang(&format!("{k}.{k2}")), defang(&scalar(y))));
                    }
                }
                _ => {}
            }
        }
    }
    walk(&mut Vec::new(), v, &mut report.sections);
    report.not_passed = report
        .sections
        .iter()
        .flat_map(|s| &s.checks)
        .filter(|c| c.class != "pass")
        .count();
    if report.sections.is_empty() && report.summary.is_empty() {
        report.error = Some("no checks found in it".into());
    }
    report
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn first<'a>(o: &'a serde_json::Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| o.get(*k))
}

fn looks_like_check(v: &Value) -> bool {
    v.as_object().is_some_and(|o| {
        first(o, &["name", "check", "rule"]).is_some()
            && first(o, &["status", "passed", "ok", "severity"]).is_some()
    })
}

fn walk(path: &mut Vec<String>, v: &Value, out: &mut Vec<Section>) {
    match v {
        Value::Array(items) if !items.is_empty() && items.iter().any(looks_like_check) => {
            let checks = items
                .iter()
                .filter_map(Value::as_object)
                .map(check)
                .collect();
            let title = if path.is_empty() {
                "checks".to_string()
            } else {
                path.join(" / ")
            };
            out.push(Section {
                title: defang(&title),
                checks,
            });
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                // Name array elements by their coin when they carry one.
                let label = x
                    .get("coin")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| i.to_string());
                path.push(label);
                walk(path, x, out);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, x) in map {
                path.push(k.clone());
                walk(path, x, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn check(o: &serde_json::Map<String, Value>) -> Check {
    let name = first(o, &["name", "check", "rule"])
        .map(scalar)
        .unwrap_or_default();
    let name = match o.get("coin").and_then(Value::as_str) {
        Some(c) => format!("{c}: {name}"),
        None => name,
    };
    let status = match first(o, &["status", "passed", "ok", "severity"]) {
        Some(Value::Bool(true)) => "pass".to_string(),
        Some(Value::Bool(false)) => "fail".to_string(),
        Some(v) => scalar(v),
        None => String::new(),
    };
    let s = status.to_ascii_lowercase();
    let class = if ["pass", "passed", "ok", "success", "info"].contains(&s.as_str()) {
        "pass"
    } else if s.starts_with("warn") {
        "warn"
    } else {
        "fail"
    };
    let count = o.get("count").map(scalar).unwrap_or_default();
    let details = first(o, &["details", "message", "detail"])
        .map(scalar)
        .unwrap_or_default();
    Check {
        name: defang(&name),
        status: defang(&status),
        class,
        count: defang(&count),
        details: defang(&details),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn per_coin_check_arrays_become_titled_tables() {
        let v = json!({
            "status": "fail",
            "summary": {"failed": 1, "warned": 1},
            "coins": {"BTC": {"checks": [
                {"name": "no_nulls", "status": "pass", "count": 0, "details": "ok"},
                {"name": "monotonic", "status": "warn", "count": 3, "details": {"first": 5}},
                {"name": "gaps", "status": "fail", "count": 2, "details": "see http://x"}
            ]}}
        });
        let r = from_json("v.json", &v);
        let lines: Vec<String> = r.summary.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            lines,
            vec!["status=fail", "summary.failed=1", "summary.warned=1"]
        );
        assert_eq!(r.sections.len(), 1);
        assert_eq!(r.sections[0].title, "coins / BTC / checks");
        let classes: Vec<_> = r.sections[0].checks.iter().map(|c| c.class).collect();
        assert_eq!(classes, vec!["pass", "warn", "fail"]);
        assert_eq!(r.not_passed, 2);
        assert_eq!(r.sections[0].checks[1].details, r#"{"first":5}"#);
        assert_eq!(r.sections[0].checks[2].details, "see hxxp://x");
    }

    #[test]
    fn a_missing_report_is_a_note_not_an_error() {
        let r = load(Path::new("/nonexistent/validation.json"));
        assert!(r.error.unwrap().contains("cannot read"));
    }

    #[test]
    fn boolean_pass_flags_are_understood() {
        let v = json!([{"check": "x", "passed": false, "coin": "ETH"}]);
        let r = from_json("v", &v);
        assert_eq!(r.sections[0].checks[0].name, "ETH: x");
        assert_eq!(r.sections[0].checks[0].class, "fail");
    }
}
