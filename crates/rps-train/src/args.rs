//! The flags of `rps-train` and their mapping to [`rps_train::Config`]. Model defaults come
//! from [`FitConfig::default`], so the flags, the library and (checked by the test below)
//! `params.yaml` name one set of values.

use std::path::PathBuf;

use clap::Parser;
use rps_cli::{CoinList, CommonArgs};
use rps_model::FitConfig;
use rps_train::Config;
use rps_train::data::SplitFractions;

/// Train a next-hour forecaster (`--model-kind`, the LSTM by default) on stored features, evaluate it against persistence
/// and rolling-mean baselines on a chronological test split, calibrate conformal intervals,
/// track the run (MLflow when MLFLOW_TRACKING_URI is set, else the local registry), register
/// it as `challenger` and promote it to `champion` if it beats the re-scored champion.
#[derive(Debug, Parser)]
#[command(name = "rps-train", version, about, long_about)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

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
    #[arg(long, env = "RPS_EPOCHS", default_value_t = FitConfig::default().epochs)]
    epochs: usize,

    /// LSTM hidden size.
    #[arg(long, env = "RPS_HIDDEN", default_value_t = FitConfig::default().hidden)]
    hidden: usize,

    /// Hours of feature rows per input window.
    #[arg(long, env = "RPS_LOOKBACK", default_value_t = 48)]
    lookback: usize,

    /// Mini-batch size.
    #[arg(long, env = "RPS_BATCH_SIZE", default_value_t = FitConfig::default().batch_size)]
    batch_size: usize,

    /// AdamW learning rate.
    #[arg(long, env = "RPS_LR", default_value_t = FitConfig::default().lr)]
    lr: f64,

    /// AdamW weight decay.
    #[arg(long, env = "RPS_WEIGHT_DECAY", default_value_t = FitConfig::default().weight_decay)]
    weight_decay: f64,

    /// Early stopping: epochs without a better validation loss before stopping.
    #[arg(long, env = "RPS_PATIENCE", default_value_t = FitConfig::default().patience)]
    patience: usize,

    /// Seed of weight initialisation and shuffling (same data + params + seed = same model).
    #[arg(long, env = "RPS_SEED", default_value_t = FitConfig::default().seed)]
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

    /// Scored hours the online interval calibrator keeps: its threshold is a quantile of
    /// the last this many volatility-scaled errors (stored in the package; serving and the
    /// backtest use it).
    #[arg(long, env = "RPS_CALIBRATION_WINDOW", default_value_t = 4320)]
    calibration_window: usize,

    /// Step γ of adaptive conformal inference: after each scored hour the miscoverage target
    /// of a level moves by γ·(α − miss).
    #[arg(long, env = "RPS_ACI_GAMMA", default_value_t = 0.005)]
    aci_gamma: f64,

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

    /// Do not make the persistence kind the champion when neither the new model nor the
    /// champion beats persistence (no change) on the gate rows; by default a second run
    /// trains it and it is promoted, so the served forecast is never worse than no change.
    #[arg(long, env = "RPS_NO_PERSISTENCE_CHAMPION")]
    no_persistence_champion: bool,

    /// Fewest test rows both models score on which a new model may replace the champion
    /// (168 = a week of hours); on fewer, the new model is registered as challenger only.
    #[arg(long, env = "RPS_MIN_GATE_ROWS", default_value_t = 168)]
    min_gate_rows: usize,
}

impl Args {
    /// The library's configuration for these flags.
    pub fn into_config(self) -> Config {
        Config {
            store: self.common.store,
            coins: self.coins.0,
            registry: self.registry,
            model_name: self.model_name,
            experiment: self.experiment,
            run_name: self.run_name,
            model_kind: self.model_kind,
            epochs: self.epochs,
            hidden: self.hidden,
            lookback: self.lookback,
            batch_size: self.batch_size,
            lr: self.lr,
            weight_decay: self.weight_decay,
            patience: self.patience,
            seed: self.seed,
            max_train_rows: (self.max_train_rows > 0).then_some(self.max_train_rows),
            split: SplitFractions {
                train: self.train_fraction,
                val: self.val_fraction,
                calib: self.calibration_fraction,
            },
            levels: self.levels,
            calibrator: rps_model::intervals::CalibratorParams {
                window: self.calibration_window,
                gamma: self.aci_gamma,
            },
            metrics: self.metrics,
            package_out: self.package_out,
            report_dir: self.report_dir,
            profile: self.profile,
            force_promote: self.force_promote,
            persistence_champion: !self.no_persistence_champion,
            walk_forward: self.walk_forward,
            min_gate_rows: self.min_gate_rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Args::command().debug_assert();
    }

    /// `params.yaml` (what `dvc repro` runs, and what the DAG's Params are checked against in
    /// dags/tests) names the same training defaults as these flags.
    #[test]
    fn the_flag_defaults_are_the_defaults_of_params_yaml() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../params.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let train: std::collections::HashMap<&str, &str> = text
            .lines()
            .skip_while(|l| *l != "train:")
            .skip(1)
            .take_while(|l| l.starts_with("  ") || l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.trim().split_once(':')?;
                Some((k.trim(), v.split('#').next()?.trim()))
            })
            .collect();
        let flags = Args::try_parse_from(["rps-train"]).unwrap();
        let num = |k: &str| -> f64 { train[k].parse().unwrap() };
        assert_eq!(num("epochs"), flags.epochs as f64);
        assert_eq!(num("hidden"), flags.hidden as f64);
        assert_eq!(num("lookback"), flags.lookback as f64);
        assert_eq!(num("batch_size"), flags.batch_size as f64);
        assert_eq!(num("lr"), flags.lr);
        assert_eq!(num("seed"), flags.seed as f64);
        assert_eq!(num("max_train_rows"), flags.max_train_rows as f64);
        assert_eq!(num("walk_forward"), flags.walk_forward as f64);
        assert_eq!(train["model_name"], flags.model_name);
        assert_eq!(train["experiment"], flags.experiment);
    }
}
