//! Time to render `/metrics`: with 100, 1 000 and 10 000 custom series, and for a realistic
//! service (the HTTP instruments after traffic on a few routes); `runtime/{on,off}` is the fixed
//! part built on a 4-worker tokio runtime, with and without the tokio runtime metrics; and a
//! whole scrape as Prometheus makes it (OpenMetrics, gzip) through the `/metrics` router at 100
//! and 10 000 series, with the bytes of each form printed.
//!
//! Run: `cargo bench -p soma-benches --bench render -- --measurement-time 3 --warm-up-time 1`

use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::KeyValue;
use soma_benches::metrics_config;
use soma_observability::{Observability, ObservabilityParts};
use tower::ServiceExt;

/// Attribute sets per instrument (the SDK keeps at most 2 000 per instrument).
const SETS_PER_INSTRUMENT: usize = 1_000;

fn parts() -> ObservabilityParts {
    Observability::builder("bench")
        .with_config(metrics_config().unwrap())
        .build()
        .unwrap()
}

/// `n` counter series, `SETS_PER_INSTRUMENT` per counter.
fn with_series(n: usize) -> ObservabilityParts {
    let parts = parts();
    let meter = parts.meter_provider().meter("bench");
    for first in (0..n).step_by(SETS_PER_INSTRUMENT) {
        let counter = meter
            .u64_counter(format!("bench.series.{}", first / SETS_PER_INSTRUMENT))
            .with_description("A benchmark counter.")
            .build();
        for i in first..n.min(first + SETS_PER_INSTRUMENT) {
            counter.add(1, &[KeyValue::new("id", i.to_string())]);
        }
    }
    parts
}

/// A service of the size of the reference services: six routes (two of them POST), traffic
/// with 2xx, 4xx and 5xx answers, so the four HTTP instruments each hold ~10 series.
fn service() -> ObservabilityParts {
    let parts = parts();
    let router: Router = parts
        .instrument(
            Router::new()
                .route("/v1/orders", get(|| async { "[]" }).post(|| async { "{}" }))
                .route("/v1/orders/{id}", get(|| async { "{}" }))
                .route("/v1/users/{id}", get(|| async { StatusCode::NOT_FOUND }))
                .route("/v1/login", post(|| async { StatusCode::UNAUTHORIZED }))
                .route(
                    "/v1/report",
                    get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
                ),
        )
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        for (method, uri) in [
            ("GET", "/v1/orders"),
            ("POST", "/v1/orders"),
            ("GET", "/v1/orders/7"),
            ("GET", "/v1/users/7"),
            ("POST", "/v1/login"),
            ("GET", "/v1/report"),
            ("GET", "/nowhere"),
        ] {
            for _ in 0..10 {
                let request = axum::http::Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(axum::body::Body::empty())
                    .unwrap();
                let response = router.clone().oneshot(request).await.unwrap();
                axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap();
            }
        }
    });
    parts
}

fn series_lines(parts: &ObservabilityParts) -> usize {
    let text = parts.render_metrics().unwrap();
    text.lines().filter(|l| !l.starts_with('#')).count()
}

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    let service = service();
    eprintln!(
        "render/service: {} sample lines in total",
        series_lines(&service)
    );
    group.bench_function("service", |b| b.iter(|| service.render_metrics().unwrap()));
    // The fixed part: `target_info` and the process metrics (reads /proc/self), no instrument.
    let empty = parts();
    group.bench_function("empty", |b| b.iter(|| empty.render_metrics().unwrap()));
    // What the tokio runtime metrics add to a scrape: the fixed part built on a 4-worker
    // runtime, with them on and off.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    for enabled in [true, false] {
        let parts = runtime.block_on(async {
            Observability::builder("bench")
                .with_config(metrics_config().unwrap())
                .with_runtime_metrics(enabled)
                .build()
                .unwrap()
        });
        let name = if enabled { "on" } else { "off" };
        group.bench_with_input(BenchmarkId::new("runtime", name), &parts, |b, parts| {
            b.iter(|| parts.render_metrics().unwrap());
        });
    }
    for n in [100, 1_000, 10_000] {
        let parts = with_series(n);
        eprintln!(
            "render/series/{n}: {} sample lines in total",
            series_lines(&parts)
        );
        group.bench_with_input(BenchmarkId::new("series", n), &parts, |b, parts| {
            b.iter(|| parts.render_metrics().unwrap());
        });
    }
    group.finish();
}

/// `GET /metrics` through the router with these headers; the body's bytes.
async fn scrape(router: &Router, accept: &str, encoding: &str) -> usize {
    let request = axum::http::Request::get("/metrics")
        .header("accept", accept)
        .header("accept-encoding", encoding)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .len()
}

/// Prometheus 2.42's `Accept` header.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn scrape_formats(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("scrape");
    for n in [100, 10_000] {
        let parts = with_series(n);
        let router: Router = parts.metrics_router();
        let forms = [
            ("text", "text/plain", "identity"),
            ("openmetrics", PROMETHEUS_ACCEPT, "identity"),
            ("openmetrics_gzip", PROMETHEUS_ACCEPT, "gzip"),
        ];
        for (form, accept, encoding) in forms {
            let bytes = runtime.block_on(scrape(&router, accept, encoding));
            eprintln!("scrape/{form}/{n}: {bytes} bytes");
            group.bench_function(BenchmarkId::new(form, n), |b| {
                b.to_async(&runtime)
                    .iter(|| scrape(&router, accept, encoding));
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = render, scrape_formats
}
criterion_main!(benches);
