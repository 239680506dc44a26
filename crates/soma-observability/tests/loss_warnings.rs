//! Losses that used to be silent are said: spans dropped by a full queue and an instrument over
//! its cardinality limit each give a warning (at most once per interval, with the count), and
//! `/metrics` shows the overflow as `soma_metric_overflow_instruments` for the shipped alert.

mod common;

use common::{build, config, logged, metrics_only, sample};
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;

#[test]
fn a_full_span_queue_is_said_once_per_interval() {
    let parts = build(
        "svc",
        config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4"),
            ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ]),
    );
    let tracer = parts.tracer_provider().unwrap().tracer("t");
    let log = logged(|| {
        for _ in 0..100 {
            tracer.start("work").end();
        }
    });
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("export queue is full"))
        .collect();
    assert_eq!(warnings.len(), 1, "said once:\n{log}");
    assert!(warnings[0].contains("OTEL_BSP_MAX_QUEUE_SIZE"), "{log}");
}

#[test]
fn an_instrument_over_its_cardinality_limit_is_said_and_shown() {
    let parts = build("svc", metrics_only());
    let counter = parts
        .meter("app")
        .u64_counter("lookups")
        .with_description("Lookups by user")
        .build();
    let mut text = String::new();
    let log = logged(|| {
        for user in 0..2100 {
            counter.add(1, &[KeyValue::new("user", user)]);
        }
        text = parts.render_metrics().unwrap();
        let _ = parts.render_metrics().unwrap();
    });
    assert!(text.contains(r#"otel_metric_overflow="true""#), "{text}");
    assert_eq!(
        sample(&text, "soma_metric_overflow_instruments", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        log.matches("lookups_total hit the SDK's cardinality limit")
            .count(),
        1,
        "said once per interval:\n{log}"
    );
    let promtool = common::promtool_check_metrics(&text);
    assert!(!promtool.contains("error"), "{promtool}");
}
