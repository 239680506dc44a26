//! In-process cost of one request (`Router` + `oneshot`, body drained, no network) for each
//! stack, on a text route and a JSON route with a path parameter.
//!
//! Run: `cargo bench -p soma-benches --bench requests -- --measurement-time 3 --warm-up-time 1`
//! then `cargo run -p soma-benches --bin bench-report` for the table.

use std::time::Duration;

use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use soma_benches::{drain, sample, Stack, HELLO, USER};
use soma_observability::ObservabilityParts;
use soma_system_tests::otlp::FakeOtlp;

fn requests(c: &mut Criterion) {
    // Exporters, the receiver and axum-prometheus's upkeep task live on a background runtime;
    // the measured loop runs on a current-thread runtime of its own.
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sink = background
        .block_on(FakeOtlp::start_counting("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let mut stacks: Vec<(&str, Router, Option<ObservabilityParts>)> = Vec::new();
    {
        let _entered = background.enter();
        // The peers: axum-prometheus (one global recorder per process) and
        // opentelemetry-instrumentation-tower (global SDK providers, set once).
        for stack in Stack::ALL.into_iter().chain(Stack::PEERS) {
            let (router, parts) = stack.build(&sink.grpc_endpoint()).unwrap();
            stacks.push((stack.name(), router, parts));
        }
    }
    // The sampled stack last: its export backlog then overlaps only the next warm-up.
    let sampled = stacks
        .iter()
        .position(|(name, _, _)| *name == Stack::TracesSampled.name())
        .unwrap();
    let last = stacks.remove(sampled);
    stacks.push(last);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (group, uri) in [("hello", HELLO), ("users", USER)] {
        let mut group = c.benchmark_group(group);
        for (name, router, _) in &stacks {
            group.bench_function(*name, |b| {
                b.to_async(&runtime).iter(|| drain(router, uri));
            });
        }
        group.finish();
    }

    // What the sampled stack's exporter did with the spans the loop produced.
    std::thread::sleep(Duration::from_secs(2));
    for (name, _, parts) in &stacks {
        if *name != Stack::TracesSampled.name() {
            continue;
        }
        let metrics = parts.as_ref().unwrap().render_metrics().unwrap();
        let exported = sample(&metrics, "otel_sdk_exporter_span_exported_total").unwrap_or(0.0);
        let dropped = sample(&metrics, "otel_sdk_span_dropped_total").unwrap_or(0.0);
        eprintln!(
            "traces_sampled: {} spans received by the OTLP receiver, {exported} exported, \
             {dropped} dropped (queue full: the loop outruns one exporter core)",
            sink.span_count()
        );
    }
    drop(stacks);
    drop(background);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = requests
}
criterion_main!(benches);
