//! The embedded local registry: the same flow as with MLflow on a temp directory, atomic
//! alias moves, version numbering under concurrency, and the runs log.

use std::path::Path;

use rps_mlflow::{Dataset, Error, LocalRegistry, Metric, Registry, RunStatus, now_ms};

use crate::common::{make_package, tree};

fn s(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn log_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("runs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_training_flow_is_stored_on_disk_with_mlflow_semantics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("registry");
    let local = LocalRegistry::open(&dir).unwrap();
    let reg = Registry::Local(local.clone());
    let pkg = make_package(tmp.path());
    assert!(reg.describe().contains("local registry"));

    let run = reg
        .start_run("rps", "train-1", &s(&[("git_commit", "abc")]))
        .await
        .unwrap();
    reg.log_params(&run, &s(&[("lr", "0.001"), ("hidden", "64")]))
        .await
        .unwrap();
    let t = now_ms();
    let ms: Vec<Metric> = [0.9, 0.5, 0.3]
        .iter()
        .enumerate()
        .map(|(i, v)| Metric::new("loss", *v, i as i64, t))
        .collect();
    reg.log_metrics(&run, &ms).await.unwrap();
    let ds = Dataset {
        name: "btc".into(),
        digest: "d1g35t".into(),
        source_type: "local".into(),
        source: "{}".into(),
        context: "training".into(),
        ..Default::default()
    };
    reg.log_input(&run, &ds).await.unwrap();
    reg.log_artifact(&run, &pkg, "model").await.unwrap();
    let report = tmp.path().join("report.json");
    std::fs::write(&report, "{}").unwrap();
    reg.log_artifact(&run, &report, "reports").await.unwrap();
    let v1 = reg.register(&run, "rps-forecaster", "model").await.unwrap();
    reg.end_run(&run, RunStatus::Finished).await.unwrap();

    // Run record, history and artifacts on disk.
    let stored = local.get_run(&run.run_id).unwrap();
    assert_eq!(stored.status, RunStatus::Finished);
    assert!(stored.end_time.is_some());
    assert_eq!(stored.params.get("lr").map(String::as_str), Some("0.001"));
    assert_eq!(
        stored.tags.get("git_commit").map(String::as_str),
        Some("abc")
    );
    assert_eq!(stored.inputs, vec![ds]);
    let hist: Vec<(i64, f64)> = local
        .metric_history(&run.run_id, "loss")
        .unwrap()
        .iter()
        .map(|m| (m.step, m.value))
        .collect();
    assert_eq!(hist, vec![(0, 0.9), (1, 0.5), (2, 0.3)]);
    let arts = dir.join("runs").join(&run.run_id).join("artifacts");
    assert_eq!(tree(&arts.join("model"), None), tree(&pkg, None));
    assert!(arts.join("reports/report.json").is_file());

    // Version 1, downloadable byte-identical (without the registry's version.json).
    assert_eq!(
        (v1.version.as_str(), v1.run_id.as_str()),
        ("1", run.run_id.as_str())
    );
    assert!(Path::new(&v1.source).join("model.safetensors").is_file());
    let dest = tmp.path().join("dl");
    let got = reg.download(&v1, &dest).await.unwrap();
    assert_eq!(tree(&got, None), tree(&pkg, None));

    // Aliases with the same semantics as MLflow.
    assert_eq!(
        reg.get_alias("rps-forecaster", "champion").await.unwrap(),
        None
    );
    reg.set_alias("rps-forecaster", "champion", "1")
        .await
        .unwrap();
    let run2 = reg.start_run("rps", "train-2", &[]).await.unwrap();
    reg.log_artifact(&run2, &pkg, "model").await.unwrap();
    let v2 = reg
        .register(&run2, "rps-forecaster", "model")
        .await
        .unwrap();
    reg.end_run(&run2, RunStatus::Finished).await.unwrap();
    assert_eq!(v2.version, "2");
    reg.set_alias("rps-forecaster", "champion", "2")
        .await
        .unwrap();
    assert_eq!(
        reg.get_alias("rps-forecaster", "champion").await.unwrap(),
        Some(v2.clone())
    );
    assert_eq!(
        reg.resolve("models:/rps-forecaster@champion")
            .await
            .unwrap(),
        v2
    );
    assert_eq!(reg.resolve("models:/rps-forecaster/1").await.unwrap(), v1);
    assert_eq!(reg.get_version("rps-forecaster", "3").await.unwrap(), None);
    let e = reg
        .set_alias("rps-forecaster", "champion", "7")
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(
        reg.get_alias("rps-forecaster", "champion").await.unwrap(),
        Some(v2),
        "a failed move keeps the alias"
    );
    reg.delete_alias("rps-forecaster", "champion")
        .await
        .unwrap();
    assert_eq!(
        reg.get_alias("rps-forecaster", "champion").await.unwrap(),
        None
    );
    assert!(
        reg.set_alias("rps-forecaster", "latest", "1")
            .await
            .is_err(),
        "reserved alias"
    );

    // The runs log has one line per event, in order, for both runs.
    let log = log_lines(&dir);
    let events: Vec<(String, String)> = log
        .iter()
        .filter(|e| e["run_id"].is_string())
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["run_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let (r1, r2) = (run.run_id.clone(), run2.run_id.clone());
    assert_eq!(
        events,
        vec![
            ("start".into(), r1.clone()),
            ("register".into(), r1.clone()),
            ("end".into(), r1.clone()),
            ("start".into(), r2.clone()),
            ("register".into(), r2.clone()),
            ("end".into(), r2)
        ]
    );
    let end = log
        .iter()
        .find(|e| e["event"] == "end" && e["run_id"] == r1.as_str())
        .unwrap();
    assert_eq!(end["status"], "FINISHED");
    assert_eq!(end["metrics"]["loss"], 0.3);
}

#[tokio::test]
async fn bad_values_are_refused_and_nothing_already_stored_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let local = LocalRegistry::open(tmp.path()).unwrap();
    let reg = Registry::Local(local.clone());
    let run = reg.start_run("rps", "r", &[]).await.unwrap();
    reg.log_params(&run, &s(&[("lr", "0.1")])).await.unwrap();
    reg.log_metrics(&run, &[Metric::new("loss", 1.0, 0, 1)])
        .await
        .unwrap();

    let e = reg
        .log_metrics(
            &run,
            &[
                Metric::new("loss", 0.5, 1, 2),
                Metric::new("loss", f64::NAN, 2, 3),
            ],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NonFiniteMetric { step: 2, .. }), "{e}");
    let e = reg
        .log_params(&run, &s(&[("epochs", "3"), ("lr", "0.2")]))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }), "{e}");
    let long = Dataset {
        name: "d".into(),
        digest: "x".repeat(37),
        ..Default::default()
    };
    assert!(reg.log_input(&run, &long).await.is_err());
    let e = reg.register(&run, "m", "model").await.unwrap_err();
    assert!(e.is_not_found(), "no artifacts, no version: {e}");

    assert_eq!(local.metric_history(&run.run_id, "loss").unwrap().len(), 1);
    let stored = local.get_run(&run.run_id).unwrap();
    assert_eq!(
        stored.params.len(),
        1,
        "the conflicting batch stored nothing: {:?}",
        stored.params
    );
    assert!(stored.inputs.is_empty());
    assert_eq!(reg.get_version("m", "1").await.unwrap(), None);
}

