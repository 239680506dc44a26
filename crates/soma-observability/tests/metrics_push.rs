//! OTLP metrics push (`OTEL_METRICS_EXPORTER=otlp`) against the real OTLP receiver, over gRPC
//! and HTTP/protobuf: what arrives (the HTTP histogram with its semantic-convention attributes,
//! users' instruments), cumulative and delta across intervals, a collector that errors or hangs
//! (requests unaffected, failures counted), the final push at shutdown, gzip, and `/metrics`
//! with `otlp` alone.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use common::{build, config, get as get_status, hit, scrape, string_attr, Behaviour, FakeOtlp};
use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, HistogramDataPoint, Metric};
use soma_observability::ObservabilityConfig;
use soma_system_tests::otlp::BlackHole;

const WAIT: Duration = Duration::from_secs(15);
const ROUTE: &str = "/users/{id}";

fn routes() -> Router {
    Router::new().route(ROUTE, get(|| async { "user" }))
}

/// Metrics pushed to `endpoint` over `protocol` every 300 ms (and scraped); no traces or logs.
/// `vars` come first and win.
fn push_config(endpoint: &str, protocol: &str, vars: &[(&str, &str)]) -> ObservabilityConfig {
    let mut all = vars.to_vec();
    all.extend([
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "none"),
        ("OTEL_METRICS_EXPORTER", "prometheus,otlp"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
    ]);
    config(&all)
}

fn endpoint(otlp: &FakeOtlp, protocol: &str) -> String {
    if protocol == "grpc" {
        otlp.grpc_endpoint()
    } else {
        otlp.http_endpoint()
    }
}

fn metric<'a>(export: &'a [Metric], name: &str) -> Option<&'a Metric> {
    export.iter().find(|m| m.name == name)
}

/// The `http.server.request.duration` data points of `ROUTE` in one export.
fn duration_points(export: &[Metric]) -> Vec<HistogramDataPoint> {
    let Some(Data::Histogram(histogram)) =
        metric(export, "http.server.request.duration").and_then(|m| m.data.clone())
    else {
        return Vec::new();
    };
    histogram
        .data_points
        .into_iter()
        .filter(|p| string_attr(&p.attributes, "http.route").as_deref() == Some(ROUTE))
        .collect()
}

/// The request count of `ROUTE` in one export (`None`: no data point).
fn duration_count(export: &[Metric]) -> Option<u64> {
    let points = duration_points(export);
    (!points.is_empty()).then(|| points.iter().map(|p| p.count).sum())
}

fn temporality(export: &[Metric], name: &str) -> Option<i32> {
    match metric(export, name)?.data.as_ref()? {
        Data::Histogram(h) => Some(h.aggregation_temporality),
        Data::Sum(s) => Some(s.aggregation_temporality),
        _ => None,
    }
}

