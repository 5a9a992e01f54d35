//! The real binary on the S3 test server (`RPS_TEST_S3_ENDPOINT`, started by
//! `.ci/services start`; the test is ignored unless scripts/test runs it).

use rps_core::storage::S3Options;
use rps_core::{Store, parquet_io};
use rps_testkit::service::create_bucket;

use crate::support::{bars_at, put_raw, run_bin, stderr};

const KEY_ID: &str = "rps-test";
const SECRET: &str = "rps-test-secret";

#[tokio::test]
#[ignore = "needs the S3 test server; scripts/test starts it"]
async fn features_written_to_s3_have_the_bytes_of_a_local_run() {
    let endpoint = rps_testkit::service::s3_endpoint();
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ] {
        if std::env::var_os(k).is_none() {
            // SAFETY: std's environment functions hold a process-wide lock, and no code in
            // this test binary reads the environment through libc directly.
            #[allow(unsafe_code)]
            unsafe {
                std::env::set_var(k, v)
            };
        }
    }
    // More than two row groups, and a gap.
    let bars = bars_at("ETH", (0..9_000).chain(9_010..18_000));

    let dir = tempfile::tempdir().unwrap();
    put_raw(dir.path(), "ETH", &bars).await;
    let local = run_bin(&["--store", dir.path().to_str().unwrap()]);
    assert!(local.status.success(), "{}", stderr(&local));
    let want = std::fs::read(dir.path().join("features/ETH.parquet")).unwrap();

    let bucket = create_bucket(&endpoint, "transform");
    let location = format!("s3://{bucket}/rps");
    let store = Store::open_with(
        &location,
        &S3Options {
            endpoint: Some(endpoint.clone()),
        },
    )
    .unwrap();
    parquet_io::write_bars(&store, "ETH", &bars).await.unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rps-transform"))
        .args(["--store", &location, "--jobs", "2"])
        .env_remove("RPS_STORE")
        .env_remove("RPS_COINS")
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let got = store.get("features/ETH.parquet").await.unwrap().unwrap();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "S3 and local feature files differ");
}

#[tokio::test]
#[ignore = "needs the S3 test server; scripts/test starts it"]
async fn reports_go_to_object_urls_and_the_validation_report_is_read_from_one() {
    let endpoint = rps_testkit::service::s3_endpoint();
    let bucket = create_bucket(&endpoint, "reports");
    let location = format!("s3://{bucket}/rps");
    let store = Store::open_with(
        &location,
        &S3Options {
            endpoint: Some(endpoint.clone()),
        },
    )
    .unwrap();
    let bars = bars_at("ETH", 0..400);
    parquet_io::write_bars(&store, "ETH", &bars).await.unwrap();
    // The validation report another host wrote: rps-validate's own type, as JSON.
    let checks = rps_validate::Settings {
        max_null_ratio: 0.02,
        ..Default::default()
    };
    let coin = rps_validate::validate_bars(
        "ETH",
        "raw/ETH.parquet",
        &bars,
        rps_validate::checks::schema_check(
            &rps_core::schema::raw_schema(),
            &rps_core::schema::raw_schema(),
        ),
        &checks,
    );
    let report = rps_validate::Report::new(&location, checks, vec![coin]);
    store
        .put(
            "reports/validation/ETH.json",
            serde_json::to_vec(&report).unwrap().into(),
        )
        .await
        .unwrap();

    let run = |validation: &str| {
        // A fresh working directory that must stay empty: every output is an object.
        let cwd = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rps-transform"))
            .args(["--store", &location, "--coins", "ETH"])
            .args([
                "--summary",
                &format!("{location}/reports/transform/ETH.json"),
            ])
            .args(["--profile", &format!("{location}/reports/profile/ETH.html")])
            .args(["--validation-report", &format!("{location}/{validation}")])
            .env_remove("RPS_STORE")
            .env_remove("RPS_COINS")
            .envs(rps_testkit::service::s3_env(&endpoint))
            .current_dir(cwd.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            std::fs::read_dir(cwd.path()).unwrap().count(),
            0,
            "wrote local files"
        );
    };
    // The profile as text: minijinja's HTML escaping writes `/` as `&#x2f;`.
    let text = |key: &'static str| {
        let store = store.clone();
        async move {
            let b = store
                .get(key)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{key} not written"));
            String::from_utf8(b.to_vec())
                .unwrap()
                .replace("&#x2f;", "/")
        }
    };

    run("reports/validation/ETH.json");
    let summary: rps_transform::Summary =
        serde_json::from_str(&text("reports/transform/ETH.json").await).unwrap();
    assert_eq!(summary.coins["ETH"].rows_in, 400);
    assert!(store.exists("features/ETH.parquet").await.unwrap());
    let html = text("reports/profile/ETH.html").await;
    assert!(
        html.contains(&format!("From {location}/reports/validation/ETH.json: ")),
        "no report"
    );
    assert!(html.contains("coins / ETH / checks"));
    assert!(html.contains("<td>settings.max_null_ratio</td><td>0.02</td>"));

    // a missing report object is noted in the profile, as a missing file is
    run("reports/validation/none.json");
    let html = text("reports/profile/ETH.html").await;
    assert!(html.contains(&format!(
        "Validation report {location}/reports/validation/none.json: cannot read it: no such object"
    )));
}
