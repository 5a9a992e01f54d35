//! Against a real MLflow server (`.ci/services start`): everything verified through MLflow's
//! own REST API.

use serde_json::Value;

use crate::support::{feature_store, metrics, ok, short_args, train, with};

struct Api {
    base: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Api {
    fn new(base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn get(&self, path_and_query: &str) -> Value {
        let url = format!("{}/api/2.0/mlflow/{path_and_query}", self.base);
        self.rt.block_on(async {
            let r = self.http.get(&url).send().await.unwrap();
            let status = r.status();
            let text = r.text().await.unwrap();
            assert!(status.is_success(), "GET {url}: {status} {text}");
            serde_json::from_str(&text).unwrap()
        })
    }

    fn artifact_paths(&self, run_id: &str, dir: &str) -> Vec<String> {
        let v = self.get(&format!("artifacts/list?run_id={run_id}&path={dir}"));
        v["files"]
            .as_array()
            .map(|f| {
                f.iter()
                    .map(|x| x["path"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn alias(&self, model: &str, alias: &str) -> Value {
        self.get(&format!(
            "registered-models/alias?name={model}&alias={alias}"
        ))["model_version"]
            .clone()
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

#[test]
#[ignore = "needs the MLflow test server; scripts/test starts it"]
fn a_run_is_tracked_registered_and_promoted_in_mlflow_and_a_worse_run_stays_challenger() {
    let uri = rps_testkit::service::mlflow_uri();
    let api = Api::new(&uri);
    let (model, experiment) = (unique("rps-test-model"), unique("rps-test-exp"));
    let out = tempfile::tempdir().unwrap();
    let mut args = short_args(feature_store(), out.path());
    args.extend(["--model-name", &model, "--experiment", &experiment].map(String::from));
    let profile = out.path().join("profile.html");
    std::fs::write(&profile, "<html><body>profile</body></html>").unwrap();
    args.extend([
        "--profile".to_string(),
        profile.to_str().unwrap().to_string(),
    ]);

    // First setup: this small model becomes champion whatever persistence scores.
    ok(&train(
        &with(args.clone(), &["--force-promote"]),
        Some(&uri),
        &[],
    ));
    let m = metrics(out.path());
    let run_id = m["run_id"].as_str().unwrap().to_string();

    // The run: finished, with params, tags and the dataset input.
    let run = api.get(&format!("runs/get?run_id={run_id}"))["run"].clone();
    assert_eq!(run["info"]["status"], "FINISHED");
    let params: Vec<(&str, &str)> = run["data"]["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["key"].as_str().unwrap(), p["value"].as_str().unwrap()))
        .collect();
    for expected in [
        ("hidden", "16"),
        ("lookback", "24"),
        ("epochs", "4"),
        ("seed", "7"),
    ] {
        assert!(
            params.contains(&expected),
            "param {expected:?} in {params:?}"
        );
    }
    let tag = |k: &str| {
        run["data"]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["key"] == k)
            .map(|t| t["value"].as_str().unwrap().to_string())
    };
    assert_eq!(
        tag("feature_spec_hash").as_deref(),
        Some(rps_features::spec().hash.as_str())
    );
    assert!(tag("mlflow.source.git.commit").is_some());
    assert_eq!(tag("gate_decision").as_deref(), Some("promoted"));
    let ds = &run["inputs"]["dataset_inputs"][0]["dataset"];
    let digest = ds["digest"].as_str().unwrap();
    assert!(!digest.is_empty() && digest.len() <= 36, "digest {digest}");
    assert_eq!(
        m["test"]["model"]["rmse"].as_f64(),
        run["data"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["key"] == "test_rmse")
            .and_then(|x| x["value"].as_f64())
    );

    // Per-epoch history.
    for key in ["train_loss", "val_loss"] {
        let h = api.get(&format!(
            "metrics/get-history?run_id={run_id}&metric_key={key}"
        ));
        let steps: Vec<i64> = h["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["step"].as_i64().unwrap())
            .collect();
        assert_eq!(steps.len(), 4, "{key} history {h}");
        for s in 1..=4 {
            assert!(steps.contains(&s), "{key} step {s}");
        }
    }

    // Artifacts: the package, plots, report and the data profile.
    let model_files = api.artifact_paths(&run_id, "model");
    for f in [
        "model/model.safetensors",
        "model/metadata.json",
        "model/MLmodel",
    ] {
        assert!(model_files.iter().any(|p| p == f), "{f} in {model_files:?}");
    }
    let plots = api.artifact_paths(&run_id, "plots");
    assert!(
        plots.iter().any(|p| p == "plots/learning_curve.svg")
            && plots.iter().any(|p| p == "plots/predictions.svg"),
        "{plots:?}"
    );
    let report = api.artifact_paths(&run_id, "report");
    assert!(
        report.iter().any(|p| p == "report/evaluation.json")
            && report.iter().any(|p| p == "report/evaluation.html"),
        "{report:?}"
    );
    assert_eq!(
        api.artifact_paths(&run_id, "data"),
        vec!["data/profile.html".to_string()]
    );

    // The registry: version 1 from this run, champion and challenger.
    let champion = api.alias(&model, "champion");
    assert_eq!(champion["version"], "1");
    assert_eq!(champion["run_id"], run_id.as_str());
    assert!(
        champion["source"].as_str().unwrap().ends_with("/model"),
        "{champion}"
    );
    assert_eq!(api.alias(&model, "challenger")["version"], "1");

    // A deliberately worse run: challenger only, champion unchanged.
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
    let worse = with(worse, &["--no-persistence-champion"]);
    let stdout = ok(&train(&worse, Some(&uri), &[]));
    assert!(
        stdout.contains("challenger, champion unchanged"),
        "{stdout}"
    );
    let m2 = metrics(out.path());
    let run2 = m2["run_id"].as_str().unwrap();
    assert_eq!(api.alias(&model, "champion")["version"], "1");
    let challenger = api.alias(&model, "challenger");
    assert_eq!(challenger["version"], "2");
    assert_eq!(challenger["run_id"], run2);
    let run2v = api.get(&format!("runs/get?run_id={run2}"))["run"].clone();
    assert_eq!(run2v["info"]["status"], "FINISHED");
    let metric = |k: &str| {
        run2v["data"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["key"] == k)
            .and_then(|x| x["value"].as_f64())
    };
    let (new, champ) = (
        metric("gate_new_rmse").unwrap(),
        metric("gate_champion_rmse").unwrap(),
    );
    assert!(
        new >= champ,
        "logged gate numbers: new {new}, champion {champ}"
    );
}
