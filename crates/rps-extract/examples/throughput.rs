//! Prints throughput figures for `bench/extract.sh` (which wraps each run in `/usr/bin/time -v`
//! for peak RSS):
//!   throughput csv <file>        CSV parse + check of an export (no store)
//!   throughput resample <n>      resampling n synthetic price observations into hourly bars

use std::time::Instant;

use rps_core::Source;
use rps_core::time::HOUR_MS;
use rps_extract::csv_import::{CsvOptions, import_file};
use rps_extract::resample::resample;
use rps_extract::synthetic;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("csv") => {
            let path = args
                .get(1)
                .ok_or_else(|| anyhow::anyhow!("usage: throughput csv <file>"))?;
            let t = Instant::now();
            let import = import_file(path.as_ref(), &CsvOptions::default(), 0)?;
            let secs = t.elapsed().as_secs_f64();
            let bars: usize = import.bars.values().map(Vec::len).sum();
            println!(
                "csv_parse rows={} bars={bars} seconds={secs:.4} rows_per_s={:.0}",
                import.rows,
                import.rows as f64 / secs
            );
        }
        Some("resample") => {
            let n: usize = args
                .get(1)
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(1_000_000);
            let hours = n.div_ceil(synthetic::TICKS_PER_HOUR) as i64;
            let start = synthetic::ORIGIN_MS;
            let mut obs = synthetic::observations("BTC", 42, start, start + hours * HOUR_MS)?;
            obs.truncate(n);
            let t = Instant::now();
            let bars = resample("BTC", obs, Source::Livecoinwatch, 0);
            let secs = t.elapsed().as_secs_f64();
            println!(
                "resample observations={n} bars={} seconds={secs:.4} observations_per_s={:.0}",
                bars.len(),
                n as f64 / secs
            );
        }
        _ => anyhow::bail!("usage: throughput csv <file> | throughput resample <n>"),
    }
    Ok(())
}
