//! Builds a benchmark store from the shared CSV: the file's bars replicated as N coins
//! (`C000`, `C001`, …), written as `raw/<COIN>.parquet`.
//!
//! `cargo run --release -p rps-transform --example gen_store -- --csv FILE --coins 100 --store DIR`

use clap::Parser;

/// Replicates the shared CSV as N coins in a store.
#[derive(Debug, Parser)]
struct Args {
    /// The CryptoDataDownload CSV.
    #[arg(long, env = "RPS_CSV_PATH")]
    csv: std::path::PathBuf,
    /// How many coins to write (1 writes BTC).
    #[arg(long, env = "RPS_BENCH_COINS", default_value_t = 1)]
    coins: usize,
    /// Target store.
    #[arg(long, env = "RPS_STORE")]
    store: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bars = rps_testkit::fixture::read_csv(&args.csv, "BTC");
    let store = rps_core::Store::open(&args.store)?;
    for i in 0..args.coins {
        let coin = if args.coins == 1 {
            "BTC".to_string()
        } else {
            format!("C{i:03}")
        };
        let mut mine = bars.clone();
        mine.iter_mut().for_each(|b| b.coin.clone_from(&coin));
        rps_core::parquet_io::write_bars(&store, &coin, &mine).await?;
    }
    println!(
        "wrote {} coin(s) x {} bars to {}",
        args.coins,
        bars.len(),
        args.store
    );
    Ok(())
}
