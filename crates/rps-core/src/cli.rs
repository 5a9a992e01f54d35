//! Flags every stage shares, so Airflow, DVC and people type the same thing everywhere.

use crate::telemetry::LogFormat;

/// Common flags: where the data lives and how logs look.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Data location: a local directory (the embedded default) or `s3://bucket/prefix`
    /// (MinIO/S3; endpoint and keys from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION).
    #[arg(long, env = "RPS_STORE", default_value = "./data")]
    pub store: String,

    /// Log format on stderr: `human` or `json` (for log collectors). RUST_LOG sets the level.
    #[arg(long, env = "RPS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

/// Parses a comma-separated coin list (`BTC,ETH`), upper-cased, de-duplicated, order kept.
pub fn parse_coins(s: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for part in s.split(',') {
        let c = part.trim().to_ascii_uppercase();
        if c.is_empty() {
            continue;
        }
        if !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') || c.len() > 16 {
            return Err(format!(
                "'{part}' is not a coin code (letters and digits, e.g. BTC)"
            ));
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    if out.is_empty() {
        return Err("no coin given (e.g. --coins BTC,ETH)".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coin_lists_are_normalised_and_bad_codes_refused() {
        assert_eq!(parse_coins("btc, ETH,btc").unwrap(), vec!["BTC", "ETH"]);
        assert!(parse_coins("BTC/USD").is_err());
        assert!(parse_coins(" , ").is_err());
    }
}
