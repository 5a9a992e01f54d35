//! Throughput of the extract stage's hot paths: CSV import of the shared 33,259-row file,
//! resampling 1 M price observations into hourly bars, and the merge + Parquet encode of an
//! append. Run: `cargo bench --profile release -p rps-extract --bench extract` (the release
//! profile reuses the test build; the bench profile would rebuild every dependency).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rps_core::Source;
use rps_extract::append::{Stored, prepare};
use rps_extract::csv_import::{CsvOptions, import_file};
use rps_extract::resample::resample;
use rps_extract::synthetic;

const OBSERVATIONS: usize = 1_000_000;

fn benches(c: &mut Criterion) {
    let csv = rps_testkit::fixture::path();
    let opts = CsvOptions::default();
    let rows = import_file(&csv, &opts, 0)
        .expect("shared CSV imports")
        .rows;

    let mut g = c.benchmark_group("extract");
    g.sample_size(20);

    g.throughput(Throughput::Elements(rows));
    g.bench_function("csv_import_shared_file", |b| {
        b.iter(|| black_box(import_file(&csv, &opts, 0).expect("imports")))
    });

    let hours = OBSERVATIONS.div_ceil(synthetic::TICKS_PER_HOUR) as i64;
    let start = synthetic::ORIGIN_MS;
    let end = start + hours * rps_core::time::HOUR_MS;
    let mut obs = synthetic::observations("BTC", 42, start, end).expect("in range");
    obs.truncate(OBSERVATIONS);
    g.throughput(Throughput::Elements(obs.len() as u64));
    g.bench_function("resample_1m_observations", |b| {
        b.iter_batched(
            || obs.clone(),
            |o| black_box(resample("BTC", o, Source::Livecoinwatch, 0)),
            BatchSize::LargeInput,
        )
    });

    let bars = import_file(&csv, &opts, 0)
        .expect("imports")
        .bars
        .remove("BTC")
        .expect("BTC rows");
    g.throughput(Throughput::Elements(bars.len() as u64));
    g.bench_function("append_merge_encode_33k_bars", |b| {
        b.iter_batched(
            || bars.clone(),
            |new| {
                black_box(
                    prepare("BTC", Stored::default(), new, Default::default()).expect("encodes"),
                )
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(extract, benches);
criterion_main!(extract);
