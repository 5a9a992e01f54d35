//! The embedded default: runs and models in a local registry directory, no server.

use std::path::Path;

use crate::support::{feature_store, metrics, ok, short_args, train, with};

fn alias(registry: &Path, alias: &str) -> Option<String> {
    std::fs::read_to_string(registry.join("models/rps-forecaster/aliases").join(alias))
        .ok()
        .map(|s| s.trim().to_string())
}

#[test]
fn a_first_run_becomes_champion_and_a_worse_second_run_only_challenger() {
    let out = tempfile::tempdir().unwrap();
    let registry = out.path().join("registry");
    let args = short_args(feature_store(), out.path());

    // First setup: this small model becomes champion whatever persistence scores.
    let stdout = ok(&train(&with(args.clone(), &["--force-promote"]), None, &[]));
    assert!(stdout.contains("promoted to champion"), "{stdout}");
    for f in ["model.safetensors", "metadata.json", "MLmodel"] {
        assert!(
            out.path().join("package").join(f).is_file(),
            "package file {f}"
        );
    }
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("package/metadata.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["version"], "1");
    assert_eq!(
        meta["feature_spec_hash"],
        rps_features::spec().hash.as_str()
    );
    assert_eq!(meta["conformal"].as_array().unwrap().len(), 3);
    assert_eq!(
        meta["reference"].as_array().unwrap().len(),
        rps_model::MODEL_INPUTS.len()
    );
    let mlmodel = std::fs::read_to_string(out.path().join("package/MLmodel")).unwrap();
    assert!(
        mlmodel.contains("flavors:")
            && mlmodel.contains("rps_lstm:")
            && mlmodel.contains("artifact_path: model")
    );
    assert_eq!(alias(&registry, "champion").as_deref(), Some("1"));
    assert_eq!(alias(&registry, "challenger").as_deref(), Some("1"));
    // The registered copy is a complete package that the serving side can load.
    let fc =
        rps_model::Forecaster::load(&registry.join("models/rps-forecaster/versions/1")).unwrap();
    assert_eq!(fc.lookback(), 24);
    let first = metrics(out.path());
    assert_eq!(first["gate"]["promote"], true);

    // Deliberately worse: one epoch of a tiny network at a tiny learning rate.
    let mut worse = args.clone();
    for (flag, value) in [
        ("--epochs", "1"),
        ("--hidden", "2"),
        ("--lr", "0.00001"),
        ("--seed", "3"),
    ] {
        let i = worse.iter().position(|a| a == flag).unwrap();
        worse[i + 1] = value.into();
    }
    // (Champion against challenger only: no persistence champion run.)
    let worse = with(worse, &["--no-persistence-champion"]);
    let stdout = ok(&train(&worse, None, &[]));
    assert!(
        stdout.contains("challenger, champion unchanged"),
        "{stdout}"
    );
    assert_eq!(alias(&registry, "champion").as_deref(), Some("1"));
    assert_eq!(alias(&registry, "challenger").as_deref(), Some("2"));
    let second = metrics(out.path());
    assert_eq!(second["gate"]["promote"], false);
    let (new, champ) = (
        second["gate"]["new_rmse"].as_f64().unwrap(),
        second["gate"]["champion_rmse"].as_f64().unwrap(),
    );
    assert!(new >= champ, "gate numbers: new {new} champion {champ}");
    // The champion was re-scored on the same rows, not taken from its old run.
    assert_eq!(second["gate"]["rows"], first["test_windows"]);
    let champ_old = first["test"]["model"]["rmse"].as_f64().unwrap();
    assert!(
        (champ - champ_old).abs() < 1e-6 * champ_old,
        "re-scored {champ} vs first run's {champ_old}"
    );

    // Both runs are in the runs log, finished.
    let log = std::fs::read_to_string(registry.join("runs.jsonl")).unwrap();
    assert!(log.lines().count() >= 2, "{log}");
    let reg = rps_mlflow::LocalRegistry::open(&registry).unwrap();
    let run_id = second["run_id"].as_str().map(str::to_string);
    if let Some(id) = run_id {
        assert_eq!(
            reg.get_run(&id).unwrap().status,
            rps_mlflow::RunStatus::Finished
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_model_and_test_rmse() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    ok(&train(&short_args(feature_store(), a.path()), None, &[]));
    ok(&train(&short_args(feature_store(), b.path()), None, &[]));
    let (ma, mb) = (metrics(a.path()), metrics(b.path()));
    assert_eq!(ma["test"]["model"]["rmse"], mb["test"]["model"]["rmse"]);
    assert_eq!(
        ma["training"]["best_val_loss"],
        mb["training"]["best_val_loss"]
    );
    let wa = std::fs::read(a.path().join("package/model.safetensors")).unwrap();
    let wb = std::fs::read(b.path().join("package/model.safetensors")).unwrap();
    assert!(wa == wb, "same seed, same data: identical weights");
}

#[test]
fn a_better_looking_model_on_too_few_gate_rows_never_replaces_the_champion() {
    let out = tempfile::tempdir().unwrap();
    let registry = out.path().join("registry");
    let first = with(
        short_args(feature_store(), out.path()),
        &["--force-promote"],
    );
    ok(&train(&first, None, &[]));
    assert_eq!(alias(&registry, "champion").as_deref(), Some("1"));

    // A store of 1,500 hours: about 140 test rows, fewer than a week of hours.
    let small = tempfile::tempdir().unwrap();
    let frame = rps_features::compute("BTC", &rps_testkit::fixture::bars()[..1500]);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = rps_core::Store::open(small.path().to_str().unwrap()).unwrap();
            rps_features::write_frame(&store, &frame).await.unwrap();
        });
    let stdout = ok(&train(&short_args(small.path(), out.path()), None, &[]));
    let m = metrics(out.path());
    let rows = m["gate"]["rows"].as_u64().unwrap();
    assert!(rows > 0 && rows < 168, "{rows} gate rows");
    assert_eq!(m["gate"]["promote"], false, "{}", m["gate"]);
    let reason = m["gate"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("only {rows} gate rows")) && reason.contains("168"),
        "{reason}"
    );
    assert!(
        stdout.contains("challenger, champion unchanged"),
        "{stdout}"
    );
    assert_eq!(alias(&registry, "champion").as_deref(), Some("1"));
}

