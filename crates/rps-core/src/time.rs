//! UTC time helpers: RFC 3339 parsing for flags, hour flooring, millisecond conversions.

use chrono::{DateTime, TimeZone, Utc};

/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// Parses an RFC 3339 timestamp (as Airflow renders `{{ data_interval_end }}`) into UTC.
/// Also accepts a bare date (`2024-01-31`, midnight UTC). Used as a clap value parser.
pub fn parse_utc(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    // Airflow's default str() of a pendulum datetime uses a space instead of 'T'.
    if let Ok(t) = DateTime::parse_from_rfc3339(&s.replacen(' ', "T", 1)) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(Utc.from_utc_datetime(&t));
    }
    Err(format!(
        "'{s}' is not an RFC 3339 UTC time (e.g. 2024-01-31T00:00:00Z)"
    ))
}

/// Floors a millisecond timestamp to the start of its UTC hour.
pub fn floor_hour(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// Formats milliseconds since the epoch as RFC 3339 (UTC, seconds precision).
pub fn fmt_ms(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        None => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airflow_style_and_rfc3339_times_parse_to_the_same_instant() {
        let a = parse_utc("2024-06-01T00:00:00+00:00").unwrap();
        let b = parse_utc("2024-06-01 00:00:00+00:00").unwrap();
        let c = parse_utc("2024-06-01").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(parse_utc("yesterday").is_err());
    }

    #[test]
    fn flooring_keeps_the_hour_and_handles_negative_times() {
        assert_eq!(floor_hour(HOUR_MS + 5), HOUR_MS);
        assert_eq!(floor_hour(-1), -HOUR_MS);
    }
}