#[test]
fn an_alias_move_is_atomic_for_concurrent_readers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let reg = Registry::Local(LocalRegistry::open(&dir).unwrap());
    let pkg = make_package(tmp.path());
    rt.block_on(async {
        for _ in 0..2 {
            let run = reg.start_run("rps", "r", &[]).await.unwrap();
            reg.log_artifact(&run, &pkg, "model").await.unwrap();
            reg.register(&run, "m", "model").await.unwrap();
        }
        reg.set_alias("m", "champion", "1").await.unwrap();
    });
    let alias_file = dir.join("models/m/aliases/champion");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, alias_file) = (stop.clone(), alias_file.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let v = std::fs::read_to_string(&alias_file).expect("the alias file always exists");
                assert!(v == "1" || v == "2", "a reader saw a partial alias: {v:?}");
                reads += 1;
            }
            reads
        })
    };

    rt.block_on(async {
        for i in 0..400 {
            reg.set_alias("m", "champion", if i % 2 == 0 { "2" } else { "1" })
                .await
                .unwrap();
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    assert!(reader.join().unwrap() > 0);
    assert_eq!(std::fs::read_to_string(&alias_file).unwrap(), "1");
    let names: Vec<String> = std::fs::read_dir(dir.join("models/m/aliases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["champion".to_string()],
        "no temp files left behind"
    );
}

#[test]
fn concurrent_registrations_get_distinct_consecutive_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("reg");
    let pkg = make_package(tmp.path());
    // Separate registry handles per thread, as separate processes would have.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (dir, pkg) = (dir.clone(), pkg.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let reg = Registry::Local(LocalRegistry::open(&dir).unwrap());
                rt.block_on(async {
                    let mut got = Vec::new();
                    for _ in 0..3 {
                        let run = reg.start_run("rps", "r", &[]).await.unwrap();
                        reg.log_artifact(&run, &pkg, "model").await.unwrap();
                        got.push(
                            reg.register(&run, "m", "model")
                                .await
                                .unwrap()
                                .version
                                .parse::<u32>()
                                .unwrap(),
                        );
                    }
                    got
                })
            })
        })
        .collect();
    let mut all: Vec<u32> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();

    assert_eq!(all, (1..=12).collect::<Vec<_>>());
    let reg = LocalRegistry::open(&dir).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let r = Registry::Local(reg);
    for v in 1..=12 {
        let mv = rt
            .block_on(r.get_version("m", &v.to_string()))
            .unwrap()
            .unwrap();
        assert_eq!(
            tree(Path::new(&mv.source), Some("version.json")),
            tree(&pkg, None)
        );
    }
    assert_eq!(
        log_lines(&dir)
            .iter()
            .filter(|e| e["event"] == "start")
            .count(),
        12
    );
}

