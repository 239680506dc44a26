//! The span exporter's CPU work per batch of 1 024 typical server spans, without the network
//! (`soma_benches::export`). Before, `opentelemetry-otlp` 0.33: the gRPC exporter's per-attempt
//! copy, the `SpanData` → OTLP conversion, the protobuf encoding, and the two exporters' whole
//! paths. After, the crate's exporter: `direct_encode` (encode and copy out) and `direct_path`
//! (the same and the batch's drop). criterion reports the throughput in spans/s (elements/s)
//! on one core.
//!
//! Run: `cargo bench -p soma-benches --bench export -- --measurement-time 3 --warm-up-time 1`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use soma_benches::export::{
    batch, clone_batch, convert, convert_and_encode, direct_encode, direct_export, encode, encoder,
    resource, BATCH,
};

fn export(c: &mut Criterion) {
    let spans = batch(BATCH);
    let resource = resource();
    let request = convert(spans.clone(), &resource);
    eprintln!(
        "export: {BATCH} spans, {} bytes of protobuf ({} per span)",
        encode(&request).len(),
        encode(&request).len() / BATCH
    );
    let mut group = c.benchmark_group("export");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("clone_batch", |b| {
        b.iter_with_large_drop(|| clone_batch(&spans));
    });
    group.bench_function("convert", |b| {
        b.iter_batched(
            || spans.clone(),
            |batch| convert(batch, &resource),
            BatchSize::LargeInput,
        );
    });
    group.bench_function("encode", |b| b.iter(|| encode(&request)));
    // The HTTP/protobuf exporter: convert, encode, drop the messages.
    group.bench_function("http_path", |b| {
        b.iter_batched(
            || spans.clone(),
            |batch| convert_and_encode(batch, &resource),
            BatchSize::LargeInput,
        );
    });
    // The gRPC exporter: the same after its copy of the batch.
    group.bench_function("grpc_path", |b| {
        b.iter(|| convert_and_encode(clone_batch(&spans), &resource));
    });
    // The crate's exporter: encode into its buffer and copy the body out ...
    let mut direct = encoder();
    assert_eq!(direct_encode(&mut direct, &spans), encode(&request).len());
    group.bench_function("direct_encode", |b| {
        b.iter(|| direct_encode(&mut direct, &spans));
    });
    // ... and drop the batch it was handed (no copy of it: encoded once for every attempt).
    group.bench_function("direct_path", |b| {
        b.iter_batched(
            || spans.clone(),
            |batch| direct_export(&mut direct, batch),
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = export
}
criterion_main!(benches);
