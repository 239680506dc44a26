//! Sends a fixed number of in-process requests through one stack, for instruction counts:
//!
//! ```text
//! bench-driver <stack> <hello|users> <requests>
//! valgrind --tool=callgrind target/release/bench-driver metrics hello 10000
//! valgrind --tool=callgrind target/release/bench-driver metrics hello 30000
//! ```
//!
//! Stacks: ours (`bare`, `noop_layer`, `metrics`, `traces_sampled`, `traces_unsampled`) and the
//! peers (`axum_prometheus`, `otel_tower_metrics`, `otel_tower_unsampled`).
//! Per-request instruction counts: run with two request counts and divide the difference of
//! callgrind's totals by the difference of the counts (setup and shutdown cancel out). For a
//! profile of the request loop alone: `--toggle-collect='*measured_loop*'`.
//!
//! ```text
//! bench-driver compare <hello|users> <rounds> <requests>   # interleaved timing of every stack
//! bench-driver render <series> <renders>                   # /metrics rendering
//! bench-driver export <batches>                            # span export CPU, 1 024 spans a batch
//! bench-driver export-direct <batches>                     # the same, the crate's own exporter
//! ```

use std::time::Instant;

use axum::Router;
use soma_benches::{drain, Stack, HELLO, USER};
use soma_system_tests::otlp::FakeOtlp;

#[inline(never)]
fn measured_loop(runtime: &tokio::runtime::Runtime, router: &Router, uri: &'static str, n: u64) {
    runtime.block_on(async {
        for _ in 0..n {
            std::hint::black_box(drain(router, uri).await);
        }
    });
}

/// `bench-driver render <series> <renders>`: renders `/metrics` with that many counter series.
#[inline(never)]
fn render(series: usize, renders: u64) -> Result<(), Box<dyn std::error::Error>> {
    use opentelemetry::metrics::MeterProvider as _;
    let parts = soma_observability::Observability::builder("bench")
        .with_config(soma_benches::metrics_config()?)
        .build()?;
    let meter = parts.meter_provider().meter("bench");
    for first in (0..series).step_by(1000) {
        let counter = meter
            .u64_counter(format!("bench.series.{}", first / 1000))
            .with_description("A benchmark counter.")
            .build();
        for i in first..series.min(first + 1000) {
            counter.add(1, &[opentelemetry::KeyValue::new("id", i.to_string())]);
        }
    }
    let start = Instant::now();
    for _ in 0..renders {
        std::hint::black_box(parts.render_metrics()?);
    }
    #[allow(clippy::cast_precision_loss)]
    let per_render = start.elapsed().as_secs_f64() * 1e6 / renders as f64;
    println!("render {series} series: {per_render:.1} µs/render");
    Ok(())
}

/// `bench-driver export <batches>`: the gRPC exporter's CPU work (copy of the batch, conversion
/// to OTLP, protobuf encoding, drops) for `batches` batches of 1 024 typical server spans; prints
/// spans/s by the wall clock and per core of this thread's CPU time. Instructions per span: callgrind's inclusive count of
/// `export_loop` (or of `clone_batch`, `convert`, `encode`) divided by `batches × 1 024`.
#[inline(never)]
fn export(batches: u64) {
    use soma_benches::export::{batch, resource, BATCH};
    let spans = batch(BATCH);
    let resource = resource();
    let start = Instant::now();
    let cpu_start = thread_cpu_ns();
    let bytes = export_loop(&spans, &resource, batches);
    let cpu = thread_cpu_ns()
        .zip(cpu_start)
        .map(|(end, start)| end - start);
    let elapsed = start.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let spans = batches as f64 * BATCH as f64;
    println!(
        "export: {batches} batches of {BATCH} spans, {} bytes per batch, {:.0} spans/s wall clock",
        bytes / usize::try_from(batches.max(1)).unwrap_or(1),
        spans / elapsed
    );
    // CPU time of this thread holds while other processes share the cores.
    if let Some(cpu) = cpu {
        #[allow(clippy::cast_precision_loss)]
        let cpu = cpu as f64;
        println!(
            "export: {:.0} ns of CPU per span, {:.0} spans/s per core of CPU",
            cpu / spans,
            spans / cpu * 1e9
        );
    }
}

