//! What a stopped training leaves behind, with the real binary (local registry, and MLflow
//! for SIGTERM): a run whose trainer was SIGKILLed is closed FAILED by the next run on the
//! host, which also removes what killed writers staged; SIGTERM and SIGINT end the run KILLED
//! and exit 143 and 130.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use rps_testkit::process::ChildGuard;

use crate::support::{command, feature_store, ok, short_args, train, with};

/// `short_args`, training long enough to be caught running (no early stopping).
fn long_args(store: &Path, out: &Path) -> Vec<String> {
    let mut args = short_args(store, out);
    let i = args.iter().position(|a| a == "--epochs").unwrap();
    args[i + 1] = "10000".into();
    args.extend(["--patience", "10000"].map(String::from));
    args
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// Every `runs/<id>/run.json` of the local registry.
fn runs(registry: &Path) -> Vec<serde_json::Value> {
    let Ok(dirs) = std::fs::read_dir(registry.join("runs")) else {
        return Vec::new();
    };
    dirs.filter_map(|d| std::fs::read_to_string(d.unwrap().path().join("run.json")).ok())
        .map(|t| serde_json::from_str(&t).unwrap())
        .collect()
}

fn run_json(registry: &Path, run_id: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(registry.join("runs").join(run_id).join("run.json"));
    serde_json::from_str(&text.unwrap()).unwrap()
}

/// Starts a long training whose log goes to `<out>/<name>.log`.
fn spawn_long(out: &Path, name: &str, env: &[(&str, &str)]) -> (ChildGuard, PathBuf) {
    let log = out.join(format!("{name}.log"));
    let mut cmd = command(&long_args(feature_store(), out), None, env);
    cmd.stdout(std::fs::File::create(out.join(format!("{name}.out"))).unwrap())
        .stderr(std::fs::File::create(&log).unwrap());
    (ChildGuard::spawn(&mut cmd), log)
}

/// Waits until the child's run is RUNNING in the registry and has logged an epoch (it is
/// training); returns the run's id.
fn wait_until_training(child: &mut ChildGuard, registry: &Path, log: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            !child.has_exited(),
            "rps-train ended before it could be stopped:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        let pid = child.id().to_string();
        let training = runs(registry).into_iter().find(|r| {
            r["status"] == "RUNNING"
                && r["tags"][rps_mlflow::PID_TAG] == pid.as_str()
                && std::fs::read_to_string(
                    registry
                        .join("runs")
                        .join(r["run_id"].as_str().unwrap())
                        .join("metrics.jsonl"),
                )
                .is_ok_and(|m| m.contains("train_loss"))
        });
        if let Some(r) = training {
            return r["run_id"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no RUNNING run with an epoch after 60 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_exit(child: &mut ChildGuard, within: Duration, log: &Path) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.child().try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "rps-train still runs {within:?} after the signal:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Names in `dir` starting with `prefix`.
fn entries(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn the_run_of_a_killed_trainer_is_closed_failed_by_the_next_run_and_its_leftovers_removed() {
    let out = tempfile::tempdir().unwrap();
    let registry = out.path().join("registry");
    let tmp = out.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let env = [("TMPDIR", tmp.to_str().unwrap())];
    let host = hostname();

    // Arrange: a trainer killed with SIGKILL in the middle of training.
    let (mut child, log) = spawn_long(out.path(), "killed", &env);
    let killed_run = wait_until_training(&mut child, &registry, &log);
    let killed_pid = child.id();
    child.child().kill().unwrap();
    child.child().wait().unwrap();
    let left = run_json(&registry, &killed_run);
    assert_eq!(left["status"], "RUNNING", "nobody ended it: {left}");
    assert_eq!(left["tags"][rps_mlflow::HOST_TAG], host.as_str());
    // What a save killed mid-way leaves (the kill above came during training, before any
    // save): staging and backup directories named with the dead writer's pid. A staging
    // directory of a writer that still runs (this test) must survive.
    let model_dir = registry.join("models/rps-forecaster");
    let dead = [
        out.path().join(format!(".package.staging-{killed_pid}")),
        out.path().join(format!(".package.old-{killed_pid}")),
        model_dir.join(format!(".staging-{killed_pid}-0123456789abcdef")),
        tmp.join(format!("rps-train-{killed_pid}-AbC123")),
    ];
    let live = out
        .path()
        .join(format!(".package.staging-{}", std::process::id()));
    for d in dead.iter().chain([&live]) {
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/model.safetensors"), b"half").unwrap();
    }

    // Act: the next training on the same registry, to completion.
    // One new run: no persistence champion run after it.
    let args = with(
        short_args(feature_store(), out.path()),
        &["--no-persistence-champion"],
    );
    let o = train(&args, None, &env);
    ok(&o);

    // Assert: the killed trainer's run is closed, and says why.
    let closed = run_json(&registry, &killed_run);
    assert_eq!(closed["status"], "FAILED", "{closed}");
    assert_eq!(
        closed["tags"][rps_mlflow::ERROR_TAG],
        format!("orphaned: trainer pid {killed_pid} on {host} is gone").as_str()
    );
    assert!(
        closed["end_time"].as_i64().unwrap() >= closed["start_time"].as_i64().unwrap(),
        "{closed}"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&killed_run) && l.contains("orphaned")),
        "the closing is logged at warn with the run id:\n{stderr}"
    );
    // The new run is tagged the same way and finished.
    let new: Vec<_> = runs(&registry)
        .into_iter()
        .filter(|r| r["run_id"] != killed_run.as_str())
        .collect();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0]["status"], "FINISHED");
    assert_eq!(new[0]["tags"][rps_mlflow::HOST_TAG], host.as_str());
    let new_pid = new[0]["tags"][rps_mlflow::PID_TAG].as_str().unwrap();
    assert!(new_pid.parse::<u32>().is_ok_and(|p| p != killed_pid));
    // Nothing staged by a dead writer is left; the live writer's staging is.
    for d in &dead {
        assert!(!d.exists(), "{} is left", d.display());
    }
    assert_eq!(
        entries(out.path(), ".package."),
        [format!(".package.staging-{}", std::process::id())]
    );
    assert_eq!(entries(&model_dir, ".staging-"), Vec::<String>::new());
    assert_eq!(entries(&tmp, "rps-train-"), Vec::<String>::new());
    assert!(out.path().join("package/metadata.json").is_file());
}

#[test]
fn sigterm_and_sigint_end_the_run_killed_and_exit_143_and_130() {
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let out = tempfile::tempdir().unwrap();
        let registry = out.path().join("registry");
        let (mut child, log) = spawn_long(out.path(), "stopped", &[]);
        let run_id = wait_until_training(&mut child, &registry, &log);

        let sent = Command::new("kill")
            .args(["-s", signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = wait_exit(&mut child, Duration::from_secs(30), &log);

        let stderr = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            status.code(),
            Some(code),
            "SIG{signal}: {status:?}\n{stderr}"
        );
        let run = run_json(&registry, &run_id);
        assert_eq!(run["status"], "KILLED", "SIG{signal}: {run}");
        assert_eq!(
            run["tags"][rps_mlflow::ERROR_TAG],
            format!("interrupted by SIG{signal}").as_str()
        );
        assert!(run["end_time"].as_i64().is_some(), "{run}");
        assert!(
            stderr.contains("run ended KILLED"),
            "SIG{signal}:\n{stderr}"
        );
        // Stopped during training: nothing was written, not even in part.
        assert!(!out.path().join("package").exists());
        assert!(!out.path().join("metrics.json").exists());
        assert_eq!(entries(out.path(), ".package."), Vec::<String>::new());
        assert!(!registry.join("models").exists(), "no version registered");
    }
}

#[test]
#[ignore = "needs the MLflow test server; scripts/test starts it"]
fn sigterm_ends_the_mlflow_run_killed_through_the_rest_api() {
    let uri = rps_testkit::service::mlflow_uri();
    let base = format!("{}/api/2.0/mlflow", uri.trim_end_matches('/'));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let experiment = format!("rps-sigterm-{}-{nanos}", std::process::id());
    let out = tempfile::tempdir().unwrap();
    let args = with(
        long_args(feature_store(), out.path()),
        &["--experiment", &experiment, "--model-name", &experiment],
    );
    let log = out.path().join("mlflow.log");
    let mut cmd = command(&args, Some(&uri), &[]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = ChildGuard::spawn(&mut cmd);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    // (status, body) of a GET or POST against the REST API.
    let call = |path: &str, body: Option<serde_json::Value>| {
        rt.block_on(async {
            let url = format!("{base}/{path}");
            let req = match body {
                Some(b) => http.post(url).json(&b),
                None => http.get(url),
            };
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        })
    };
    // Wait until the run is RUNNING and has logged an epoch.
    let deadline = Instant::now() + Duration::from_secs(60);
    let run_id = loop {
        assert!(
            !child.has_exited(),
            "rps-train ended before it could be stopped:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let (s, exp) = call(
            &format!("experiments/get-by-name?experiment_name={experiment}"),
            None,
        );
        if s == 200 {
            let id = exp["experiment"]["experiment_id"].clone();
            let (_, found) = call(
                "runs/search",
                Some(serde_json::json!({
                    "experiment_ids": [id],
                    "filter": "attributes.status = 'RUNNING'",
                })),
            );
            let training = found["runs"].as_array().and_then(|runs| {
                runs.iter().find(|r| {
                    r["data"]["metrics"]
                        .as_array()
                        .is_some_and(|m| m.iter().any(|x| x["key"] == "train_loss"))
                })
            });
            if let Some(r) = training {
                break r["info"]["run_id"].as_str().unwrap().to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no RUNNING MLflow run with an epoch after 60 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    let sent = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = wait_exit(&mut child, Duration::from_secs(30), &log);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(143), "{status:?}\n{stderr}");

    let (_, run) = call(&format!("runs/get?run_id={run_id}"), None);
    let info = &run["run"]["info"];
    assert_eq!(info["status"], "KILLED", "{run}");
    assert!(
        info["end_time"].as_i64().is_some() || info["end_time"].is_string(),
        "{run}"
    );
    let tags = run["run"]["data"]["tags"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        tags.iter()
            .any(|t| t["key"] == rps_mlflow::ERROR_TAG && t["value"] == "interrupted by SIGTERM"),
        "{run}"
    );
}
