//! The span exporter against a real OTLP receiver, over both protocols: what arrives (every
//! field, the same over HTTP/protobuf and gRPC), gzip, headers, and which failures are retried.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{build, otlp_config, sample, scrape, Behaviour, FakeOtlp};
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::trace::v1::Span;
use soma_observability::{ObservabilityConfig, ObservabilityParts};

const WAIT: Duration = Duration::from_secs(15);
const PROTOCOLS: [&str; 2] = ["http/protobuf", "grpc"];

fn attributes() -> Vec<KeyValue> {
    vec![
        KeyValue::new("bool", true),
        KeyValue::new("i64", -42_i64),
        KeyValue::new("f64", 2.5_f64),
        KeyValue::new("string", "héllo ✓"),
        KeyValue::new("array.bool", Value::Array(Array::Bool(vec![true, false]))),
        KeyValue::new("array.i64", Value::Array(Array::I64(vec![1, -2]))),
        KeyValue::new("array.f64", Value::Array(Array::F64(vec![0.5]))),
        KeyValue::new(
            "array.string",
            Value::Array(Array::String(vec![StringValue::from("a"), "ü".into()])),
        ),
    ]
}

fn at(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000 + nanos)
}

/// Two spans of every kind of content, with fixed times, from two scopes.
fn emit(parts: &ObservabilityParts) {
    let provider = parts.tracer_provider().unwrap();
    let tracer = provider.tracer("span-export-test");
    let linked = SpanContext::new(
        TraceId::from(0xabcd_u128),
        SpanId::from(0x1234_u64),
        TraceFlags::SAMPLED,
        true,
        "vendor=value".parse::<TraceState>().unwrap(),
    );
    let mut span = tracer
        .span_builder("checkout ✓")
        .with_kind(SpanKind::Client)
        .with_start_time(at(0))
        .with_attributes(attributes())
        .with_links(vec![Link::with_context(linked)])
        .start(&tracer);
    span.add_event_with_timestamp("retry", at(5), attributes());
    span.set_status(Status::error("payment declined"));
    span.end_with_timestamp(at(10));
    let other = provider.tracer("second-scope");
    let mut span = other
        .span_builder("")
        .with_kind(SpanKind::Consumer)
        .with_start_time(at(20))
        .start(&other);
    span.set_status(Status::Ok);
    span.end_with_timestamp(at(30));
}

fn traces_only(otlp: &FakeOtlp, protocol: &str) -> ObservabilityConfig {
    let mut cfg = otlp_config(otlp, protocol);
    cfg.logs.exporter = soma_observability::config::ExporterKind::None;
    cfg
}

