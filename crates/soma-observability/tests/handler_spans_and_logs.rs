//! Handler `tracing` spans and logs join the request's trace, as a real OTLP receiver sees them.
//!
//! Own test binary: it sets a `tracing` default subscriber, and `tracing`'s callsite interest
//! cache is shared by every test of a process.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use common::{build, hex, otlp_config, send, FakeOtlp};

const WAIT: Duration = Duration::from_secs(10);

fn routes() -> Router {
    Router::new().route("/users/{id}", get(common::load_user))
}

fn trace_id_of(headers: &axum::http::HeaderMap) -> String {
    let value = headers.get("traceresponse").unwrap().to_str().unwrap();
    value.split('-').nth(1).unwrap().to_owned()
}

#[tokio::test(flavor = "current_thread")]
async fn handler_spans_and_logs_join_the_request_trace() {
    let otlp = FakeOtlp::start().await;
    let parts = build("joined", otlp_config(&otlp, "http/protobuf"));
    let app = parts.instrument(routes()).unwrap();
    let _default = tracing::subscriber::set_default(parts.subscriber());
    let (_, headers, _) = send(&app, Request::get("/users/9").body(Body::empty()).unwrap()).await;
    let trace_id = trace_id_of(&headers);
    let spans = otlp
        .wait_for_spans(WAIT, |s| {
            s.iter().any(|(_, s)| s.name == "load_user")
                && s.iter().any(|(_, s)| s.name == "GET /users/{id}")
        })
        .await;
    let server = &spans
        .iter()
        .find(|(_, s)| s.name == "GET /users/{id}")
        .unwrap()
        .1;
    let child = &spans.iter().find(|(_, s)| s.name == "load_user").unwrap().1;
    assert_eq!(hex(&child.trace_id), trace_id);
    assert_eq!(
        child.parent_span_id, server.span_id,
        "handler span is a child of the server span"
    );
    let logs = otlp
        .wait_for_logs(WAIT, |logs| {
            logs.iter()
                .any(|l| format!("{:?}", l.body).contains("loaded user"))
        })
        .await;
    let log = logs
        .iter()
        .find(|l| format!("{:?}", l.body).contains("loaded user"))
        .unwrap();
    assert_eq!(
        hex(&log.trace_id),
        trace_id,
        "the log carries the request's trace id"
    );
    assert_eq!(log.span_id, child.span_id, "and the span it was emitted in");
}
