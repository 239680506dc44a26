//! Exemplars on `/metrics` (OpenMetrics only): the HTTP duration histogram and users'
//! histograms keep the latest sampled measurement per bucket with its trace and span ids.

mod common;

use axum::body::Body;
use axum::http::{header, Request};
use axum::routing::get;
use axum::Router;
use common::{config, send, FakeOtlp};
use opentelemetry::trace::{TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use soma_observability::config::ExemplarFilter;
use soma_observability::{Observability, ObservabilityBuilder, ObservabilityParts};

const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0";

fn builder(otlp: &FakeOtlp, sampler: &str) -> ObservabilityBuilder {
    Observability::builder("exemplars").with_config(config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.grpc_endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_LOGS_EXPORTER", "none"),
        ("OTEL_TRACES_SAMPLER", sampler),
    ]))
}

fn routes() -> Router {
    Router::new().route("/slow", get(|| async { "done" }))
}

/// One request; its `traceresponse` trace and span ids (all zeros when unsampled... or absent).
async fn request(app: &Router) -> Option<(String, String)> {
    let (_, headers, _) = send(app, Request::get("/slow").body(Body::empty()).unwrap()).await;
    let value = headers.get("traceresponse")?.to_str().ok()?.to_owned();
    let mut parts = value.split('-').skip(1);
    let trace_id = parts.next()?.to_owned();
    let span_id = parts.next()?.to_owned();
    (value.ends_with("-01")).then_some((trace_id, span_id))
}

async fn scrape(app: &Router, accept: Option<&str>) -> String {
    let mut request = Request::get("/metrics");
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    let (_, _, body) = send(app, request.body(Body::empty()).unwrap()).await;
    String::from_utf8(body.to_vec()).unwrap()
}

