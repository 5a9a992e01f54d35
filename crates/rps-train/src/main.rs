//! rps-train binary: flags → [`rps_train::Config`] → [`rps_train::signals::run`] → exit code.

mod args;
mod summary;

use clap::Parser;
use rps_cli::finish;
use rps_core::ExitCode;
use rps_train::TrainError;

use crate::args::Args;

#[allow(unsafe_code)]
fn single_threaded_candle() {
    // candle reads RAYON_NUM_THREADS on every matmul and, when it is unset, re-reads the CPU
    // topology from /proc each time (docs/CANDLE.md); one thread is also the fastest at
    // this model size. SAFETY: this runs first thing in `main`, before the tokio runtime or
    // any other thread exists, so nothing can read the environment concurrently.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
}

fn main() -> std::process::ExitCode {
    single_threaded_candle();
    let args = Args::parse();
    rps_cli::telemetry::init(args.common.log_format);
    let cfg = args.into_config();
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            // SIGTERM/SIGINT end the run KILLED and exit 143/130 (rps_train::signals).
            rt.block_on(rps_train::signals::run(&cfg))
                .map_err(anyhow::Error::from)
        })
        .map(|summary| {
            summary::print(&summary);
            ExitCode::Ok
        });
    finish(result, |e| {
        e.downcast_ref::<TrainError>().map(TrainError::exit_code)
    })
}
