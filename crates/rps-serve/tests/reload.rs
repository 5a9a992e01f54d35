//! Hot reload: a new champion is swapped in atomically while requests keep flowing; a corrupt
//! or incompatible package is refused and the old model keeps serving.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rps_mlflow::{LocalRegistry, Registry, RunStatus};
use rps_serve::ModelSpec;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::*;

const ALIAS: &str = "champion";

fn local_registry(dir: &Path) -> Registry {
    Registry::Local(LocalRegistry::open(dir).unwrap())
}

/// Registers a package directory as the next version of `name` and points the alias at it;
/// returns the version.
pub async fn promote_as(reg: &Registry, name: &str, pkg: &Path) -> String {
    let run = reg
        .start_run("rps-serve-tests", "fixture", &[])
        .await
        .unwrap();
    reg.log_artifact(&run, pkg, "model").await.unwrap();
    let mv = reg.register(&run, name, "model").await.unwrap();
    reg.end_run(&run, RunStatus::Finished).await.unwrap();
    reg.set_alias(name, ALIAS, &mv.version).await.unwrap();
    mv.version
}

async fn promote(reg: &Registry, pkg: &Path) -> String {
    promote_as(reg, MODEL_NAME, pkg).await
}

async fn served_version(app: &TestApp) -> String {
    let v: Value = app.get("/model").await.json().await.unwrap();
    v["version"].as_str().unwrap().to_string()
}

async fn failures(app: &TestApp) -> Option<f64> {
    sample(
        &app.metrics().await,
        r#"rps_model_reloads_total{result="failure"}"#,
    )
}

