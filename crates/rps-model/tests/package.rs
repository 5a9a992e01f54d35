//! The package directory format.

use std::collections::BTreeMap;
use std::path::Path;

use rps_model::package::{FORMAT_VERSION, package_files};
use rps_model::{
    ConformalQuantile, DataInfo, Forecaster, LstmWeights, MODEL_INPUTS, ModelError, ModelMetadata,
    ModelPackage, Scaler,
};

pub fn package(lookback: usize, hidden: usize) -> ModelPackage {
    let n = MODEL_INPUTS.len();
    let metadata = ModelMetadata {
        format_version: FORMAT_VERSION,
        name: "rps-forecaster".into(),
        version: String::new(),
        run_id: "run-1".into(),
        kind: "lstm".into(),
        created_at: "2026-11-26T19:00:00Z".into(),
        feature_spec_hash: rps_features::spec().hash.clone(),
        feature_spec_version: rps_features::spec().version,
        inputs: MODEL_INPUTS.iter().map(|s| s.to_string()).collect(),
        lookback,
        hidden,
        scaler: Scaler {
            mean: vec![0.0; n],
            std: vec![1.0; n],
            target_mean: 0.0,
            target_std: 0.01,
        },
        conformal: vec![
            ConformalQuantile {
                level: 0.8,
                q: 0.005,
            },
            ConformalQuantile {
                level: 0.9,
                q: 0.008,
            },
            ConformalQuantile {
                level: 0.95,
                q: 0.011,
            },
        ],
        volatility: rps_model::intervals::VolatilityModel::constant(0.01),
        calibrator: rps_model::intervals::CalibratorParams::default(),
        calibration: rps_model::intervals::CalibrationState::new(
            &[0.8, 0.9, 0.95],
            (1..=99).map(|i| f64::from(i) / 50.0).collect(),
        ),
        data: DataInfo {
            digest: "abc".into(),
            coins: vec!["BTC".into()],
            ..DataInfo::default()
        },
        metrics: BTreeMap::from([("test_rmse".to_string(), 123.0)]),
        params: BTreeMap::new(),
        git_commit: "unknown".into(),
        reference: Vec::new(),
        weights_sha256: None,
    };
    ModelPackage {
        metadata,
        weights: LstmWeights::init(n, hidden, 11).into(),
    }
}

#[test]
fn a_package_round_trips_through_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pkg");
    let pkg = package(24, 8);
    pkg.save(&p).unwrap();
    for f in package_files(&p) {
        assert!(f.is_file(), "{}", f.display());
    }
    let back = ModelPackage::load(&p).unwrap();
    let digest = back.metadata.weights_sha256.clone().unwrap();
    assert_eq!(digest.len(), 64, "{digest}");
    assert_eq!(
        ModelMetadata {
            weights_sha256: None,
            ..back.metadata.clone()
        },
        pkg.metadata
    );
    assert_eq!(back.weights, pkg.weights);
    let mlmodel = std::fs::read_to_string(p.join("MLmodel")).unwrap();
    assert!(
        mlmodel.starts_with("artifact_path: model\nflavors:\n  rps_lstm:\n"),
        "{mlmodel}"
    );
    assert!(
        mlmodel.contains("model_uuid: ")
            && mlmodel.contains("utc_time_created: '2026-11-26 19:00:00'")
    );
}

#[test]
fn saving_over_a_package_replaces_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pkg");
    package(24, 8).save(&p).unwrap();
    std::fs::write(p.join("stray.txt"), "old").unwrap();
    package(12, 4).save(&p).unwrap();
    assert_eq!(ModelPackage::load(&p).unwrap().metadata.lookback, 12);
    assert!(
        !p.join("stray.txt").exists(),
        "no file of the previous package survives"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no staging directories left: {leftovers:?}"
    );
}

#[test]
fn the_next_save_removes_what_killed_saves_left_and_keeps_a_live_writers_staging() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pkg");
    package(24, 8).save(&p).unwrap();
    // What a save killed mid-way leaves: its staging directory and its backup of the
    // previous package (pid 99999999 is above any pid_max, so never running).
    let dead_staging = dir.path().join(".pkg.staging-99999999");
    let dead_old = dir.path().join(".pkg.old-99999999");
    // A save still running in another process: our parent's pid (alive, and not ours).
    let live = std::os::unix::process::parent_id();
    let live_staging = dir.path().join(format!(".pkg.staging-{live}"));
    for d in [&dead_staging, &dead_old, &live_staging] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("model.safetensors"), b"half").unwrap();
    }

    package(12, 4).save(&p).unwrap();

    assert_eq!(ModelPackage::load(&p).unwrap().metadata.lookback, 12);
    assert!(!dead_staging.exists(), "a dead writer's staging is removed");
    assert!(!dead_old.exists(), "a dead writer's backup is removed");
    assert!(
        live_staging.exists(),
        "a running writer's staging directory is kept"
    );
}

