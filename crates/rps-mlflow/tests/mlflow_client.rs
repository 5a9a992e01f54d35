//! The REST client against the real server: refusals that protect data (NaN, over-long
//! digest), batching past the server's limits, error mapping, and a server that is down.

use rps_mlflow::client::MAX_BATCH_METRICS;
use rps_mlflow::types::{DatasetInput, DatasetRecord, Param, Tag};
use rps_mlflow::{Error, Metric, MlflowClient, MlflowRegistry, Registry, now_ms};

use crate::common::{client, closed_port, short_retry, unique};

async fn new_run(c: &MlflowClient, prefix: &str) -> String {
    let exp = c.get_or_create_experiment(&unique(prefix)).await.unwrap();
    c.create_run(&exp, "t", &[], now_ms())
        .await
        .unwrap()
        .info
        .run_id
}

#[tokio::test]
#[ignore = "needs the MLflow test server; scripts/test starts it"]
async fn a_nan_or_infinite_metric_is_refused_and_nothing_of_the_batch_is_sent() {
    let uri = rps_testkit::service::mlflow_uri();
    let c = client(&uri);
    let run_id = new_run(&c, "rps-test-nan").await;
    let t = now_ms();

    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let batch = [
            Metric::new("good", 1.0, 0, t),
            Metric::new("loss", bad, 3, t),
        ];
        let e = c
            .log_batch(&run_id, &batch, &[Param::new("p", "1")], &[])
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::NonFiniteMetric { key, step: 3, .. } if key == "loss"),
            "{e}"
        );
    }

    assert!(
        c.get_metric_history(&run_id, "good")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        c.get_metric_history(&run_id, "loss")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(c.get_run(&run_id).await.unwrap().data.params.is_empty());
}

#[tokio::test]
#[ignore = "needs the MLflow test server; scripts/test starts it"]
async fn a_batch_beyond_the_server_limits_is_split_and_fully_stored() {
    let uri = rps_testkit::service::mlflow_uri();
    let c = client(&uri);
    let run_id = new_run(&c, "rps-test-chunk").await;
    let t = now_ms();
    let n = 2 * MAX_BATCH_METRICS + 501;
    let metrics: Vec<Metric> = (0..n)
        .map(|i| Metric::new("loss", 1.0 / (i as f64 + 1.0), i as i64, t + i as i64))
        .collect();
    let params: Vec<Param> = (0..150)
        .map(|i| Param::new(format!("p{i}"), i.to_string()))
        .collect();
    let tags: Vec<Tag> = (0..120).map(|i| Tag::new(format!("t{i}"), "x")).collect();

    let calls = c
        .log_batch(&run_id, &metrics, &params, &tags)
        .await
        .unwrap();

    assert!(calls >= 3, "{calls} calls");
    let hist = c.get_metric_history(&run_id, "loss").await.unwrap();
    assert_eq!(hist.len(), n, "every point stored (and history paginated)");
    let mut steps: Vec<i64> = hist.iter().map(|m| m.step).collect();
    steps.sort_unstable();
    assert_eq!(steps, (0..n as i64).collect::<Vec<_>>());
    let data = c.get_run(&run_id).await.unwrap().data;
    assert_eq!(data.params.len(), 150);
    assert_eq!(data.param("p149"), Some("149"));
    assert_eq!(
        data.tags.iter().filter(|t| t.key.starts_with('t')).count(),
        120
    );
    // A retried identical batch is idempotent: still one point per step.
    c.log_batch(&run_id, &metrics[..10], &params[..5], &[])
        .await
        .unwrap();
    assert_eq!(
        c.get_metric_history(&run_id, "loss").await.unwrap().len(),
        n
    );
}

#[tokio::test]
#[ignore = "needs the MLflow test server; scripts/test starts it"]
async fn server_errors_keep_their_code_and_input_is_checked_before_sending() {
    let uri = rps_testkit::service::mlflow_uri();
    let c = client(&uri);

    let e = c
        .get_run("0123456789abcdef0123456789abcdef")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Api { status: 404, error_code, .. } if error_code == "RESOURCE_DOES_NOT_EXIST"),
        "{e}"
    );
    assert_eq!(e.exit_code(), rps_core::ExitCode::BadInput);

    let run_id = new_run(&c, "rps-test-errors").await;
    c.log_batch(&run_id, &[], &[Param::new("lr", "0.1")], &[])
        .await
        .unwrap();
    let e = c
        .log_batch(&run_id, &[], &[Param::new("lr", "0.2")], &[])
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), Some("INVALID_PARAMETER_VALUE"), "{e}");

    let ds = DatasetInput {
        tags: vec![],
        dataset: DatasetRecord {
            name: "d".into(),
            digest: "x".repeat(37),
            source_type: "local".into(),
            source: "{}".into(),
            ..Default::default()
        },
    };
    let e = c.log_inputs(&run_id, &[ds]).await.unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }), "{e}");
    assert!(
        c.get_run(&run_id)
            .await
            .unwrap()
            .inputs
            .dataset_inputs
            .is_empty()
    );

    // get-or-create is stable and the alias endpoints map "missing" to None.
    let name = unique("rps-test-exp");
    let a = c.get_or_create_experiment(&name).await.unwrap();
    assert_eq!(c.get_or_create_experiment(&name).await.unwrap(), a);
    let model = unique("rps-test-model");
    c.create_registered_model(&model).await.unwrap();
    c.create_registered_model(&model).await.unwrap();
    assert_eq!(c.get_alias(&model, "champion").await.unwrap(), None);
    c.delete_alias(&model, "champion").await.unwrap();
}

#[tokio::test]
async fn a_server_that_is_down_gives_retries_exhausted_naming_the_url() {
    let uri = format!("http://127.0.0.1:{}", closed_port());
    let c = MlflowClient::with_retry(&uri, short_retry(3)).unwrap();

    let e = c.get_run("abc").await.unwrap_err();

    match &e {
        Error::RetriesExhausted { url, attempts, .. } => {
            assert!(url.starts_with(&uri) && url.contains("runs/get"), "{url}");
            assert_eq!(*attempts, 3);
        }
        other => panic!("expected RetriesExhausted, got {other}"),
    }
    assert!(e.is_external());
    assert_eq!(e.exit_code(), rps_core::ExitCode::External);

    // Through the registry too, and nothing is left to clean up: no run could start.
    let reg = Registry::Mlflow(MlflowRegistry::new(c));
    let e = reg.start_run("exp", "run", &[]).await.unwrap_err();
    assert_eq!(e.exit_code(), rps_core::ExitCode::External, "{e}");
}
