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

/// A `--coins` value: a comma-separated list (`BTC,ETH`), upper-cased, de-duplicated, order
/// kept (rules of [`rps_core::schema::parse_coins`]). One type, so every stage takes the flag
/// the same way; a newtype so clap treats the list as one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoinList(pub Vec<String>);

impl std::str::FromStr for CoinList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        rps_core::schema::parse_coins(s).map(CoinList)
    }
}

impl From<CoinList> for Vec<String> {
    fn from(c: CoinList) -> Self {
        c.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coin_flag_is_normalised_and_a_bad_code_refused() {
        let c: CoinList = "btc, ETH,btc".parse().expect("valid list");
        assert_eq!(c.0, vec!["BTC", "ETH"]);
        assert!("BTC/USD".parse::<CoinList>().is_err());
    }

    #[test]
    fn the_flag_parses_through_clap_as_one_value() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct T {
            #[arg(long)]
            coins: CoinList,
        }
        let t = T::try_parse_from(["t", "--coins", "btc,eth"]).expect("parses");
        assert_eq!(t.coins.0, vec!["BTC", "ETH"]);
        let err = T::try_parse_from(["t", "--coins", "BTC/USD"]).expect_err("refused");
        assert!(err.to_string().contains("not a coin code"), "{err}");
    }
}
