//! The fixture model (cargo feature `model`): a package trained by rps-train's library on
//! the first half of 2019 of the [`fixture`](crate::fixture) bars, in a tiny configuration,
//! once per test process, for the tests that serve a model or check drift against one.
//!
//! ```ignore
//! let m = rps_testkit::model::fixture(&Spec {
//!     label: "rps-serve",
//!     model_name: "rps-test-forecaster",
//!     tmp_dir: env!("CARGO_TARGET_TMPDIR"),
//! });
//! // m.package: the package directory; m.reference_bars(): what its PSI reference saw.
//! ```

use std::path::PathBuf;
use std::sync::OnceLock;

use rps_core::Bar;
use rps_core::time::HOUR_MS;

use crate::fixture::{bars, index_at};

/// The fixture model's coin.
pub const COIN: &str = "BTC";
/// 2019-01-01T00:00:00Z, the start of the fixture model's feature data.
pub const TRAIN_START: i64 = 1_546_300_800_000;
/// 2019-07-01T00:00:00Z, its end (exclusive).
pub const TRAIN_END: i64 = 1_561_939_200_000;
/// The fixture model's lookback, in hours.
const LOOKBACK: usize = 24;

/// Who trains the fixture, and where.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The calling crate (`rps-serve`): names the directory (`<label>-fixture-…`) and the
    /// experiment (`<label>-tests`).
    pub label: &'static str,
    /// The registered model's name.
    pub model_name: &'static str,
    /// Where the package is kept for the whole test process: the caller's
    /// `env!("CARGO_TARGET_TMPDIR")` (only integration tests have it).
    pub tmp_dir: &'static str,
}

/// A trained fixture package.
#[derive(Debug, Clone)]
pub struct FixtureModel {
    /// The package directory (`model/` under the training directory).
    pub package: PathBuf,
    /// The first and last hour of the feature rows its reference histograms were fitted on.
    pub reference: (i64, i64),
}

impl FixtureModel {
    /// The bars whose feature rows the reference histograms were fitted on (the training
    /// split, plus the feature warm-up before it).
    pub fn reference_bars(&self) -> &'static [Bar] {
        let (first, last) = self.reference;
        &bars()[index_at(first) - rps_features::spec().warmup..=index_at(last)]
    }
}

/// The fixture model, trained on the first call (with that call's `spec`) and shared by every
/// later one in the process. Trained on its own thread and runtime: callers may be inside a
/// tokio runtime.
pub fn fixture(spec: &Spec) -> &'static FixtureModel {
    static FIXTURE: OnceLock<FixtureModel> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let spec = *spec;
        std::thread::spawn(move || train(&spec))
            .join()
            .expect("fixture training")
    })
}

/// Trains a fixture package with rps-train's library: BTC, the first half of 2019, two
/// epochs of a hidden size of 8, intervals at 80 % and 95 %, promoted whatever the gate says.
pub fn train(spec: &Spec) -> FixtureModel {
    use rps_features::{compute, spec as feature_spec, write_frame};
    // Kept for the whole test process (other fixtures copy from it), under target/tmp.
    let dir = tempfile::Builder::new()
        .prefix(&format!("{}-fixture-", spec.label))
        .tempdir_in(spec.tmp_dir)
        .unwrap()
        .keep();
    let (a, b) = (
        index_at(TRAIN_START) - feature_spec().warmup,
        index_at(TRAIN_END),
    );
    let frame = compute(COIN, &bars()[a..b]);
    let cfg = rps_train::Config {
        store: dir.join("store").to_str().unwrap().into(),
        coins: vec![COIN.into()],
        registry: dir.join("registry"),
        model_name: spec.model_name.into(),
        experiment: format!("{}-tests", spec.label),
        run_name: Some("fixture".into()),
        model_kind: rps_model::kinds::DEFAULT.into(),
        epochs: 2,
        hidden: 8,
        lookback: LOOKBACK,
        batch_size: 64,
        lr: 3e-3,
        weight_decay: 1e-2,
        patience: 5,
        seed: 7,
        max_train_rows: None,
        split: rps_train::data::SplitFractions {
            train: 0.7,
            val: 0.1,
            calib: 0.1,
        },
        levels: vec![0.8, 0.95],
        calibrator: rps_model::intervals::CalibratorParams::default(),
        metrics: None,
        package_out: Some(dir.join("model")),
        report_dir: dir.join("reports"),
        profile: None,
        force_promote: true,
        persistence_champion: false,
        walk_forward: 0,
        min_gate_rows: 168,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let summary = rt.block_on(async {
        let store = rps_core::Store::open(&cfg.store).unwrap();
        write_frame(&store, &frame).await.unwrap();
        rps_train::run(&cfg)
            .await
            .expect("rps-train trains the fixture")
    });
    let split = &summary.evaluation.splits["1_train"];
    let ms = |s: &str| rps_core::time::parse_utc(s).unwrap().timestamp_millis();
    let first = ms(&split.start) - (LOOKBACK as i64 - 1) * HOUR_MS;
    FixtureModel {
        package: dir.join("model"),
        reference: (first, ms(&split.end)),
    }
}