/// The value of a counter `otel_sdk_exporter_metric_data_point_exported_total` series on
/// `/metrics` with (`failed`) or without `error_type="export_failed"`.
fn data_points_exported(metrics: &str, failed: bool) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("otel_sdk_exporter_metric_data_point_exported_total{"))
        .filter(|l| l.contains(r#"error_type="export_failed""#) == failed)
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cumulative_pushes_count_every_request_with_semconv_attributes() {
    let otlp = FakeOtlp::start().await;
    let parts = build(
        "pushed",
        push_config(&otlp.http_endpoint(), "http/protobuf", &[]),
    );
    let app = parts.instrument(routes()).unwrap();
    let checkout = parts.meter("checkout");
    let orders = checkout
        .u64_counter("checkout.orders")
        .with_description("Orders placed.")
        .build();
    let payment = checkout
        .f64_histogram("checkout.payment.duration")
        .with_unit("s")
        .with_description("Payment time.")
        .build();
    orders.add(3, &[KeyValue::new("payment.method", "card")]);
    payment.record(0.2, &[]);
    payment.record(0.3, &[]);

    hit(&app, 7).await;
    let exports = otlp
        .wait_for_metrics(WAIT, |e| {
            e.last().and_then(|e| duration_count(e)) == Some(7)
        })
        .await;
    let first = exports.last().unwrap();
    let points = duration_points(first);
    assert_eq!(points.len(), 1, "one series: {points:?}");
    let attributes = &points[0].attributes;
    for (key, value) in [
        ("http.request.method", "GET"),
        ("http.route", ROUTE),
        ("http.response.status_code", "200"),
        ("url.scheme", "http"),
        ("network.protocol.version", "1.1"),
    ] {
        assert_eq!(
            string_attr(attributes, key).as_deref(),
            Some(value),
            "{key}: {attributes:?}"
        );
    }
    assert_eq!(
        points[0].explicit_bounds,
        soma_observability::SECONDS_BUCKETS,
        "seconds buckets"
    );
    assert_eq!(
        temporality(first, "http.server.request.duration"),
        Some(AggregationTemporality::Cumulative as i32)
    );
    // Users' instruments arrive too, with their values.
    let Some(Data::Sum(sum)) = metric(first, "checkout.orders").and_then(|m| m.data.clone()) else {
        panic!("checkout.orders not pushed: {first:?}");
    };
    assert_eq!(sum.data_points.len(), 1);
    assert_eq!(sum.data_points[0].value, Some(Value::AsInt(3)));
    assert_eq!(
        string_attr(&sum.data_points[0].attributes, "payment.method").as_deref(),
        Some("card")
    );
    let Some(Data::Histogram(histogram)) =
        metric(first, "checkout.payment.duration").and_then(|m| m.data.clone())
    else {
        panic!("checkout.payment.duration not pushed: {first:?}");
    };
    assert_eq!(histogram.data_points[0].count, 2);
    assert!((histogram.data_points[0].sum.unwrap() - 0.5).abs() < 1e-9);
    assert!(otlp.metric_services().iter().all(|s| s == "pushed"));

    // A second batch: the next pushes carry the total, never more.
    let before = otlp.metric_exports().len();
    hit(&app, 5).await;
    let exports = otlp
        .wait_for_metrics(WAIT, |e| {
            e.last().and_then(|e| duration_count(e)) == Some(12)
        })
        .await;
    let counts: Vec<u64> = exports.iter().filter_map(|e| duration_count(e)).collect();
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]) && counts.iter().all(|c| *c <= 12),
        "cumulative counts only grow to the total: {counts:?}"
    );
    assert!(
        exports[before..]
            .iter()
            .filter_map(|e| duration_count(e))
            .all(|c| c >= 7),
        "{counts:?}"
    );
    // Both at once: /metrics still serves the same histogram.
    let metrics = scrape(&app).await;
    assert!(
        metrics.contains("http_server_request_duration_seconds_count"),
        "{metrics}"
    );
    assert!(data_points_exported(&metrics, false) > 0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_pushes_count_each_interval_once() {
    let otlp = FakeOtlp::start().await;
    let parts = build(
        "delta",
        push_config(
            &otlp.grpc_endpoint(),
            "grpc",
            &[("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")],
        ),
    );
    let app = parts.instrument(routes()).unwrap();
    let total =
        |exports: &[Vec<Metric>]| -> u64 { exports.iter().filter_map(|e| duration_count(e)).sum() };
    hit(&app, 7).await;
    let exports = otlp.wait_for_metrics(WAIT, |e| total(e) == 7).await;
    let before = exports.len();
    let first = exports
        .iter()
        .find(|e| duration_count(e).is_some())
        .unwrap();
    assert_eq!(
        temporality(first, "http.server.request.duration"),
        Some(AggregationTemporality::Delta as i32)
    );
    hit(&app, 5).await;
    let exports = otlp.wait_for_metrics(WAIT, |e| total(e) >= 12).await;
    assert_eq!(
        total(&exports[before..]),
        5,
        "the later pushes hold the 5 only"
    );
    // Two more pushes: nothing is counted twice.
    let seen = exports.len();
    let exports = otlp.wait_for_metrics(WAIT, |e| e.len() >= seen + 2).await;
    assert_eq!(total(&exports), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_alone_pushes_and_mounts_no_metrics_endpoint() {
    let otlp = FakeOtlp::start().await;
    let parts = build(
        "push-only",
        push_config(
            &otlp.http_endpoint(),
            "http/protobuf",
            &[("OTEL_METRICS_EXPORTER", "otlp")],
        ),
    );
    let app = parts.instrument(routes()).unwrap();
    assert_eq!(get_status(&app, "/metrics").await, StatusCode::NOT_FOUND);
    hit(&app, 4).await;
    otlp.wait_for_metrics(WAIT, |e| {
        e.last().and_then(|e| duration_count(e)) == Some(4)
    })
    .await;
}

/// A collector that answers 500 (HTTP) or accepts and never answers (gRPC): requests take no
/// longer than with a healthy one, and every failed push is counted on `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_collector_costs_requests_nothing_and_failures_are_counted() {
    let healthy = FakeOtlp::start().await;
    let erroring = FakeOtlp::start().await;
    erroring.set_behaviour(Behaviour::Fail(500));
    let hung = BlackHole::start().await;
    let fast = [("OTEL_METRIC_EXPORT_INTERVAL", "100")];
    // The parts stay alive: dropping them shuts their meter provider down.
    let healthy_parts = build(
        "healthy",
        push_config(&healthy.http_endpoint(), "http/protobuf", &fast),
    );
    let erroring_parts = build(
        "erroring",
        push_config(&erroring.http_endpoint(), "http/protobuf", &fast),
    );
    let hung_parts = build(
        "hung",
        push_config(
            &hung.endpoint(),
            "grpc",
            &[
                ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
                ("OTEL_METRIC_EXPORT_TIMEOUT", "300"),
            ],
        ),
    );
    let healthy_app = healthy_parts.instrument(routes()).unwrap();
    let erroring_app = erroring_parts.instrument(routes()).unwrap();
    let hung_app = hung_parts.instrument(routes()).unwrap();
    let apps = [&healthy_app, &erroring_app, &hung_app];
    for app in apps {
        hit(app, 100).await;
    }
    // Interleaved, so machine noise hits all three alike.
    let mut took = [Duration::ZERO; 3];
    for _ in 0..4 {
        for (app, took) in apps.iter().zip(&mut took) {
            let started = Instant::now();
            hit(app, 250).await;
            *took += started.elapsed();
        }
    }
    let [with_healthy, with_erroring, with_hung] = took;
    for (what, with) in [("erroring", with_erroring), ("hung", with_hung)] {
        assert!(
            with < with_healthy * 2 + Duration::from_millis(100),
            "1000 requests took {with:?} with a {what} collector, {with_healthy:?} with a healthy one"
        );
    }
    for (what, app) in [("erroring", &erroring_app), ("hung", &hung_app)] {
        let deadline = Instant::now() + WAIT;
        loop {
            let metrics = scrape(app).await;
            if data_points_exported(&metrics, true) > 0 {
                assert_eq!(data_points_exported(&metrics, false), 0, "{metrics}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no failed push counted:\n{metrics}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(
        erroring.attempts() > 0,
        "pushes reached the erroring collector"
    );
    assert!(hung.accepted() > 0, "pushes reached the hung collector");
    let metrics = scrape(&healthy_app).await;
    assert_eq!(data_points_exported(&metrics, true), 0, "{metrics}");
    assert!(healthy
        .metric_exports()
        .iter()
        .any(|e| duration_count(e).is_some()));
}

/// Requests after the last interval arrive with the final push, before `shutdown` returns. A
/// current-thread runtime, where a tonic shutdown on the runtime's own thread would deadlock.
#[tokio::test(flavor = "current_thread")]
async fn the_final_push_at_shutdown_carries_the_last_requests() {
    for protocol in ["grpc", "http/protobuf"] {
        let otlp = FakeOtlp::start().await;
        let config = push_config(
            &endpoint(&otlp, protocol),
            protocol,
            &[("OTEL_METRIC_EXPORT_INTERVAL", "3600000")],
        );
        let parts = common::build_with_shutdown_timeout("final", config, Duration::from_secs(5));
        let app = parts.instrument(routes()).unwrap();
        hit(&app, 9).await;
        assert!(
            otlp.metric_exports().is_empty(),
            "{protocol}: no interval yet"
        );
        let mut guard = parts.into_guard();
        guard.shutdown().await.unwrap();
        let exports = otlp.metric_exports();
        assert_eq!(exports.len(), 1, "{protocol}: one final push");
        assert_eq!(duration_count(&exports[0]), Some(9), "{protocol}");
        guard.shutdown().await.unwrap();
    }
}

/// A collector that accepts connections and never answers: shutdown returns within its
/// deadline, saying the final push was not delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_hung_collector_returns_within_its_deadline() {
    let hung = BlackHole::start().await;
    for protocol in ["grpc", "http/protobuf"] {
        let config = push_config(
            &hung.endpoint(),
            protocol,
            &[
                ("OTEL_METRIC_EXPORT_INTERVAL", "3600000"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "10000"),
            ],
        );
        let parts = common::build_with_shutdown_timeout("stuck", config, Duration::from_secs(1));
        let app = parts.instrument(routes()).unwrap();
        hit(&app, 3).await;
        let shutdown = common::timed_shutdown(parts).await;
        assert!(
            shutdown.took < Duration::from_millis(1300),
            "{protocol}: {shutdown:?}"
        );
        // A push the collector did not take is lost telemetry, not a failed shutdown.
        assert!(shutdown.result.is_ok(), "{protocol}: {shutdown:?}");
        let lost = shutdown
            .undelivered
            .expect("the final push cannot be delivered");
        assert!(lost.to_string().contains("metrics:"), "{protocol}: {lost}");
    }
    assert!(hung.accepted() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_compresses_metrics_traces_and_logs() {
    for protocol in ["grpc", "http/protobuf"] {
        let otlp = FakeOtlp::start().await;
        let config = push_config(
            &endpoint(&otlp, protocol),
            protocol,
            &[
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                ("OTEL_TRACES_EXPORTER", "otlp"),
                ("OTEL_LOGS_EXPORTER", "otlp"),
                ("OTEL_BSP_SCHEDULE_DELAY", "50"),
                ("OTEL_BLRP_SCHEDULE_DELAY", "50"),
                ("RUST_LOG", "info"),
            ],
        );
        let parts = build("gzipped", config);
        let app = parts.instrument(routes()).unwrap();
        hit(&app, 2).await;
        tracing::subscriber::with_default(parts.subscriber(), || {
            tracing::info!(target: "checkout", "order placed");
        });
        otlp.wait_for_spans(WAIT, |s| !s.is_empty()).await;
        otlp.wait_for_logs(WAIT, |l| !l.is_empty()).await;
        otlp.wait_for_metrics(WAIT, |e| e.iter().any(|e| duration_count(e) == Some(2)))
            .await;
        let (requests, compressed) = (otlp.requests(), otlp.compressed_requests());
        assert!(requests >= 3, "{protocol}: {requests} requests");
        assert_eq!(
            compressed, requests,
            "{protocol}: every export request is gzipped"
        );
    }
}