/// The bucket lines of `family` that carry an exemplar.
fn exemplar_lines<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}_bucket{{")) && l.contains(" # {"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_requests_become_exemplars_of_their_duration_bucket() {
    let otlp = FakeOtlp::start().await;
    let parts = builder(&otlp, "always_on").build().unwrap();
    let app = parts.instrument(routes()).unwrap();
    let (trace_id, span_id) = request(&app).await.expect("a sampled request");
    let text = scrape(&app, Some(OPENMETRICS)).await;
    let lines = exemplar_lines(&text, "http_server_request_duration_seconds");
    assert_eq!(lines.len(), 1, "one request, one exemplar:\n{text}");
    let line = lines[0];
    assert!(
        line.contains(&format!(
            r#" # {{trace_id="{trace_id}",span_id="{span_id}"}} "#
        )),
        "{line}"
    );
    // `… le="0.005"} 1 # {…} 0.000123 1733050000.123`: the value fits its bucket, the time is now.
    let (sample, exemplar) = line.split_once(" # ").unwrap();
    assert!(sample.ends_with("} 1"), "{line}");
    let le: f64 = sample
        .split("le=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .parse()
        .unwrap();
    let mut fields = exemplar.rsplit(' ');
    let time: f64 = fields.next().unwrap().parse().unwrap();
    let value: f64 = fields.next().unwrap().parse().unwrap();
    assert!(value > 0.0 && value <= le, "{line}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - time).abs() < 60.0, "{line}");
    // The body-size histograms of the same request get it too.
    assert!(!exemplar_lines(&text, "http_server_response_body_size_bytes").is_empty());
    // The Prometheus text format cannot carry exemplars: it stays as it was.
    let plain = scrape(&app, None).await;
    assert!(!plain.contains(" # {"), "{plain}");
    parts.into_guard().shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_requests_leave_no_exemplar() {
    let otlp = FakeOtlp::start().await;
    let parts = builder(&otlp, "always_off").build().unwrap();
    let app = parts.instrument(routes()).unwrap();
    assert_eq!(request(&app).await, None);
    let text = scrape(&app, Some(OPENMETRICS)).await;
    assert!(!text.contains(" # {"), "{text}");
    assert!(
        text.contains("http_server_request_duration_seconds_count{"),
        "{text}"
    );
    parts.into_guard().shutdown().await.unwrap();
}

/// The layer offers its own server span when the request is sampled; without one (traces off
/// here) a histogram measurement takes the span current around the request, as any histogram
/// does: an application that traces with a provider of its own keeps its exemplars.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_server_span_the_current_span_is_the_exemplar() {
    use opentelemetry::context::FutureExt as _;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    let parts = Observability::builder("exemplars")
        .with_config(common::metrics_only())
        .build()
        .unwrap();
    let app = parts.instrument(routes()).unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let span_id = "00f067aa0ba902b7";
    let outer = opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_hex(trace_id).unwrap(),
        SpanId::from_hex(span_id).unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ));
    let request = Request::get("/slow").body(Body::empty()).unwrap();
    send(&app, request).with_context(outer).await;
    // Outside that context: nothing to keep.
    send(&app, Request::get("/slow").body(Body::empty()).unwrap()).await;
    let text = scrape(&app, Some(OPENMETRICS)).await;
    let lines = exemplar_lines(&text, "http_server_request_duration_seconds");
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].contains(&format!(
            r#" # {{trace_id="{trace_id}",span_id="{span_id}"}} "#
        )),
        "{}",
        lines[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemplars_can_be_turned_off() {
    let otlp = FakeOtlp::start().await;
    let parts = builder(&otlp, "always_on")
        .with_exemplars(false)
        .build()
        .unwrap();
    let app = parts.instrument(routes()).unwrap();
    assert!(request(&app).await.is_some());
    record_in_span(&parts, 0.3);
    let text = scrape(&app, Some(OPENMETRICS)).await;
    assert!(!text.contains(" # {"), "{text}");
    parts.into_guard().shutdown().await.unwrap();
}

/// Records 0.3 s into `work.duration` inside a sampled span and returns that span's ids.
fn record_in_span(parts: &ObservabilityParts, value: f64) -> (String, String) {
    let histogram = parts
        .meter("work")
        .f64_histogram("work.duration")
        .with_unit("s")
        .with_description("Work.")
        .build();
    let tracer = parts.tracer_provider().unwrap().tracer("work");
    // Outside any span: no exemplar.
    histogram.record(9.0, &[KeyValue::new("kind", "batch")]);
    tracer.in_span("work", |cx| {
        histogram.record(value, &[KeyValue::new("kind", "batch")]);
        let sc = cx.span().span_context().clone();
        (sc.trace_id().to_string(), sc.span_id().to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_histograms_keep_the_current_sampled_span() {
    let otlp = FakeOtlp::start().await;
    let parts = builder(&otlp, "always_on").build().unwrap();
    let app = parts.instrument(routes()).unwrap();
    let (trace_id, span_id) = record_in_span(&parts, 0.3);
    // A bound series keeps exemplars as well.
    let meter = parts.meter("work");
    let bound = meter
        .u64_histogram("work.items")
        .with_boundaries(vec![10.0, 100.0])
        .with_description("Items.")
        .build()
        .bind(&[KeyValue::new("kind", "batch")]);
    let tracer = parts.tracer_provider().unwrap().tracer("work");
    let items_trace = tracer.in_span("items", |cx| {
        bound.record(42);
        cx.span().span_context().trace_id().to_string()
    });
    let text = scrape(&app, Some(OPENMETRICS)).await;
    let lines = exemplar_lines(&text, "work_duration_seconds");
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].contains(r#"le="0.5""#),
        "0.3 s lands in le=0.5: {}",
        lines[0]
    );
    assert!(
        lines[0].contains(&format!(
            r#"{{trace_id="{trace_id}",span_id="{span_id}"}} 0.3 "#
        )),
        "{}",
        lines[0]
    );
    let items = exemplar_lines(&text, "work_items");
    assert_eq!(items.len(), 1, "{text}");
    assert!(
        items[0].contains(r#"le="100.0""#) && items[0].contains(&items_trace),
        "{}",
        items[0]
    );
    parts.into_guard().shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_on_keeps_measurements_outside_spans() {
    let otlp = FakeOtlp::start().await;
    let parts = builder(&otlp, "always_on")
        .with_exemplar_filter(ExemplarFilter::AlwaysOn)
        .build()
        .unwrap();
    let app = parts.instrument(routes()).unwrap();
    record_in_span(&parts, 0.3);
    let text = scrape(&app, Some(OPENMETRICS)).await;
    // The 9 s measurement made outside any span: an exemplar without ids.
    assert!(
        exemplar_lines(&text, "work_duration_seconds")
            .iter()
            .any(|l| l.contains(r#"le="10.0"} 2 # {} 9 "#)),
        "{text}"
    );
    parts.into_guard().shutdown().await.unwrap();
}

#[test]
fn the_exemplar_filter_is_read_from_the_environment() {
    let parse = |value| common::try_config(&[("OTEL_METRICS_EXEMPLAR_FILTER", value)]);
    assert_eq!(
        parse("always_off").unwrap().exemplar_filter,
        ExemplarFilter::AlwaysOff
    );
    assert_eq!(
        parse("always_on").unwrap().exemplar_filter,
        ExemplarFilter::AlwaysOn
    );
    assert_eq!(
        parse("trace_based").unwrap().exemplar_filter,
        ExemplarFilter::TraceBased
    );
    assert_eq!(
        parse("").unwrap().exemplar_filter,
        ExemplarFilter::TraceBased
    );
    let err = parse("sometimes").unwrap_err().to_string();
    assert!(
        err.contains("OTEL_METRICS_EXEMPLAR_FILTER")
            && err.contains("sometimes")
            && err.contains("trace_based, always_on or always_off"),
        "{err}"
    );
}