/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`, Linux).
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[inline(never)]
fn export_loop(
    spans: &[opentelemetry_sdk::trace::SpanData],
    resource: &opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema,
    batches: u64,
) -> usize {
    use soma_benches::export::{clone_batch, convert_and_encode};
    let mut bytes = 0;
    for _ in 0..batches {
        bytes += std::hint::black_box(convert_and_encode(clone_batch(spans), resource));
    }
    bytes
}

/// `bench-driver export-direct <batches>`: the crate's span exporter's CPU work before sending
/// (`soma_benches::export::direct_export`: encode, copy the body out, drop the batch) for
/// `batches` batches of 1 024 typical server spans. Each batch is a fresh copy, made outside
/// `direct_export` (the SDK hands the exporter its batch): instructions per span are
/// callgrind's counts with `--toggle-collect='soma_benches::export::direct_export'`, for two
/// batch counts, their difference divided by the spans. Prints spans/s per core of this
/// thread's CPU time spent in `direct_export`.
#[inline(never)]
fn export_direct(batches: u64) {
    use soma_benches::export::{batch, direct_export, encoder, BATCH};
    let spans = batch(BATCH);
    let mut encoder = encoder();
    let mut cpu = 0;
    let mut bytes = 0;
    for _ in 0..batches {
        let copy = spans.clone();
        let before = thread_cpu_ns();
        bytes += std::hint::black_box(direct_export(&mut encoder, copy));
        if let Some((after, before)) = thread_cpu_ns().zip(before) {
            cpu += after - before;
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let spans = batches as f64 * BATCH as f64;
    println!(
        "export-direct: {batches} batches of {BATCH} spans, {} bytes per batch",
        bytes / usize::try_from(batches.max(1)).unwrap_or(1)
    );
    if cpu > 0 {
        #[allow(clippy::cast_precision_loss)]
        let cpu = cpu as f64;
        println!(
            "export-direct: {:.0} ns of CPU per span, {:.0} spans/s per core of CPU",
            cpu / spans,
            spans / cpu * 1e9
        );
    }
}

/// `bench-driver compare <hello|users> <rounds> <requests>`: every stack in turn, `rounds`
/// times, so that machine drift hits them alike; prints each stack's median ns/request and the
/// median over rounds of its overhead over bare in the same round.
fn compare(uri: &'static str, rounds: usize, n: u64) -> Result<(), Box<dyn std::error::Error>> {
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let sink = background.block_on(FakeOtlp::start_counting("127.0.0.1:0".parse()?))?;
    let mut stacks = Vec::new();
    {
        let _entered = background.enter();
        for stack in Stack::ALL.into_iter().chain(Stack::PEERS) {
            let (router, parts) = stack.build(&sink.grpc_endpoint())?;
            stacks.push((stack, router, parts));
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let mut times = vec![Vec::new(); stacks.len()];
    for _ in 0..=rounds {
        for (i, (_, router, _)) in stacks.iter().enumerate() {
            let start = Instant::now();
            measured_loop(&runtime, router, uri, n);
            #[allow(clippy::cast_precision_loss)]
            times[i].push(start.elapsed().as_nanos() as f64 / n as f64);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // The first round warms up (routes interned, series bound, caches filled).
    let bare: Vec<f64> = times[0][1..].to_vec();
    println!("| stack | median ns/request | median overhead over bare (per round) |");
    println!("|---|---|---|");
    for ((stack, _, _), t) in stacks.iter().zip(&times) {
        let t = &t[1..];
        let overhead: Vec<f64> = t.iter().zip(&bare).map(|(a, b)| a - b).collect();
        println!(
            "| {} | {:.0} | {:+.0} |",
            stack.name(),
            median(t.to_vec()),
            median(overhead)
        );
    }
    drop(stacks);
    drop(background);
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, a, b] = args.as_slice() {
        if mode == "render" {
            return render(a.parse()?, b.parse()?);
        }
    }
    if let [_, mode, batches] = args.as_slice() {
        if mode == "export" {
            export(batches.parse()?);
            return Ok(());
        }
        if mode == "export-direct" {
            export_direct(batches.parse()?);
            return Ok(());
        }
    }
    if let [_, mode, route, rounds, n] = args.as_slice() {
        if mode == "compare" {
            let uri = if route == "users" { USER } else { HELLO };
            return compare(uri, rounds.parse()?, n.parse()?);
        }
    }
    let usage = "usage: bench-driver <bare|noop_layer|metrics|traces_sampled|traces_unsampled|axum_prometheus|otel_tower_metrics|otel_tower_unsampled> <hello|users> <requests>";
    let [_, stack, route, n] = args.as_slice() else {
        return Err(usage.into());
    };
    let stack = Stack::from_name(stack).ok_or(usage)?;
    let uri = match route.as_str() {
        "hello" => HELLO,
        "users" => USER,
        _ => return Err(usage.into()),
    };
    let n: u64 = n.parse()?;
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let sink = background.block_on(FakeOtlp::start_counting("127.0.0.1:0".parse()?))?;
    let (router, parts) = {
        let _entered = background.enter();
        stack.build(&sink.grpc_endpoint())?
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    // Warm up: first requests intern the route and create the series.
    runtime.block_on(async {
        for _ in 0..100 {
            drain(&router, uri).await;
        }
    });
    let start = Instant::now();
    measured_loop(&runtime, &router, uri, n);
    let elapsed = start.elapsed();
    #[allow(clippy::cast_precision_loss)]
    let per_request = elapsed.as_nanos() as f64 / n as f64;
    println!(
        "{} {route}: {n} requests, {per_request:.0} ns/request",
        stack.name()
    );
    drop(parts);
    drop(background);
    Ok(())
}
