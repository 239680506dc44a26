//! Telemetry never takes the service down, loses nothing silently and cannot be blown up by
//! bad input: faults scripted on a real OTLP receiver, oversized and hostile requests.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use common::{
    build, config, hit, metrics_only, otlp_config, sample, scrape, send, string_attr, Behaviour,
    FakeOtlp,
};
use opentelemetry::metrics::MeterProvider as _;

const WAIT: Duration = Duration::from_secs(15);

fn routes() -> Router {
    Router::new().route("/users/{id}", get(|| async { "user" }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_from_a_503_outage_arrive_after_recovery() {
    let otlp = FakeOtlp::start().await;
    otlp.set_behaviour(Behaviour::FailThenAccept {
        status: 503,
        times: 2,
    });
    let mut cfg = otlp_config(&otlp, "http/protobuf");
    // Retry-After: 1 twice, with exponential backoff: the retries need ~3 s of the budget.
    cfg.traces.timeout = Duration::from_secs(10);
    let parts = build("outage", cfg);
    let app = parts.instrument(routes()).unwrap();
    hit(&app, 20).await;
    let spans = otlp.wait_for_spans(WAIT, |s| s.len() >= 20).await;
    assert_eq!(spans.len(), 20, "every span arrives exactly once");
    assert!(
        otlp.attempts() >= 3,
        "the exporter retried ({} attempts)",
        otlp.attempts()
    );
    // The receiver has the spans before the exporter has read its answer and counted them:
    // poll /metrics until the count is there (bounded).
    let deadline = std::time::Instant::now() + WAIT;
    let metrics = loop {
        let metrics = scrape(&app).await;
        let exported = sample(&metrics, "otel_sdk_exporter_span_exported_total", &[]);
        if exported.is_some_and(|n| n >= 20.0) || std::time::Instant::now() >= deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        sample(&metrics, "otel_sdk_exporter_span_exported_total", &[]),
        Some(20.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_retryable_error_causes_no_retry_storm_and_is_counted() {
    let otlp = FakeOtlp::start().await;
    otlp.set_behaviour(Behaviour::Fail(400));
    let mut cfg = otlp_config(&otlp, "http/protobuf");
    cfg.traces.schedule_delay = Duration::from_secs(60); // one batch, flushed below
    let parts = build("rejected", cfg);
    let app = parts.instrument(routes()).unwrap();
    hit(&app, 10).await;
    let _ = parts.tracer_provider().unwrap().force_flush();
    assert_eq!(
        otlp.attempts(),
        1,
        "a 400 is final: one attempt, no retries"
    );
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(
            &metrics,
            "otel_sdk_exporter_span_exported_total",
            &[r#"error_type="export_failed""#]
        ),
        Some(10.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts_every_dropped_span() {
    let otlp = FakeOtlp::start().await;
    otlp.set_behaviour(Behaviour::Hang);
    let mut cfg = otlp_config(&otlp, "http/protobuf");
    cfg.traces.max_queue_size = 10;
    cfg.traces.max_export_batch_size = 10;
    cfg.traces.timeout = Duration::from_secs(30);
    let parts = build("full", cfg);
    let app = parts.instrument(routes()).unwrap();
    let started = Instant::now();
    hit(&app, 50).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a hung collector slowed requests"
    );
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(&metrics, "otel_sdk_span_dropped_total", &[]),
        Some(40.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_errors_during_load_costs_requests_nothing() {
    let healthy = FakeOtlp::start().await;
    let erroring = FakeOtlp::start().await;
    erroring.set_behaviour(Behaviour::Fail(500));
    let app_healthy = build("healthy", otlp_config(&healthy, "grpc"))
        .instrument(routes())
        .unwrap();
    let parts = build("erroring", otlp_config(&erroring, "grpc"));
    let app = parts.instrument(routes()).unwrap();
    // Warm up both, then time the same work, interleaved so machine noise hits both.
    hit(&app_healthy, 200).await;
    hit(&app, 200).await;
    let (mut with_healthy, mut with_erroring) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..4 {
        let started = Instant::now();
        hit(&app_healthy, 500).await;
        with_healthy += started.elapsed();
        let started = Instant::now();
        hit(&app, 500).await;
        with_erroring += started.elapsed();
    }
    assert!(erroring.attempts() > 0, "exports were attempted");
    assert!(
        with_erroring < with_healthy * 2 + Duration::from_millis(100),
        "2000 requests took {with_erroring:?} with an erroring collector, {with_healthy:?} with a healthy one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_user_agent_is_truncated_to_the_documented_limit() {
    let otlp = FakeOtlp::start().await;
    let parts = build("big-headers", otlp_config(&otlp, "http/protobuf"));
    let app = parts.instrument(routes()).unwrap();
    let agent = "A".repeat(1024 * 1024);
    let request = Request::get(format!("/users/1?q={}", "b".repeat(20_000)))
        .header("user-agent", agent)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, request).await.0, StatusCode::OK);
    let spans = otlp.wait_for_spans(WAIT, |s| !s.is_empty()).await;
    let span = &spans[0].1;
    assert_eq!(
        string_attr(&span.attributes, "user_agent.original")
            .unwrap()
            .len(),
        1024
    );
    assert_eq!(
        string_attr(&span.attributes, "url.query").unwrap().len(),
        1024
    );
}

#[tokio::test]
async fn a_custom_metric_with_5000_values_is_capped_with_an_overflow_series() {
    let parts = build("cardinality", metrics_only());
    let app = parts.instrument(routes()).unwrap();
    let counter = parts
        .meter_provider()
        .meter("abuse")
        .u64_counter("abuse.requests")
        .with_description("Requests by user id (an anti-pattern).")
        .build();
    for i in 0..5000 {
        counter.add(1, &[opentelemetry::KeyValue::new("user.id", i64::from(i))]);
    }
    let started = Instant::now();
    let metrics = scrape(&app).await;
    let took = started.elapsed();
    let series = common::series_count(&metrics, "abuse_requests_total");
    assert!(series <= 2001, "{series} series");
    assert!(metrics.contains(r#"otel_metric_overflow="true""#));
    let total: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("abuse_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        (total - 5000.0).abs() < f64::EPSILON,
        "no measurement is lost: {total}"
    );
    assert!(took < Duration::from_millis(500), "scrape took {took:?}");
}

#[tokio::test]
async fn secrets_never_reach_metrics() {
    let parts = build("secrets", metrics_only());
    let app = parts.instrument(routes()).unwrap();
    let request = Request::get("/users/1?token=tok-secret&password=pw-secret")
        .header("authorization", "Bearer auth-secret")
        .header("cookie", "sid=cookie-secret")
        .header("x-api-key", "key-secret")
        .header("host", "evil.example")
        .body(Body::empty())
        .unwrap();
    send(&app, request).await;
    let metrics = scrape(&app).await;
    for secret in [
        "tok-secret",
        "pw-secret",
        "auth-secret",
        "cookie-secret",
        "key-secret",
        "evil.example",
    ] {
        assert!(!metrics.contains(secret), "{secret} on /metrics");
    }
}

#[test]
fn hurtful_batch_settings_are_rejected() {
    for (var, value) in [
        ("OTEL_BSP_SCHEDULE_DELAY", "0"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "0"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "-100"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "many"),
    ] {
        let result = common::try_config(&[(var, value)]);
        assert!(result.is_err(), "{var}={value} was accepted");
    }
    // The one that is merely odd is clamped, not rejected.
    let clamped = config(&[
        ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
    ]);
    assert_eq!(clamped.traces.max_export_batch_size, 64);
}

/// A collector answering 503 (`Retry-After: 1`) at shutdown: each failed export takes about a
/// second, so ten batches cannot all be tried in a 3 s deadline. Shutdown keeps trying while an
/// attempt fits, drops the rest, and returns on time with every span counted as undelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_against_a_503_collector_returns_on_time_with_the_lost_spans_counted() {
    let otlp = FakeOtlp::start().await;
    otlp.set_behaviour(Behaviour::Fail(503));
    let mut cfg = otlp_config(&otlp, "http/protobuf");
    cfg.traces.schedule_delay = Duration::from_secs(60);
    cfg.traces.max_export_batch_size = 10;
    cfg.logs.exporter = soma_observability::config::ExporterKind::None;
    let parts = common::build_with_shutdown_timeout("throttled", cfg, Duration::from_secs(3));
    let app = parts.instrument(routes()).unwrap();
    hit(&app, 100).await;
    let metrics_before = scrape(&app).await;
    let shutdown = common::timed_shutdown(parts).await;
    assert!(shutdown.took < Duration::from_millis(3200), "{shutdown:?}");
    // An outage is not a failed shutdown: `main` exits 0, and the loss is reported.
    assert!(shutdown.result.is_ok(), "{shutdown:?}");
    let lost = shutdown
        .undelivered
        .expect("100 spans could not be delivered");
    assert_eq!(lost.spans, 100, "{lost}");
    assert_eq!(lost.log_records, 0, "{lost}");
    assert!(otlp.spans().is_empty());
    let message = lost.to_string();
    assert!(message.contains("lost 100 spans"), "{message}");
    assert!(message.contains("rejected the export"), "{message}");
    assert!(
        message.contains("dropped without another attempt"),
        "{message}"
    );
    // Two or three attempts of ~1 s each (Retry-After), each with its retries, not ten.
    let exports = otlp.attempts();
    assert!(
        (2..=9).contains(&exports),
        "{exports} requests reached the collector"
    );
    assert_eq!(
        sample(&metrics_before, "otel_sdk_span_dropped_total", &[]),
        None,
        "nothing was dropped before shutdown\n{metrics_before}"
    );
}
