//! The registry over a real MLflow server: a whole training-like flow, verified through the
//! REST API rather than through the registry's own view.

use rps_mlflow::{Dataset, Error, Metric, MlflowRegistry, Registry, RunHandle, RunStatus, now_ms};

use crate::common::{client, make_package, tree, unique};

fn s(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn run_with_package(
    reg: &Registry,
    exp: &str,
    name: &str,
    pkg: &std::path::Path,
) -> RunHandle {
    let run = reg
        .start_run(exp, name, &s(&[("git_commit", "0123abc")]))
        .await
        .unwrap();
    reg.log_artifact(&run, pkg, "model").await.unwrap();
    run
}

#[tokio::test]
#[ignore = "needs the MLflow test server; scripts/test starts it"]
async fn a_training_flow_is_fully_visible_through_the_mlflow_rest_api() {
    let uri = rps_testkit::service::mlflow_uri();
    let client = client(&uri);
    let reg = Registry::Mlflow(MlflowRegistry::new(client.clone()));
    let tmp = tempfile::tempdir().unwrap();
    let exp = unique("rps-test-flow");
    let model = unique("rps-test-model");

    // Arrange + act: the calls rps-train makes.
    let tags = s(&[
        ("git_commit", "0123abc"),
        ("data_source", "csv"),
        ("feature_spec_hash", "f00d"),
    ]);
    let run = reg.start_run(&exp, "train-1", &tags).await.unwrap();
    reg.log_params(
        &run,
        &s(&[("lr", "0.001"), ("hidden", "64"), ("lookback", "48")]),
    )
    .await
    .unwrap();
    let t0 = now_ms();
    let losses = [0.9, 0.5, 0.31, 0.25, 0.24];
    let mut metrics: Vec<Metric> = losses
        .iter()
        .enumerate()
        .map(|(i, v)| Metric::new("train_loss", *v, i as i64, t0 + i as i64))
        .collect();
    metrics.push(Metric::new("test_rmse_usd", 412.5, 0, t0));
    reg.log_metrics(&run, &metrics).await.unwrap();
    let ds = Dataset {
        name: "btc-usd-hourly".into(),
        digest: "9f86d081884c7d659a2feaa0c55ad015".into(),
        source_type: "local".into(),
        source: r#"{"uri":"features/BTC.parquet"}"#.into(),
        schema: String::new(),
        profile: r#"{"num_rows":33259}"#.into(),
        context: "training".into(),
    };
    reg.log_input(&run, &ds).await.unwrap();
    let pkg = make_package(tmp.path());
    reg.log_artifact(&run, &pkg, "model").await.unwrap();
    let report = tmp.path().join("profile.html");
    std::fs::write(&report, "<html><body>profile</body></html>").unwrap();
    reg.log_artifact(&run, &report, "reports").await.unwrap();
    let v1 = reg.register(&run, &model, "model").await.unwrap();
    reg.end_run(&run, RunStatus::Finished).await.unwrap();

    // Assert through REST: the run.
    let got = client.get_run(&run.run_id).await.unwrap();
    assert_eq!(got.info.status(), Some(RunStatus::Finished));
    assert!(got.info.end_time.unwrap_or(0) >= got.info.start_time && got.info.start_time > 0);
    assert!(!got.info.user_id.is_empty(), "user_id is sent");
    assert_eq!(got.info.run_name, "train-1");
    assert_eq!(got.data.param("lr"), Some("0.001"));
    assert_eq!(got.data.param("lookback"), Some("48"));
    assert_eq!(got.data.tag("git_commit"), Some("0123abc"));
    assert_eq!(
        got.data.metric("train_loss"),
        Some(0.24),
        "latest value = highest step"
    );
    let inputs = &got.inputs.dataset_inputs;
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].dataset.name, "btc-usd-hourly");
    assert_eq!(inputs[0].dataset.digest, ds.digest);
    assert_eq!(inputs[0].dataset.source, ds.source);
    assert!(
        inputs[0]
            .tags
            .iter()
            .any(|t| t.key == "mlflow.data.context" && t.value == "training")
    );

    // Metric history with every step, in step order, exact values and ms timestamps.
    let hist = client
        .get_metric_history(&run.run_id, "train_loss")
        .await
        .unwrap();
    let mut pts: Vec<(i64, f64, i64)> = hist
        .iter()
        .map(|m| (m.step, m.value, m.timestamp_ms))
        .collect();
    pts.sort_by_key(|p| p.0);
    let want: Vec<(i64, f64, i64)> = losses
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64, *v, t0 + i as i64))
        .collect();
    assert_eq!(pts, want);

    // Artifacts listed (tracking API) and downloaded byte-identical, nested dir included.
    let root: Vec<String> = client
        .list_artifacts(&run.run_id, None)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert!(
        root.contains(&"model".to_string()) && root.contains(&"reports".to_string()),
        "{root:?}"
    );
    let listed = client
        .list_artifacts(&run.run_id, Some("model/extra"))
        .await
        .unwrap();
    assert!(
        listed
            .iter()
            .any(|f| f.path == "model/extra/sub" && f.is_dir),
        "{listed:?}"
    );
    let dl = tmp.path().join("dl-run");
    client
        .download_run_artifacts(&run.run_id, "reports", &dl)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(dl.join("profile.html")).unwrap(),
        std::fs::read(&report).unwrap()
    );

    // The registered version: source = artifact_uri + "/model", with the run id.
    let mv = client.get_model_version(&model, &v1.version).await.unwrap();
    assert_eq!(v1.version, "1");
    assert_eq!(mv.source, format!("{}/model", got.info.artifact_uri));
    assert_eq!(mv.run_id, run.run_id);
    assert_eq!(v1.source, mv.source);

    // Download of the version = the package, byte for byte.
    let dest = tmp.path().join("dl-model");
    let p = reg.download(&v1, &dest).await.unwrap();
    assert_eq!(tree(&p, None), tree(&pkg, None));
    assert!(tree(&p, None).contains_key("extra/sub/notes v1.txt"));

    // Aliases: none yet, set, moved to a second version, resolved, deleted.
    assert_eq!(reg.get_alias(&model, "champion").await.unwrap(), None);
    reg.set_alias(&model, "champion", &v1.version)
        .await
        .unwrap();
    assert_eq!(
        reg.get_alias(&model, "champion").await.unwrap(),
        Some(v1.clone())
    );
    let run2 = run_with_package(&reg, &exp, "train-2", &pkg).await;
    let v2 = reg.register(&run2, &model, "model").await.unwrap();
    reg.end_run(&run2, RunStatus::Finished).await.unwrap();
    assert_eq!(v2.version, "2");
    reg.set_alias(&model, "challenger", &v2.version)
        .await
        .unwrap();
    reg.set_alias(&model, "champion", &v2.version)
        .await
        .unwrap();
    let champ = client.get_alias(&model, "champion").await.unwrap().unwrap();
    assert_eq!(
        (champ.version.as_str(), champ.run_id.as_str()),
        ("2", run2.run_id.as_str())
    );
    let rm = client.get_registered_model(&model).await.unwrap();
    let champs: Vec<&str> = rm
        .aliases
        .iter()
        .filter(|a| a.alias == "champion")
        .map(|a| a.version.as_str())
        .collect();
    assert_eq!(champs, vec!["2"], "the alias moved, it was not duplicated");
    assert_eq!(
        reg.resolve(&format!("models:/{model}@champion"))
            .await
            .unwrap(),
        v2
    );
    assert_eq!(
        reg.resolve(&format!("models:/{model}/1")).await.unwrap(),
        v1
    );
    assert_eq!(
        reg.get_version(&model, "1").await.unwrap(),
        Some(v1.clone())
    );
    assert_eq!(reg.get_version(&model, "99").await.unwrap(), None);
    let e = reg
        .resolve(&format!("models:/{model}@nope"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    reg.delete_alias(&model, "challenger").await.unwrap();
    assert_eq!(reg.get_alias(&model, "challenger").await.unwrap(), None);
    assert_eq!(
        reg.get_alias(&unique("no-such-model"), "champion")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
#[ignore = "needs the MLflow test server; scripts/test starts it"]
async fn registering_a_missing_artifact_directory_creates_no_version() {
    let uri = rps_testkit::service::mlflow_uri();
    let client = client(&uri);
    let reg = Registry::Mlflow(MlflowRegistry::new(client.clone()));
    let tmp = tempfile::tempdir().unwrap();
    let model = unique("rps-test-model");
    let run = run_with_package(
        &reg,
        &unique("rps-test-missing"),
        "r",
        &make_package(tmp.path()),
    )
    .await;

    let e = reg.register(&run, &model, "not-there").await.unwrap_err();

    assert!(
        e.is_not_found() && e.exit_code() == rps_core::ExitCode::BadInput,
        "{e}"
    );
    assert_eq!(reg.get_version(&model, "1").await.unwrap(), None);
    reg.end_run(&run, RunStatus::Failed).await.unwrap();
    let info = client.get_run(&run.run_id).await.unwrap().info;
    assert_eq!(info.status(), Some(RunStatus::Failed));
    assert!(info.end_time.is_some());
}

#[tokio::test]
#[ignore = "needs the MLflow test server; scripts/test starts it"]
async fn runs_left_running_by_a_dead_trainer_are_closed_failed_through_the_rest_api() {
    let uri = rps_testkit::service::mlflow_uri();
    let client = client(&uri);
    let reg = Registry::Mlflow(MlflowRegistry::new(client.clone()));
    let exp = unique("rps-test-orphans");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let tags = |host: &str, pid: u32| {
        s(&[
            (rps_mlflow::HOST_TAG, host),
            (rps_mlflow::PID_TAG, &pid.to_string()),
        ])
    };
    // 99999999 is above any pid_max: never a running process.
    let orphan = reg
        .start_run(&exp, "killed", &tags(&host, 99_999_999))
        .await
        .unwrap();
    let ours = reg
        .start_run(&exp, "ours", &tags(&host, std::process::id()))
        .await
        .unwrap();
    let live = reg
        .start_run(
            &exp,
            "live",
            &tags(&host, std::os::unix::process::parent_id()),
        )
        .await
        .unwrap();
    let elsewhere = reg
        .start_run(&exp, "elsewhere", &tags("another-host", 99_999_999))
        .await
        .unwrap();
    let finished = reg
        .start_run(&exp, "finished", &tags(&host, 99_999_999))
        .await
        .unwrap();
    reg.end_run(&finished, RunStatus::Finished).await.unwrap();
    let before = now_ms();

    let closed = reg.close_orphaned_runs(&exp, &host).await.unwrap();

    assert_eq!(closed, vec![orphan.run_id.clone()]);
    let got = client.get_run(&orphan.run_id).await.unwrap();
    assert_eq!(got.info.status(), Some(RunStatus::Failed));
    let end = got.info.end_time.expect("an end time");
    assert!(end >= before, "end time {end} is epoch ms of the closing");
    assert_eq!(
        got.data.tag(rps_mlflow::ERROR_TAG),
        Some(format!("orphaned: trainer pid 99999999 on {host} is gone").as_str())
    );
    for run in [&ours, &live, &elsewhere] {
        let got = client.get_run(&run.run_id).await.unwrap();
        assert_eq!(
            got.info.status(),
            Some(RunStatus::Running),
            "{} was closed",
            run.run_name
        );
        assert_eq!(got.data.tag(rps_mlflow::ERROR_TAG), None);
    }
    let got = client.get_run(&finished.run_id).await.unwrap();
    assert_eq!(got.info.status(), Some(RunStatus::Finished));
    // Nothing is left to close; an experiment that does not exist has nothing.
    assert!(
        reg.close_orphaned_runs(&exp, &host)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        reg.close_orphaned_runs(&unique("rps-test-none"), &host)
            .await
            .unwrap()
            .is_empty()
    );
}
