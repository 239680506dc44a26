//! Span export that a collector's limits cannot sink: batches split under the collector's
//! message limit, throttling honoured with a bounded pause, answers read only as far as an OTLP
//! answer can need.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use common::{build, sample, scrape, FakeOtlp};
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use soma_observability::config::ExporterKind;
use soma_observability::{ObservabilityConfig, ObservabilityParts};

fn traces_only(endpoint: &str, protocol: &str) -> ObservabilityConfig {
    let mut cfg = common::config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
    ]);
    cfg.logs.exporter = ExporterKind::None;
    cfg
}

/// A request span as the attack makes it: 1 KB method, path, query and user agent.
fn attack_span(parts: &ObservabilityParts, extra: usize) {
    let tracer = parts.tracer_provider().unwrap().tracer("attack");
    let kb = "x".repeat(1024);
    let mut span = tracer
        .span_builder("GET")
        .with_attributes(vec![
            KeyValue::new("http.request.method", kb.clone()),
            KeyValue::new("url.path", kb.clone()),
            KeyValue::new("url.query", kb.clone()),
            KeyValue::new("user_agent.original", kb),
            KeyValue::new("extra", "y".repeat(extra)),
        ])
        .start(&tracer);
    span.end();
}

async fn metrics(parts: &ObservabilityParts) -> String {
    scrape(&parts.instrument(Router::new()).unwrap()).await
}

/// 1 024 spans of ~4.2 KB: one 4.4 MB batch, over the 4 MiB a collector's gRPC receiver takes
/// (the fake receiver is tonic's, with the same default). Before: `RESOURCE_EXHAUSTED`, not
/// retried, every span lost. Now: split, every span arrives but the one larger than a request
/// may be on its own, which is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_collectors_limit_is_split_and_delivered() {
    let otlp = FakeOtlp::start().await;
    let mut cfg = traces_only(&otlp.grpc_endpoint(), "grpc");
    cfg.traces.schedule_delay = Duration::from_secs(60); // one batch, flushed below
    let parts = build("attacked", cfg);
    for _ in 0..1024 {
        attack_span(&parts, 0);
    }
    attack_span(&parts, 5 * 1024 * 1024);
    let provider = parts.tracer_provider().unwrap().clone();
    let _ = tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .unwrap();
    let received = otlp.span_count();
    eprintln!("spans received: {received} of 1025 (one of them 5 MiB)");
    assert_eq!(received, 1024, "every span but the 5 MiB one arrives");
    let text = metrics(&parts).await;
    assert_eq!(
        sample(
            &text,
            "otel_sdk_span_dropped_total",
            &[r#"error_type="too_large""#]
        ),
        Some(1.0),
        "{text}"
    );
}

/// A collector answering 429 with `Retry-After: 3600`: before, every batch was sent at once
/// (one request per batch); now the exporter pauses, drops (and counts) what comes meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_asking_for_an_hour_gets_no_request_meanwhile() {
    let requests = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&requests);
    let collector = Router::new().route(
        "/v1/traces",
        post(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "3600")],
                )
            }
        }),
    );
    let addr = serve(collector).await;
    let parts = build(
        "throttled",
        traces_only(&format!("http://{addr}"), "http/protobuf"),
    );
    // ~20 batches over a second.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        attack_span(&parts, 0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let provider = parts.tracer_provider().unwrap().clone();
    let _ = tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .unwrap();
    let sent = requests.load(Ordering::Relaxed);
    eprintln!("requests to a collector asking for a 3600 s pause: {sent}");
    assert_eq!(sent, 1, "one request, then the pause");
    let text = metrics(&parts).await;
    let throttled = sample(
        &text,
        "otel_sdk_span_dropped_total",
        &[r#"error_type="throttled""#],
    );
    assert!(throttled.is_some_and(|n| n > 0.0), "{text}");
}

/// A collector (or a misdirected endpoint) answering 200 with a 100 MB body: before, all of it
/// was read into memory; now at most 64 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_answer_is_not_read() {
    const ANSWER: u64 = 100 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    let produced = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&produced);
    let collector = Router::new().route(
        "/v1/traces",
        post(move || {
            let counted = Arc::clone(&counted);
            async move {
                let chunks = futures_util::stream::unfold(0_u64, move |sent| {
                    let counted = Arc::clone(&counted);
                    async move {
                        (sent < ANSWER).then(|| {
                            counted.fetch_add(CHUNK as u64, Ordering::Relaxed);
                            (
                                Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0_u8; CHUNK])),
                                sent + CHUNK as u64,
                            )
                        })
                    }
                });
                (
                    [(header::CONTENT_TYPE, "application/x-protobuf")],
                    axum::body::Body::from_stream(chunks),
                )
                    .into_response()
            }
        }),
    );
    let addr = serve(collector).await;
    let parts = build(
        "answered",
        traces_only(&format!("http://{addr}"), "http/protobuf"),
    );
    let before = peak_rss_kib();
    attack_span(&parts, 0);
    let provider = parts.tracer_provider().unwrap().clone();
    let _ = tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .unwrap();
    let sent = produced.load(Ordering::Relaxed);
    eprintln!(
        "answer bytes the collector got to send: {sent} of {ANSWER}; peak RSS {before} KiB -> {} KiB",
        peak_rss_kib()
    );
    assert!(
        sent < 16 * 1024 * 1024,
        "the exporter read {sent} bytes of a 100 MB answer"
    );
}

/// Serves `app` on 127.0.0.1; its address.
async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// This process's peak resident memory (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