#[test]
fn a_package_of_another_feature_spec_is_refused_by_the_forecaster() {
    let dir = tempfile::tempdir().unwrap();
    let mut pkg = package(24, 8);
    pkg.metadata.feature_spec_hash = "0000000000000000".into();
    pkg.save(dir.path()).unwrap();
    match Forecaster::load(dir.path()) {
        Err(ModelError::SpecMismatch { found, .. }) => assert_eq!(found, "0000000000000000"),
        other => panic!("expected a spec mismatch, got {other:?}"),
    }
}

#[test]
fn corrupt_or_incomplete_packages_are_reported_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    package(24, 8).save(dir.path()).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"not safetensors").unwrap();
    let e = ModelPackage::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("model.safetensors"), "{e}");
    let e = ModelPackage::load(Path::new("/nonexistent/pkg"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/pkg/metadata.json"), "{e}");
}

#[test]
fn a_package_without_a_kind_loads_as_an_lstm() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = package(24, 8);
    pkg.save(dir.path()).unwrap();
    let p = dir.path().join("metadata.json");
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    assert_eq!(meta["kind"], "lstm");
    meta.as_object_mut().unwrap().remove("kind");
    std::fs::write(&p, serde_json::to_vec(&meta).unwrap()).unwrap();
    let back = ModelPackage::load(dir.path()).unwrap();
    assert_eq!(back.metadata.kind, "lstm");
    assert_eq!(back.weights.kind(), "lstm");
    assert_eq!(back.weights, pkg.weights);
    Forecaster::load(dir.path()).unwrap();
}

#[test]
fn a_package_of_an_unknown_kind_is_refused_naming_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    package(24, 8).save(dir.path()).unwrap();
    let p = dir.path().join("metadata.json");
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    meta["kind"] = "prophet".into();
    std::fs::write(&p, serde_json::to_vec(&meta).unwrap()).unwrap();
    match ModelPackage::load(dir.path()) {
        Err(ModelError::BadPackage { reason, .. }) => {
            assert!(
                reason.contains("'prophet'") && reason.contains("lstm"),
                "{reason}"
            )
        }
        other => panic!("expected a bad package, got {other:?}"),
    }
    // Metadata that names another kind than its weights is refused before anything is written.
    let mut pkg = package(24, 8);
    pkg.metadata.kind = "prophet".into();
    let e = pkg.save(&dir.path().join("other")).unwrap_err().to_string();
    assert!(e.contains("does not match its weights"), "{e}");
}

#[test]
fn weights_changed_after_training_are_refused_by_their_checksum() {
    let dir = tempfile::tempdir().unwrap();
    package(24, 8).save(dir.path()).unwrap();
    let wp = dir.path().join("model.safetensors");
    let mut bytes = std::fs::read(&wp).unwrap();
    // Flip bytes of the tensor data (the end of the file), leaving a valid safetensors file
    // whose numbers differ: without the checksum it loads and forecasts something else.
    let n = bytes.len();
    for b in &mut bytes[n - 64..] {
        *b ^= 0x5a;
    }
    std::fs::write(&wp, &bytes).unwrap();
    match ModelPackage::load(dir.path()) {
        Err(ModelError::BadPackage { path, reason }) => {
            assert!(path.ends_with("model.safetensors"), "{}", path.display());
            assert!(
                reason.contains("sha256") && reason.contains("damaged"),
                "{reason}"
            );
        }
        other => panic!("expected a checksum refusal, got {other:?}"),
    }

    // A package that records no checksum cannot be checked, so it is refused too.
    package(24, 8).save(dir.path()).unwrap();
    let p = dir.path().join("metadata.json");
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    meta.as_object_mut().unwrap().remove("weights_sha256");
    std::fs::write(&p, serde_json::to_vec(&meta).unwrap()).unwrap();
    let e = ModelPackage::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("weights_sha256"), "{e}");
}