fn registry_opts(dir: &Path) -> Opts {
    Opts {
        model: Some(ModelSpec::Registry {
            registry: dir.to_path_buf(),
            name: MODEL_NAME.into(),
            alias: ALIAS.into(),
        }),
        ..Opts::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_champion_is_swapped_in_during_traffic_without_losing_a_request() {
    let reg_dir = TempDir::new().unwrap();
    let reg = local_registry(reg_dir.path());
    let v1 = promote(&reg, package()).await;
    let app = spawn_app_with(registry_opts(reg_dir.path())).await;
    assert_eq!(served_version(&app).await, v1);

    let stop = Arc::new(AtomicBool::new(false));
    let n = app.min_bars();
    let mut clients = Vec::new();
    for t in 0..6i64 {
        let (base, client, stop) = (app.base.clone(), reqwest::Client::new(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut seen: Vec<(u16, String)> = Vec::new();
            let mut k = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let w = window_ending(hour_in_training(t * 40 + k % 40), n);
                let r = client
                    .post(format!("{base}/predict"))
                    .json(&json!({"coin": COIN, "bars": bars_json(w)}))
                    .send()
                    .await
                    .expect("no request is dropped");
                let status = r.status().as_u16();
                let v: Value = r.json().await.unwrap();
                seen.push((
                    status,
                    v["model"]["version"].as_str().unwrap_or("").to_string(),
                ));
                k += 1;
            }
            seen
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let pkg2 = TempDir::new().unwrap();
    let v2 = promote(&reg, &copy_package(&pkg2.path().join("model"))).await;
    assert_ne!(v1, v2);
    let switched = eventually(30, || async { served_version(&app).await == v2 }).await;
    assert!(switched, "the server follows the alias to version {v2}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    let (mut saw1, mut saw2) = (false, false);
    for c in clients {
        let seen = c.await.unwrap();
        total += seen.len();
        let mut after_swap = false;
        for (status, version) in seen {
            assert_eq!(status, 200, "every request during the reload succeeds");
            if version == v2 {
                after_swap = true;
                saw2 = true;
            } else {
                assert_eq!(version, v1);
                assert!(
                    !after_swap,
                    "once swapped, a client never sees the old model again"
                );
                saw1 = true;
            }
        }
    }
    assert!(
        saw1 && saw2,
        "requests were served by both versions ({total} requests)"
    );
    let m = app.metrics().await;
    assert_eq!(
        sample(&m, r#"rps_model_reloads_total{result="success"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"rps_model_reloads_total{result="failure"}"#),
        Some(0.0)
    );
    assert!(
        m.contains(&format!(r#"version="{v2}""#)) && !m.contains(&format!(r#"version="{v1}""#))
    );
    let left: Vec<_> = std::fs::read_dir(&app.cache_dir).unwrap().collect();
    assert!(
        left.is_empty(),
        "downloaded packages are deleted once loaded: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_incompatible_packages_are_refused_and_the_old_model_keeps_serving() {
    let reg_dir = TempDir::new().unwrap();
    let reg = local_registry(reg_dir.path());
    let v1 = promote(&reg, package()).await;
    let app = spawn_app_with(registry_opts(reg_dir.path())).await;

    // Corrupt weights.
    let tmp = TempDir::new().unwrap();
    let corrupt = copy_package(&tmp.path().join("corrupt"));
    std::fs::write(
        corrupt.join("model.safetensors"),
        b"\x08\x00\x00\x00\x00\x00\x00\x00not json",
    )
    .unwrap();
    promote(&reg, &corrupt).await;
    assert!(eventually(30, || async { failures(&app).await == Some(1.0) }).await);
    assert_eq!(served_version(&app).await, v1);
    let (status, f) = app.predict_at(hour_in_training(10)).await;
    assert_eq!(status, 200);
    assert_eq!(f["model"]["version"], v1.as_str());

    // Trained on another feature spec.
    let other = copy_package(&tmp.path().join("other-spec"));
    edit_metadata(&other, |m| {
        m["feature_spec_hash"] = json!("00000000deadbeef")
    });
    promote(&reg, &other).await;
    assert!(eventually(30, || async { failures(&app).await == Some(2.0) }).await);
    assert_eq!(served_version(&app).await, v1);
    // A refused version is not retried on every poll.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(failures(&app).await, Some(2.0));

    // Weights whose bytes changed after training: still a valid safetensors file, but not
    // the one whose checksum the package records.
    let flipped = copy_package(&tmp.path().join("flipped"));
    let wp = flipped.join("model.safetensors");
    let mut bytes = std::fs::read(&wp).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n - 256..] {
        *b ^= 0x5a;
    }
    std::fs::write(&wp, &bytes).unwrap();
    promote(&reg, &flipped).await;
    assert!(eventually(30, || async { failures(&app).await == Some(3.0) }).await);
    assert_eq!(served_version(&app).await, v1);

    // A good package after that is served.
    let good = copy_package(&tmp.path().join("good"));
    let v4 = promote(&reg, &good).await;
    assert!(eventually(30, || async { served_version(&app).await == v4 }).await);
    let m = app.metrics().await;
    assert_eq!(
        sample(&m, r#"rps_model_reloads_total{result="success"}"#),
        Some(1.0)
    );
    let left: Vec<_> = std::fs::read_dir(&app.cache_dir).unwrap().collect();
    assert!(
        left.is_empty(),
        "refused downloads are deleted too: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_directory_is_reloaded_when_its_files_change() {
    let app = spawn_app().await;
    let dir = app.model_dir.clone().unwrap();
    edit_metadata(&dir, |m| m["version"] = json!("7"));
    assert!(eventually(30, || async { served_version(&app).await == "7" }).await);

    std::fs::write(dir.join("model.safetensors"), b"garbage").unwrap();
    let refused = eventually(30, || async {
        sample(
            &app.metrics().await,
            r#"rps_model_reloads_total{result="failure"}"#,
        ) == Some(1.0)
    })
    .await;
    assert!(refused);
    let (status, f) = app.predict_at(hour_in_training(20)).await;
    assert_eq!(status, 200);
    assert_eq!(f["model"]["version"], "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_disappears_is_counted_and_logged_while_the_model_keeps_serving() {
    let reg_dir = TempDir::new().unwrap();
    let root = reg_dir.path().join("registry");
    let reg = local_registry(&root);
    let v1 = promote(&reg, package()).await;
    let app = spawn_app_with(registry_opts(&root)).await;
    assert_eq!(failures(&app).await, Some(0.0));

    std::fs::remove_dir_all(&root).unwrap();
    assert!(
        eventually(30, || async { failures(&app).await.unwrap_or(0.0) >= 1.0 }).await,
        "a vanished registry is counted as a failed reload"
    );
    assert_eq!(served_version(&app).await, v1);
    assert_eq!(app.get("/ready").await.status(), 200);
    let (status, _) = app.predict_at(hour_in_training(20)).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_declaring_an_impossible_lookback_is_refused() {
    let reg_dir = TempDir::new().unwrap();
    let reg = local_registry(reg_dir.path());
    let v1 = promote(&reg, package()).await;
    let app = spawn_app_with(registry_opts(reg_dir.path())).await;
    let tmp = TempDir::new().unwrap();
    let huge = copy_package(&tmp.path().join("huge"));
    edit_metadata(&huge, |m| m["lookback"] = json!(1_000_000_000u64));
    promote(&reg, &huge).await;
    assert!(eventually(30, || async { failures(&app).await == Some(1.0) }).await);
    assert_eq!(served_version(&app).await, v1);
    let (status, f) = app.predict_at(hour_in_training(20)).await;
    assert_eq!(status, 200, "{f}");
}
