//! Requests the sampler drops: their server span is not started in the SDK (see
//! `http/state.rs`, `unsampled_span`), yet what the handler's context propagates downstream, the
//! `traceresponse` header and what is exported are exactly what the SDK's tracer gives.

mod common;

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use common::{build, otlp_config, send, FakeOtlp};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use soma_observability::config::{ParentBasedRoot, Sampler};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// A handler that answers with what its context would propagate to a downstream call:
/// `traceparent`, `tracestate` and `baggage` as a propagator injects them, and whether the
/// current span records.
fn routes() -> Router {
    Router::new().route(
        "/work",
        get(|| async {
            let cx = opentelemetry::Context::current();
            let mut carrier = HashMap::new();
            TraceContextPropagator::new().inject_context(&cx, &mut carrier);
            BaggagePropagator::new().inject_context(&cx, &mut carrier);
            let field = |name: &str| carrier.get(name).cloned().unwrap_or_default();
            format!(
                "{}|{}|{}|{}",
                field("traceparent"),
                field("tracestate"),
                field("baggage"),
                cx.span().is_recording()
            )
        }),
    )
}

/// What one request propagated downstream, and its `traceresponse`.
struct Seen {
    traceparent: String,
    tracestate: String,
    baggage: String,
    recording: bool,
    traceresponse: String,
}

async fn request(app: &Router, headers: &[(&str, &str)]) -> Seen {
    let mut request = Request::get("/work");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (status, response_headers, body) = send(app, request.body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let body = String::from_utf8(body.to_vec()).unwrap();
    let fields: Vec<&str> = body.split('|').collect();
    assert_eq!(fields.len(), 4, "{body}");
    Seen {
        traceparent: fields[0].to_owned(),
        tracestate: fields[1].to_owned(),
        baggage: fields[2].to_owned(),
        recording: fields[3] == "true",
        traceresponse: traceresponse(&response_headers),
    }
}

fn traceresponse(headers: &HeaderMap) -> String {
    headers
        .get("traceresponse")
        .expect("a traceresponse header")
        .to_str()
        .unwrap()
        .to_owned()
}

/// `00-{trace}-{span}-{flags}` split, with its ids checked to be valid.
fn ids(traceparent: &str) -> (String, String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00", "{traceparent}");
    assert_eq!(parts[1].len(), 32, "{traceparent}");
    assert_eq!(parts[2].len(), 16, "{traceparent}");
    assert_ne!(parts[1], "0".repeat(32), "{traceparent}");
    assert_ne!(parts[2], "0".repeat(16), "{traceparent}");
    (
        parts[1].to_owned(),
        parts[2].to_owned(),
        parts[3].to_owned(),
    )
}

async fn app_with(sampler: Sampler) -> (FakeOtlp, soma_observability::ObservabilityParts, Router) {
    let otlp = FakeOtlp::start().await;
    let mut config = otlp_config(&otlp, "http/protobuf");
    config.sampler = sampler;
    let parts = build("unsampled", config);
    let app = parts.instrument(routes()).unwrap();
    (otlp, parts, app)
}

/// Nothing was exported, once every span the provider had is flushed.
fn nothing_exported(otlp: &FakeOtlp, parts: &soma_observability::ObservabilityParts) {
    parts.tracer_provider().unwrap().force_flush().unwrap();
    assert!(otlp.spans().is_empty(), "{:?}", otlp.spans());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_parent_keeps_its_trace_and_trace_state_downstream() {
    let (otlp, parts, app) = app_with(Sampler::ParentBased(ParentBasedRoot::AlwaysOn)).await;
    let parent = format!("00-{TRACE_ID}-{PARENT_ID}-00");
    let seen = request(
        &app,
        &[
            ("traceparent", &parent),
            ("tracestate", "vendor=value"),
            ("baggage", "user=alice"),
        ],
    )
    .await;
    let (trace, span, flags) = ids(&seen.traceparent);
    assert_eq!(trace, TRACE_ID);
    assert_ne!(span, PARENT_ID, "the server span has a span id of its own");
    assert_eq!(flags, "00");
    assert_eq!(seen.tracestate, "vendor=value");
    assert_eq!(seen.baggage, "user=alice");
    assert!(!seen.recording);
    assert_eq!(seen.traceresponse, seen.traceparent);
    nothing_exported(&otlp, &parts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_off_drops_a_sampled_parent_but_keeps_its_trace_id() {
    let (otlp, parts, app) = app_with(Sampler::AlwaysOff).await;
    let parent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let seen = request(&app, &[("traceparent", &parent)]).await;
    let (trace, span, flags) = ids(&seen.traceparent);
    assert_eq!(trace, TRACE_ID);
    assert_ne!(span, PARENT_ID);
    assert_eq!(flags, "00");
    assert_eq!(seen.tracestate, "");
    assert_eq!(seen.traceresponse, seen.traceparent);
    nothing_exported(&otlp, &parts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_root_gets_a_new_trace_per_request() {
    let (otlp, parts, app) = app_with(Sampler::ParentBased(ParentBasedRoot::AlwaysOff)).await;
    let first = request(&app, &[]).await;
    let second = request(&app, &[("baggage", "tenant=blue")]).await;
    let (first_trace, first_span, first_flags) = ids(&first.traceparent);
    let (second_trace, second_span, _) = ids(&second.traceparent);
    assert_eq!(first_flags, "00");
    assert_ne!(first_trace, second_trace);
    assert_ne!(first_span, second_span);
    assert_eq!(
        second.baggage, "tenant=blue",
        "baggage without a traceparent"
    );
    assert_eq!(first.traceresponse, first.traceparent);
    nothing_exported(&otlp, &parts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_parent_is_still_recorded_under_parent_based_sampling() {
    let (otlp, parts, app) = app_with(Sampler::ParentBased(ParentBasedRoot::AlwaysOff)).await;
    let parent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let seen = request(&app, &[("traceparent", &parent), ("baggage", "user=bob")]).await;
    let (trace, span, flags) = ids(&seen.traceparent);
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE_ID, "01"));
    assert!(seen.recording);
    assert_eq!(seen.baggage, "user=bob");
    let spans = otlp
        .wait_for_spans(std::time::Duration::from_secs(10), |spans| {
            !spans.is_empty()
        })
        .await;
    assert_eq!(spans.len(), 1);
    assert_eq!(common::hex(&spans[0].1.span_id), span);
    assert_eq!(common::hex(&spans[0].1.parent_span_id), PARENT_ID);
    drop(parts);
}