#[test]
fn a_first_model_no_better_than_persistence_makes_the_persistence_kind_champion() {
    let out = tempfile::tempdir().unwrap();
    let registry = out.path().join("registry");
    // A deliberately useless model: one epoch of a tiny network at a tiny learning rate.
    let mut args = short_args(feature_store(), out.path());
    for (flag, value) in [("--epochs", "1"), ("--hidden", "2"), ("--lr", "0.00001")] {
        let i = args.iter().position(|a| a == flag).unwrap();
        args[i + 1] = value.into();
    }
    let stdout = ok(&train(&args, None, &[]));
    assert!(
        stdout.contains("not better than persistence")
            && stdout.contains("the persistence kind is the champion")
            && stdout.contains("kind persistence"),
        "{stdout}"
    );
    // Version 1 (the LSTM) is registered but not promoted; version 2 is persistence.
    assert_eq!(alias(&registry, "champion").as_deref(), Some("2"));
    let v2 = registry.join("models/rps-forecaster/versions/2");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(v2.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["kind"], "persistence");
    let m = metrics(out.path());
    assert_eq!(m["gate"]["promote"], true, "{}", m["gate"]);
    // Its forecast is the last close, and it scores exactly like the persistence baseline.
    let (model, none) = (
        m["test"]["model"]["rmse"].as_f64().unwrap(),
        m["test"]["persistence"]["rmse"].as_f64().unwrap(),
    );
    assert!((model - none).abs() <= 1e-6 * none, "{model} vs {none}");
    let fc = rps_model::Forecaster::load(&v2).unwrap();
    let frame = rps_features::compute("BTC", &rps_testkit::fixture::bars()[..600]);
    let last = frame.len() - 1;
    let lr = fc.predict_logrets(&frame, &[last]).unwrap()[0];
    assert!(
        lr.abs() < 1e-9,
        "a persistence forecast moves the close by {lr}"
    );
}
