//! rps-train binary: flags → [`rps_train::Config`] → [`rps_train::run`] → exit code.

use std::path::PathBuf;

use clap::Parser;
use rps_cli::{CoinList, CommonArgs, finish};
use rps_core::ExitCode;
use rps_train::data::SplitFractions;
use rps_train::{Config, TrainError};

/// Train the LSTM next-hour forecaster on stored features, evaluate it against persistence
/// and rolling-mean baselines on a chronological test split, calibrate conformal intervals,
/// track the run (MLflow when MLFLOW_TRACKING_URI is set, else the local registry), register
/// it as `challenger` and promote it to `champion` if it beats the re-scored champion.
#[derive(Debug, Parser)]
#[command(name = "rps-train", version, about, long_about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Coins to train on (comma-separated); reads features/<COIN>.parquet from the store.
    #[arg(long, env = "RPS_COINS", default_value = "BTC")]
    coins: CoinList,

    /// Local registry directory, used when MLFLOW_TRACKING_URI is not set.
    #[arg(long, env = "RPS_REGISTRY", default_value = "./registry")]
    registry: PathBuf,

    /// Registered model name.
    #[arg(long, env = "RPS_MODEL_NAME", default_value = "rps-forecaster")]
    model_name: String,

    /// Experiment name (created if missing).
    #[arg(long, env = "RPS_EXPERIMENT", default_value = "rps")]
    experiment: String,

    /// Run name (default: train-<coins>-<UTC time>).
    #[arg(long, env = "RPS_RUN_NAME")]
    run_name: Option<String>,

    /// Model kind to train (a kind registered in rps-model; `lstm` is the first).
    #[arg(long, env = "RPS_MODEL_KIND", default_value = rps_model::kinds::DEFAULT)]
    model_kind: String,

    /// Maximum training epochs (early stopping may end sooner).
    #[arg(long, env = "RPS_EPOCHS", default_value_t = 30)]
    epochs: usize,

    /// LSTM hidden size.
    #[arg(long, env = "RPS_HIDDEN", default_value_t = 64)]
    hidden: usize,

    /// Hours of feature rows per input window.
    #[arg(long, env = "RPS_LOOKBACK", default_value_t = 48)]
    lookback: usize,

    /// Mini-batch size.
    #[arg(long, env = "RPS_BATCH_SIZE", default_value_t = 64)]
    batch_size: usize,

    /// AdamW learning rate.
    #[arg(long, env = "RPS_LR", default_value_t = 1e-3)]
    lr: f64,

    /// AdamW weight decay.
    #[arg(long, env = "RPS_WEIGHT_DECAY", default_value_t = 1e-2)]
    weight_decay: f64,

    /// Early stopping: epochs without a better validation loss before stopping.
    #[arg(long, env = "RPS_PATIENCE", default_value_t = 5)]
    patience: usize,

    /// Seed of weight initialisation and shuffling (same data + params + seed = same model).
    #[arg(long, env = "RPS_SEED", default_value_t = 42)]
    seed: u64,

    /// Use at most this many (most recent) training windows; 0 = all.
    #[arg(long, env = "RPS_MAX_TRAIN_ROWS", default_value_t = 0)]
    max_train_rows: usize,

    /// Chronological share of windows for training.
    #[arg(long, env = "RPS_TRAIN_FRACTION", default_value_t = 0.7)]
    train_fraction: f64,

    /// Chronological share of windows for validation (early stopping).
    #[arg(long, env = "RPS_VAL_FRACTION", default_value_t = 0.1)]
    val_fraction: f64,

    /// Chronological share of windows for conformal calibration; the rest is the test split.
    #[arg(long, env = "RPS_CALIBRATION_FRACTION", default_value_t = 0.1)]
    calibration_fraction: f64,

    /// Prediction-interval levels (comma-separated).
    #[arg(
        long,
        env = "RPS_INTERVAL_LEVELS",
        default_value = "0.8,0.9,0.95",
        value_delimiter = ','
    )]
    levels: Vec<f64>,

    /// Write the evaluation table as JSON here (DVC metrics).
    #[arg(long, env = "RPS_METRICS")]
    metrics: Option<PathBuf>,

    /// Write the model package directory here (DVC output; replaced only on success).
    #[arg(long, env = "RPS_PACKAGE_OUT")]
    package_out: Option<PathBuf>,

    /// Directory for evaluation.json, evaluation.html and the SVG plots.
    #[arg(long, env = "RPS_REPORT_DIR", default_value = "reports")]
    report_dir: PathBuf,

    /// The transform's data profile (HTML), logged with the run.
    #[arg(long, env = "RPS_PROFILE")]
    profile: Option<PathBuf>,

    /// Also evaluate K walk-forward folds: expanding-window retrains, each tested on the next
    /// of K + 1 chronological blocks (per-fold and mean metrics in the reports and tracking;
    /// K extra trainings). 0 = off.
    #[arg(long, env = "RPS_WALK_FORWARD", default_value_t = 0)]
    walk_forward: usize,

    /// Promote to champion even if the gate says no (first setup, manual rollback).
    #[arg(long, env = "RPS_FORCE_PROMOTE")]
    force_promote: bool,
}

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
    let cfg = Config {
        store: args.common.store,
        coins: args.coins.0,
        registry: args.registry,
        model_name: args.model_name,
        experiment: args.experiment,
        run_name: args.run_name,
        model_kind: args.model_kind,
        epochs: args.epochs,
        hidden: args.hidden,
        lookback: args.lookback,
        batch_size: args.batch_size,
        lr: args.lr,
        weight_decay: args.weight_decay,
        patience: args.patience,
        seed: args.seed,
        max_train_rows: (args.max_train_rows > 0).then_some(args.max_train_rows),
        split: SplitFractions {
            train: args.train_fraction,
            val: args.val_fraction,
            calib: args.calibration_fraction,
        },
        levels: args.levels,
        metrics: args.metrics,
        package_out: args.package_out,
        report_dir: args.report_dir,
        profile: args.profile,
        force_promote: args.force_promote,
        walk_forward: args.walk_forward,
    };
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(rps_train::run(&cfg))
                .map_err(anyhow::Error::from)
        })
        .map(|summary| {
            print_summary(&summary);
            ExitCode::Ok
        });
    finish(result, |e| {
        e.downcast_ref::<TrainError>().map(TrainError::exit_code)
    })
}

