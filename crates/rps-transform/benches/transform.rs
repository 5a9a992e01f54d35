//! Criterion bench: feature computation and feature-file encoding on the shared real file
//! (33,259 hourly bars). `cargo bench -p rps-transform`; bench/transform.sh measures whole runs.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rps_features as features;

fn bench(c: &mut Criterion) {
    let bars = rps_testkit::fixture::bars().to_vec();
    let mut g = c.benchmark_group("transform_33k");
    g.throughput(Throughput::Elements(bars.len() as u64));
    g.bench_function("compute", |b| {
        b.iter(|| features::compute("BTC", std::hint::black_box(&bars)))
    });
    g.bench_function("compute_and_encode", |b| {
        b.iter(|| {
            let f = features::compute("BTC", std::hint::black_box(&bars));
            features::encode_frame(&f, "features/BTC.parquet").ok()
        })
    });
    g.finish();
    // What rps-serve does per request: the features of the newest ~200 bars.
    let recent = &bars[bars.len() - 200..];
    c.bench_function("compute_200_bars", |b| {
        b.iter(|| features::compute("BTC", std::hint::black_box(recent)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
