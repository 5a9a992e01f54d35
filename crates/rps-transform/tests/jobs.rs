//! Concurrency: the outputs do not depend on how many worker threads ran.

use rps_core::Store;

use crate::support::{bars_at, config, put_raw};

#[tokio::test]
async fn one_job_or_three_give_the_same_files_and_summary() {
    let mut runs = Vec::new();
    for jobs in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        // Coins of different lengths (one too short), so workers finish out of order.
        for (i, coin) in ["AAA", "BBB", "CCC", "DDD", "EEE"].into_iter().enumerate() {
            let n = [400, 2_000, 100, 900, 1_300][i];
            put_raw(dir.path(), coin, &bars_at(coin, 0..n)).await;
        }
        let mut cfg = config(dir.path());
        cfg.jobs = jobs;
        let summary = rps_transform::run(cfg).await.unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let mut files = Vec::new();
        for coin in summary.coins.keys() {
            let key = format!("features/{coin}.parquet");
            files.push(store.get(&key).await.unwrap().expect("feature file"));
        }
        runs.push((summary, files));
    }
    let (one, three) = (&runs[0], &runs[1]);
    assert_eq!(one.0.coins.len(), 5);
    assert_eq!(one.0.rows_in, 400 + 2_000 + 100 + 900 + 1_300);
    assert_eq!(
        one.0.warnings.len(),
        1,
        "CCC is too short: {:?}",
        one.0.warnings
    );
    assert_eq!(one.0, three.0);
    assert_eq!(one.1, three.1);
}