#[tokio::test]
async fn a_damaged_version_file_is_bad_input_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("registry");
    let reg = Registry::Local(LocalRegistry::open(&dir).unwrap());
    let run = reg.start_run("rps", "r", &[]).await.unwrap();
    reg.log_artifact(&run, &make_package(tmp.path()), "model")
        .await
        .unwrap();
    let mv = reg.register(&run, "m", "model").await.unwrap();
    reg.set_alias("m", "champion", &mv.version).await.unwrap();
    let vf = dir.join("models/m/versions/1/version.json");
    assert!(vf.is_file(), "{}", vf.display());
    std::fs::write(&vf, b"{ garbage").unwrap();

    let e = reg.get_alias("m", "champion").await.unwrap_err();
    assert_eq!(e.exit_code(), rps_core::ExitCode::BadInput, "{e}");
    assert!(e.to_string().contains(vf.to_str().unwrap()), "{e}");
}

/// The tags rps-train gives a run: its host and pid.
fn trainer(host: &str, pid: u32) -> Vec<(String, String)> {
    s(&[
        (rps_mlflow::HOST_TAG, host),
        (rps_mlflow::PID_TAG, &pid.to_string()),
    ])
}

#[tokio::test]
async fn runs_left_running_by_a_dead_trainer_of_this_host_are_closed_failed_and_others_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("registry");
    let local = LocalRegistry::open(&dir).unwrap();
    let reg = Registry::Local(local.clone());
    // 99999999 is above any pid_max: never a running process. Our parent is alive.
    let live = std::os::unix::process::parent_id();
    let orphan = reg
        .start_run("exp", "killed", &trainer("host-a", 99_999_999))
        .await
        .unwrap();
    let alive = reg
        .start_run("exp", "alive", &trainer("host-a", live))
        .await
        .unwrap();
    let ours = reg
        .start_run("exp", "ours", &trainer("host-a", std::process::id()))
        .await
        .unwrap();
    let other_host = reg
        .start_run("exp", "elsewhere", &trainer("host-b", 99_999_999))
        .await
        .unwrap();
    let other_exp = reg
        .start_run("exp2", "other-exp", &trainer("host-a", 99_999_999))
        .await
        .unwrap();
    let untagged = reg.start_run("exp", "untagged", &[]).await.unwrap();
    let ended = reg
        .start_run("exp", "ended", &trainer("host-a", 99_999_999))
        .await
        .unwrap();
    reg.end_run(&ended, RunStatus::Finished).await.unwrap();

    let closed = reg.close_orphaned_runs("exp", "host-a").await.unwrap();

    assert_eq!(closed, vec![orphan.run_id.clone()]);
    let r = local.get_run(&orphan.run_id).unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert!(r.end_time.is_some_and(|t| t >= r.start_time), "{r:?}");
    assert_eq!(
        r.tags.get(rps_mlflow::ERROR_TAG).map(String::as_str),
        Some("orphaned: trainer pid 99999999 on host-a is gone")
    );
    for run in [&alive, &ours, &other_host, &other_exp, &untagged] {
        let r = local.get_run(&run.run_id).unwrap();
        assert_eq!(r.status, RunStatus::Running, "{} was closed", r.run_name);
        assert!(!r.tags.contains_key(rps_mlflow::ERROR_TAG), "{r:?}");
    }
    assert_eq!(
        local.get_run(&ended.run_id).unwrap().status,
        RunStatus::Finished
    );
    // The closing is in the runs log like any other end.
    let ends: Vec<_> = log_lines(&dir)
        .into_iter()
        .filter(|l| l["event"] == "end" && l["run_id"] == orphan.run_id.as_str())
        .collect();
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["status"], "FAILED");
    // A second sweep finds nothing more; an unknown experiment has nothing.
    assert!(
        reg.close_orphaned_runs("exp", "host-a")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        reg.close_orphaned_runs("nope", "host-a")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_registration_removes_the_staging_directories_of_dead_registrars_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("registry");
    let reg = Registry::local(&dir).unwrap();
    let pkg = make_package(tmp.path());
    let run = reg.start_run("rps", "train", &[]).await.unwrap();
    reg.log_artifact(&run, &pkg, "model").await.unwrap();
    // What a registrar killed mid-copy leaves, and one still copying in another process.
    let model_dir = dir.join("models/m");
    let dead = model_dir.join(".staging-99999999-0123456789abcdef");
    let live = model_dir.join(format!(
        ".staging-{}-fedcba9876543210",
        std::os::unix::process::parent_id()
    ));
    for d in [&dead, &live] {
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/model.safetensors"), b"half").unwrap();
    }

    let v = reg.register(&run, "m", "model").await.unwrap();

    assert_eq!(v.version, "1");
    assert!(!dead.exists(), "a dead registrar's staging is removed");
    assert!(live.exists(), "a running registrar's staging is kept");
    let left: Vec<String> = std::fs::read_dir(&model_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".staging-"))
        .collect();
    assert_eq!(left.len(), 1, "only the live staging is left: {left:?}");
}
