//! `ObservabilityParts::http_client` on the `build()` path, where no global is set: the client's
//! histogram lands in the parts' `/metrics`, its span reaches the parts' exporter, and the callee
//! (served with the same parts) continues its trace.

mod common;

use std::time::Duration;

use axum::routing::get;
use common::FakeOtlp;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use soma_observability::opentelemetry::global;
use soma_observability::opentelemetry::trace::{Span as _, Tracer as _};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_from_the_parts_records_without_globals() {
    let otlp = FakeOtlp::start().await;
    let parts = common::build("caller", common::otlp_config(&otlp, "http/protobuf"));
    let callee = common::one_route(&parts, "/v1/evaluate", get(|| async { "allow" }));
    let (addr, _server) = common::serve(callee).await;

    let client = parts.http_client(reqwest::Client::new());
    let response = client
        .send(client.get(format!("http://{addr}/v1/evaluate")))
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "allow");

    let metrics = parts.render_metrics().unwrap();
    assert_eq!(
        common::sample(
            &metrics,
            "http_client_request_duration_seconds_count",
            &[
                r#"http_request_method="GET""#,
                r#"http_response_status_code="200""#
            ],
        ),
        Some(1.0),
        "{metrics}"
    );
    let is = |kind: SpanKind| move |s: &Span| s.kind == kind as i32;
    let spans = otlp
        .wait_for_spans(Duration::from_secs(10), |spans| {
            spans.iter().any(|(_, s)| is(SpanKind::Client)(s))
                && spans.iter().any(|(_, s)| is(SpanKind::Server)(s))
        })
        .await;
    let client_span = &spans
        .iter()
        .find(|(_, s)| is(SpanKind::Client)(s))
        .unwrap()
        .1;
    let server_span = &spans
        .iter()
        .find(|(_, s)| is(SpanKind::Server)(s))
        .unwrap()
        .1;
    assert_eq!(client_span.name, "GET");
    assert_eq!(server_span.name, "GET /v1/evaluate");
    assert_eq!(
        server_span.trace_id, client_span.trace_id,
        "the callee joined the trace"
    );
    assert_eq!(server_span.parent_span_id, client_span.span_id);
    let global_span = global::tracer("probe").start("probe");
    assert!(
        !global_span.span_context().is_valid(),
        "build() set no global tracer provider"
    );
}
