//! A span batch larger than the real OpenTelemetry Collector's default 4 MiB gRPC message limit
//! (`otelcol-soma`, core 0.165, `scripts/backends.sh`): what arrives, what is lost, and that
//! every lost span is counted (`otel_sdk_exporter_span_exported_total{error_type="export_failed"}`).
//! A fake receiver has no such limit, so only the real collector shows this.
//!
//! Either outcome passes as long as nothing is lost silently: today the library sends one
//! batch as one gRPC message and the collector refuses it whole (`RESOURCE_EXHAUSTED`); an
//! exporter that splits batches to a byte budget delivers every span instead.

mod common;

use std::time::Duration;

use common::{build, config, hex, FakeOtlp};
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use soma_system_tests::collector::{Collector, Config, Ports};
use soma_system_tests::sum_of;

/// Spans in the batch, each with an attribute of [`ATTRIBUTE_BYTES`]: 6 MB in all.
const SPANS: usize = 30;
const ATTRIBUTE_BYTES: usize = 200 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_collectors_4_mib_grpc_limit_is_never_lost_silently() {
    let otlp = FakeOtlp::start().await;
    let collector =
        Collector::start(&Config::forward_to(&otlp.http_endpoint()), Ports::free()).await;
    let parts = build(
        "big-batches",
        config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.grpc_endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_LOGS_EXPORTER", "none"),
            // Long enough for all the spans to be ended before the first export: one batch.
            ("OTEL_BSP_SCHEDULE_DELAY", "1000"),
            ("RUST_LOG", "info"),
        ]),
    );
    let tracer = parts
        .tracer_provider()
        .expect("traces are on")
        .tracer("collector-limits");
    let payload = "x".repeat(ATTRIBUTE_BYTES);
    let mut ids = Vec::new();
    for index in 0..SPANS {
        let mut span = tracer.start(format!("big {index}"));
        span.set_attribute(opentelemetry::KeyValue::new("payload", payload.clone()));
        ids.push(hex(&span.span_context().trace_id().to_bytes()));
        span.end();
    }

    // Wait until every span has either arrived or been counted as failed.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (arrived, failed) = loop {
        let arrived = otlp
            .spans()
            .iter()
            .filter(|(_, s)| ids.contains(&hex(&s.trace_id)))
            .count();
        let metrics = parts.render_metrics().unwrap();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a small count
        let failed = sum_of(
            &metrics,
            "otel_sdk_exporter_span_exported_total",
            "export_failed",
        ) as usize;
        if arrived + failed >= SPANS {
            break (arrived, failed);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after 60 s: {arrived} of {SPANS} spans arrived, {failed} counted as failed; \
             the rest was lost silently.\ncollector:\n{}",
            collector.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let refused = collector.metric("otelcol_receiver_refused_spans").await;
    eprintln!(
        "{SPANS} spans of {ATTRIBUTE_BYTES} bytes in one batch over gRPC: {arrived} arrived, \
         {failed} counted as failed by the library, {refused:.0} counted as refused by the collector (grpc-go refuses the message before its receiver sees it)"
    );
    assert_eq!(arrived + failed, SPANS, "spans arrived twice?");
    parts.into_guard().shutdown().await.unwrap();
}