/// The result on stdout (logs go to stderr).
#[allow(clippy::print_stdout)]
fn print_summary(s: &rps_train::Summary) {
    let ev = &s.evaluation;
    let (m, p, r) = (
        &ev.test.model,
        &ev.test.persistence,
        &ev.test.rolling_mean_5,
    );
    println!(
        "model {} version {} (run {})",
        ev.model_name, s.version, s.run_id
    );
    println!(
        "test ({} hours): RMSE {:.2} USD, MAE {:.2}, MAPE {:.3}%, skill {:+.4} | persistence RMSE {:.2} | rolling-mean-5 RMSE {:.2}",
        m.rows, m.rmse, m.mae, m.mape, m.skill, p.rmse, r.rmse
    );
    for i in &ev.intervals {
        println!(
            "interval {:.0}%: coverage {:.1}%, mean width {:.2} USD",
            i.level * 100.0,
            i.coverage * 100.0,
            i.mean_width_usd
        );
    }
    let g = &ev.gate;
    let num = |v: Option<f64>| {
        v.map(|x| format!("{x:.3}"))
            .unwrap_or_else(|| "none".into())
    };
    println!(
        "gate: {} — new RMSE {} vs champion RMSE {} (champion version {}, {} rows): {}",
        if g.promote {
            "promoted to champion"
        } else {
            "challenger, champion unchanged"
        },
        num(g.new_rmse),
        num(g.champion_rmse),
        g.champion_version.as_deref().unwrap_or("none"),
        g.rows,
        g.reason
    );
}
