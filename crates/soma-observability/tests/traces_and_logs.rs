//! Spans and logs as they arrive at a real OTLP receiver (gRPC and HTTP/protobuf).

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use common::{build, hex, otlp_config, send, string_attr, Behaviour, FakeOtlp};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as OtlpStatus;

const WAIT: Duration = Duration::from_secs(10);

fn routes() -> Router {
    Router::new()
        .route("/users/{id}", get(common::load_user))
        .route("/boom", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route("/healthz", get(|| async { "ok" }))
}

/// The trace id named by a `traceresponse` header.
fn trace_id_of(headers: &axum::http::HeaderMap) -> String {
    let value = headers
        .get("traceresponse")
        .expect("traceresponse header")
        .to_str()
        .unwrap();
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00");
    parts[1].to_owned()
}

async fn server_span_has_semantic_conventions(protocol: &str) {
    let otlp = FakeOtlp::start().await;
    let parts = build("users", otlp_config(&otlp, protocol));
    let app = parts.instrument(routes()).unwrap();
    let request = Request::get("/users/42?q=rust&token=s3cr3t-token&api_key=k3y-value")
        .header("user-agent", "curl/8.0")
        .header("authorization", "Bearer auth-secret-value")
        .header("cookie", "session=cookie-secret-value")
        .header("x-api-key", "header-api-key-value")
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = send(&app, request).await;
    assert_eq!(status, StatusCode::OK);
    let trace_id = trace_id_of(&headers);
    let spans = otlp
        .wait_for_spans(WAIT, |spans| {
            spans.iter().any(|(_, s)| s.name == "GET /users/{id}")
        })
        .await;
    let (service, span) = spans
        .iter()
        .find(|(_, s)| s.name == "GET /users/{id}")
        .unwrap();
    assert_eq!(service, "users");
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(hex(&span.trace_id), trace_id);
    let attr = |key| string_attr(&span.attributes, key);
    assert_eq!(attr("http.request.method").as_deref(), Some("GET"));
    assert_eq!(attr("http.route").as_deref(), Some("/users/{id}"));
    assert_eq!(attr("url.path").as_deref(), Some("/users/42"));
    assert_eq!(attr("url.scheme").as_deref(), Some("http"));
    assert_eq!(attr("http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr("network.protocol.version").as_deref(), Some("1.1"));
    assert_eq!(attr("user_agent.original").as_deref(), Some("curl/8.0"));
    assert_eq!(
        attr("url.query").as_deref(),
        Some("q=rust&token=REDACTED&api_key=REDACTED")
    );
    assert_ne!(
        span.status.as_ref().map_or(0, |s| s.code),
        OtlpStatus::Error as i32
    );
    let raw = String::from_utf8_lossy(&otlp.raw_bytes()).into_owned();
    for secret in [
        "s3cr3t-token",
        "k3y-value",
        "auth-secret-value",
        "cookie-secret-value",
        "header-api-key-value",
    ] {
        assert!(!raw.contains(secret), "{secret} left the process");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_span_over_http_protobuf() {
    server_span_has_semantic_conventions("http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_span_over_grpc() {
    server_span_has_semantic_conventions("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_traceparent_makes_the_server_span_a_child() {
    let otlp = FakeOtlp::start().await;
    let parts = build("child", otlp_config(&otlp, "http/protobuf"));
    let app = parts.instrument(routes()).unwrap();
    let parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let request = Request::get("/users/1")
        .header("traceparent", format!("00-{parent_trace}-{parent_span}-01"))
        .header("baggage", "tenant=acme")
        .body(Body::empty())
        .unwrap();
    let (_, headers, _) = send(&app, request).await;
    assert_eq!(trace_id_of(&headers), parent_trace);
    let spans = otlp
        .wait_for_spans(WAIT, |s| s.iter().any(|(_, s)| s.name == "GET /users/{id}"))
        .await;
    let (_, span) = spans
        .iter()
        .find(|(_, s)| s.name == "GET /users/{id}")
        .unwrap();
    assert_eq!(hex(&span.trace_id), parent_trace);
    assert_eq!(hex(&span.parent_span_id), parent_span);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_traceparent_starts_a_fresh_valid_trace() {
    let otlp = FakeOtlp::start().await;
    let parts = build("malformed", otlp_config(&otlp, "http/protobuf"));
    let app = parts.instrument(routes()).unwrap();
    let id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let cases = [
        String::new(),
        "garbage".to_owned(),
        format!("ff-{id}-00f067aa0ba902b7-01"), // forbidden version
        format!("00-{}-00f067aa0ba902b7-01", id.to_uppercase()), // upper case
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_owned(), // zero trace id
        format!("00-{id}-0000000000000000-01"), // zero span id
        format!("00-{}-00f067aa0ba902b7-01", &id[..31]), // short trace id
        format!("00-{id}0-00f067aa0ba902b7-01"), // long trace id
        format!("00-{id}-00f067aa0ba902b-01"),  // short span id
        format!("00-{id}-00f067aa0ba902b7-01-extra"), // extra field on version 00
        format!("00-{id}-00f067aa0ba902b7-0x"), // bad flags
        format!("00_{id}_00f067aa0ba902b7_01"), // wrong separators
        format!("00-{id}-00f067aa0ba902b7-01\u{7f}"),
        "x".repeat(8192),
    ];
    for traceparent in &cases {
        let mut request = Request::get("/users/1");
        if let Ok(value) = axum::http::HeaderValue::from_str(traceparent) {
            request = request.header("traceparent", value);
        }
        let request = request
            .header("tracestate", "a=".to_owned() + &"b".repeat(8192))
            .body(Body::empty())
            .unwrap();
        let (status, headers, _) = send(&app, request).await;
        assert_eq!(status, StatusCode::OK, "{traceparent}");
        let trace_id = trace_id_of(&headers);
        assert_eq!(trace_id.len(), 32);
        assert_ne!(trace_id, "0".repeat(32), "{traceparent}");
        assert_ne!(trace_id, id, "{traceparent} was accepted");
    }
    // Oversized baggage (100 members, 8 KB): answered normally, with a fresh valid trace.
    let baggage: Vec<String> = (0..100)
        .map(|i| format!("k{i}={}", "v".repeat(80)))
        .collect();
    let request = Request::get("/users/1")
        .header("baggage", baggage.join(","))
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = send(&app, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(trace_id_of(&headers).len(), 32);
    // Duplicated headers: answered normally, with a valid trace.
    let request = Request::get("/users/1")
        .header("traceparent", format!("00-{id}-00f067aa0ba902b7-01"))
        .header("traceparent", format!("00-{id}-00f067aa0ba902b8-01"))
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = send(&app, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(trace_id_of(&headers).len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_set_span_status_and_error_type() {
    let otlp = FakeOtlp::start().await;
    let parts = build("errors", otlp_config(&otlp, "http/protobuf"));
    let app = parts.instrument(routes()).unwrap();
    send(&app, Request::get("/boom").body(Body::empty()).unwrap()).await;
    send(&app, Request::get("/missing").body(Body::empty()).unwrap()).await;
    send(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    let spans = otlp.wait_for_spans(WAIT, |s| s.len() >= 2).await;
    let boom = &spans.iter().find(|(_, s)| s.name == "GET /boom").unwrap().1;
    assert_eq!(boom.status.as_ref().unwrap().code, OtlpStatus::Error as i32);
    assert_eq!(
        string_attr(&boom.attributes, "error.type").as_deref(),
        Some("500")
    );
    let missing = &spans.iter().find(|(_, s)| s.name == "GET").unwrap().1;
    assert_eq!(
        string_attr(&missing.attributes, "http.response.status_code").as_deref(),
        Some("404")
    );
    assert_ne!(
        missing.status.as_ref().map_or(0, |s| s.code),
        OtlpStatus::Error as i32,
        "4xx is not a server error"
    );
    assert!(string_attr(&missing.attributes, "http.route").is_none());
    // Give a probe span time to arrive if one were (wrongly) created.
    parts.tracer_provider().unwrap().force_flush().unwrap();
    assert!(!otlp.spans().iter().any(|(_, s)| s.name.contains("healthz")));
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_delivers_pending_spans_on_a_current_thread_runtime() {
    for protocol in ["grpc", "http/protobuf"] {
        let otlp = FakeOtlp::start().await;
        let mut config = otlp_config(&otlp, protocol);
        config.traces.schedule_delay = Duration::from_secs(60); // only shutdown can flush
        let parts = build("flush", config);
        let app = parts.instrument(routes()).unwrap();
        for _ in 0..25 {
            send(&app, Request::get("/users/1").body(Body::empty()).unwrap()).await;
        }
        assert!(otlp.spans().is_empty());
        let started = Instant::now();
        let mut guard = parts.into_guard();
        guard.shutdown().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{protocol}: shutdown took {:?}",
            started.elapsed()
        );
        let names: Vec<_> = otlp
            .spans()
            .into_iter()
            .filter(|(_, s)| s.name == "GET /users/{id}")
            .collect();
        assert_eq!(
            names.len(),
            25,
            "{protocol}: every span of a completed request arrives"
        );
        guard.shutdown().await.unwrap(); // twice is fine
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn shutdown_delivers_pending_spans_on_a_one_worker_runtime() {
    for protocol in ["grpc", "http/protobuf"] {
        let otlp = FakeOtlp::start().await;
        let mut config = otlp_config(&otlp, protocol);
        config.traces.schedule_delay = Duration::from_secs(60);
        let parts = build("one-worker", config);
        let app = parts.instrument(routes()).unwrap();
        for _ in 0..10 {
            send(&app, Request::get("/users/1").body(Body::empty()).unwrap()).await;
        }
        let started = Instant::now();
        parts.into_guard().shutdown().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{protocol}: {:?}",
            started.elapsed()
        );
        assert_eq!(otlp.spans().len(), 10, "{protocol}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_or_hung_collector_delays_neither_requests_nor_shutdown() {
    // Down: nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let hung = FakeOtlp::start().await;
    hung.set_behaviour(Behaviour::Hang);
    for (label, endpoint, protocol) in [
        (
            "down/http",
            format!("http://{closed_addr}"),
            "http/protobuf",
        ),
        ("down/grpc", format!("http://{closed_addr}"), "grpc"),
        ("hung/http", hung.http_endpoint(), "http/protobuf"),
        ("hung/grpc", hung.grpc_endpoint(), "grpc"),
    ] {
        let config = common::config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_BSP_SCHEDULE_DELAY", "20"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
        ]);
        let parts =
            common::build_with_shutdown_timeout("resilient", config, Duration::from_secs(2));
        let app = parts.instrument(routes()).unwrap();
        let started = Instant::now();
        for _ in 0..200 {
            assert_eq!(
                send(&app, Request::get("/users/1").body(Body::empty()).unwrap())
                    .await
                    .0,
                StatusCode::OK
            );
        }
        let per_request = started.elapsed() / 200;
        assert!(
            per_request < Duration::from_millis(5),
            "{label}: {per_request:?} per request"
        );
        let shutdown = common::timed_shutdown(parts).await;
        assert!(
            shutdown.took < Duration::from_millis(2600),
            "{label}: {shutdown:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_requests_still_get_a_trace_id_but_export_nothing() {
    let otlp = FakeOtlp::start().await;
    let mut config = otlp_config(&otlp, "http/protobuf");
    config.sampler = soma_observability::config::Sampler::AlwaysOff;
    let parts = build("unsampled", config);
    let app = parts.instrument(routes()).unwrap();
    let (_, headers, _) = send(&app, Request::get("/users/1").body(Body::empty()).unwrap()).await;
    let value = headers
        .get("traceresponse")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(value.ends_with("-00"), "{value}");
    parts.tracer_provider().unwrap().force_flush().unwrap();
    assert!(otlp.spans().is_empty());
}