/// Ids differ from run to run: the span without them.
fn without_ids(mut span: Span) -> Span {
    span.trace_id.clear();
    span.span_id.clear();
    span
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_protocols_deliver_the_same_spans_with_every_field() {
    let mut received = Vec::new();
    for protocol in PROTOCOLS {
        let otlp = FakeOtlp::start().await;
        let parts = build("gateway", traces_only(&otlp, protocol));
        emit(&parts);
        let spans = otlp.wait_for_spans(WAIT, |s| s.len() >= 2).await;
        assert_eq!(spans.len(), 2, "{protocol}");
        let (service, span) = &spans[0];
        assert_eq!(service, "gateway");
        assert_eq!(span.name, "checkout ✓");
        assert_eq!(span.attributes.len(), attributes().len(), "{protocol}");
        assert_eq!(span.events[0].attributes.len(), attributes().len());
        assert_eq!(span.links[0].trace_state, "vendor=value");
        assert_eq!(span.links[0].flags, 0x301, "sampled, remote");
        assert_eq!(span.flags, 0x101, "sampled, a local (no) parent");
        assert_eq!(span.status.as_ref().unwrap().message, "payment declined");
        assert_eq!(span.end_time_unix_nano - span.start_time_unix_nano, 10);
        let request = otlp.raw_bytes();
        assert!(!request.is_empty());
        received.push(
            spans
                .into_iter()
                .map(|(_, span)| without_ids(span))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(received[0], received[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_arrive_gzipped_over_both_protocols_and_decode() {
    for protocol in PROTOCOLS {
        let otlp = FakeOtlp::start().await;
        let mut cfg = traces_only(&otlp, protocol);
        cfg.traces.compression = soma_observability::config::Compression::Gzip;
        let parts = build("gzip", cfg);
        emit(&parts);
        let spans = otlp.wait_for_spans(WAIT, |s| s.len() >= 2).await;
        assert_eq!(spans[0].1.name, "checkout ✓", "{protocol}");
        assert_eq!(
            otlp.compressed_requests(),
            otlp.requests(),
            "{protocol}: every request gzipped"
        );
        assert!(otlp.requests() > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_headers_arrive_as_http_headers_and_grpc_metadata() {
    for protocol in PROTOCOLS {
        let otlp = FakeOtlp::start().await;
        let mut cfg = traces_only(&otlp, protocol);
        cfg.traces
            .headers
            .insert("X-Api-Key".to_owned(), "s3cret value".to_owned());
        let parts = build("headers", cfg);
        emit(&parts);
        otlp.wait_for_spans(WAIT, |s| s.len() >= 2).await;
        let headers = otlp.request_headers();
        let first = &headers[0];
        let get = |name: &str| {
            first
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("x-api-key"),
            Some("s3cret value"),
            "{protocol}: {first:?}"
        );
        let content_type = get("content-type").unwrap_or_default();
        if protocol == "grpc" {
            assert!(content_type.starts_with("application/grpc"), "{first:?}");
        } else {
            assert_eq!(content_type, "application/x-protobuf");
            assert_eq!(get("content-encoding"), None);
        }
        assert!(
            get("user-agent").is_some_and(|agent| agent.contains("soma-observability")),
            "{protocol}: {first:?}"
        );
    }
}

/// 503 over HTTP (with `Retry-After: 1`), `UNAVAILABLE` over gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_failure_is_retried_and_the_spans_arrive_once() {
    for (protocol, status) in [("http/protobuf", 503), ("grpc", 503), ("grpc", 429)] {
        let otlp = FakeOtlp::start().await;
        otlp.set_behaviour(Behaviour::FailThenAccept { status, times: 2 });
        let mut cfg = traces_only(&otlp, protocol);
        cfg.traces.timeout = Duration::from_secs(10);
        let parts = build("retried", cfg);
        emit(&parts);
        let spans = otlp.wait_for_spans(WAIT, |s| s.len() >= 2).await;
        assert_eq!(spans.len(), 2, "{protocol} {status}: exactly once");
        assert_eq!(
            otlp.attempts(),
            3,
            "{protocol} {status}: two failures, one success"
        );
        assert_eq!(otlp.requests(), 1);
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let metrics = scrape(&parts.instrument(axum::Router::new()).unwrap()).await;
            let exported = sample(&metrics, "otel_sdk_exporter_span_exported_total", &[]);
            if exported == Some(2.0) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{metrics}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// 400 over HTTP, `INTERNAL` over gRPC: one attempt, the batch counted as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_retryable_failure_is_not_retried() {
    for (protocol, status) in [("http/protobuf", 400), ("grpc", 500)] {
        let otlp = FakeOtlp::start().await;
        otlp.set_behaviour(Behaviour::Fail(status));
        let mut cfg = traces_only(&otlp, protocol);
        cfg.traces.schedule_delay = Duration::from_secs(60); // one batch, flushed below
        let parts = build("rejected", cfg);
        emit(&parts);
        let _ = parts.tracer_provider().unwrap().force_flush();
        assert_eq!(otlp.attempts(), 1, "{protocol}: no retry");
        let metrics = scrape(&parts.instrument(axum::Router::new()).unwrap()).await;
        assert_eq!(
            sample(
                &metrics,
                "otel_sdk_exporter_span_exported_total",
                &[r#"error_type="export_failed""#]
            ),
            Some(2.0),
            "{protocol}: {metrics}"
        );
    }
}

/// gRPC `RESOURCE_EXHAUSTED` with a 1 s `RetryInfo`: the exporter waits that long, and
/// retries only while the export timeout allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_throttle_waits_the_servers_delay_within_the_timeout() {
    let otlp = FakeOtlp::start().await;
    otlp.set_behaviour(Behaviour::Fail(429));
    let mut cfg = traces_only(&otlp, "grpc");
    cfg.traces.timeout = Duration::from_millis(1500);
    cfg.traces.schedule_delay = Duration::from_secs(60);
    let parts = build("throttled", cfg);
    emit(&parts);
    let started = std::time::Instant::now();
    let _ = parts.tracer_provider().unwrap().force_flush();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // RetryInfo says 1 s: one retry fits in 1.5 s, a second would not.
    assert_eq!(
        otlp.attempts(),
        2,
        "throttled, retried once within the timeout"
    );
}
