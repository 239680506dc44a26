//! A panic is an error in every signal, in the handler or in the response body, over a real
//! socket and as a real OTLP receiver sees it; a client that goes away is still a cancellation.
//!
//! Own test binary: it sets a `tracing` default subscriber (current-thread runtimes, so the
//! server's tasks run where it is set), and `tracing`'s callsite interest cache is shared by
//! every test of a process: tests that panic without a subscriber are in
//! `panic_responses.rs`.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use common::{build, hex, otlp_config, panic_routes, sample, serve, string_attr, FakeOtlp};
use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as OtlpStatus;
use opentelemetry_proto::tonic::trace::v1::Span;

const WAIT: Duration = Duration::from_secs(10);
const CANCELLED: &str = "request cancelled before a response was produced";

fn trace_id_of(response: &reqwest::Response) -> String {
    let value = response.headers()["traceresponse"].to_str().unwrap();
    value.split('-').nth(1).unwrap().to_owned()
}

fn assert_panicked(span: &Span, message: &str) {
    let status = span.status.as_ref().expect("span status");
    assert_eq!(status.code, OtlpStatus::Error as i32, "{span:?}");
    assert!(status.message.contains(message), "{span:?}");
    assert_eq!(
        string_attr(&span.attributes, "error.type").as_deref(),
        Some("panic")
    );
    let exception = span
        .events
        .iter()
        .find(|e| e.name == "exception")
        .unwrap_or_else(|| panic!("no exception event: {span:?}"));
    assert_eq!(
        string_attr(&exception.attributes, "exception.type").as_deref(),
        Some("panic")
    );
    assert!(string_attr(&exception.attributes, "exception.message")
        .unwrap()
        .contains(message));
    assert!(
        !span.events.iter().any(|e| e.name == CANCELLED),
        "a panic is not a cancellation: {span:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn panics_in_a_handler_or_a_body_are_errors_in_every_signal() {
    let otlp = FakeOtlp::start().await;
    let parts = build("panics", otlp_config(&otlp, "http/protobuf"));
    let _default = tracing::subscriber::set_default(parts.subscriber());
    let go = std::sync::Arc::new(tokio::sync::Notify::new());
    let (addr, server) = serve(parts.instrument(panic_routes(go.clone())).unwrap()).await;
    let client = reqwest::Client::new();

    // A panicking handler: a 500, not an empty reply.
    let response = client
        .get(format!("http://{addr}/panic"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let handler_trace = trace_id_of(&response);
    assert!(response.bytes().await.unwrap().is_empty());

    // A body that panics after its first chunk: the headers (200) went out, the body is
    // aborted, not ended as if it were complete.
    let mut response = client
        .get(format!("http://{addr}/stream-panic"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body_trace = trace_id_of(&response);
    assert_eq!(
        response.chunk().await.unwrap().as_deref(),
        Some(&b"first chunk"[..])
    );
    go.notify_one();
    assert!(
        response.chunk().await.is_err(),
        "the body must not look complete"
    );

    // The server survives both and keeps answering.
    assert_eq!(
        common::get_status(&client, &format!("http://{addr}/ok")).await,
        200
    );

    check_metrics(&client, addr).await;
    check_spans(&otlp, &handler_trace, &body_trace).await;
    check_logs(&otlp, &handler_trace, &body_trace).await;
    server.abort();
}

/// Both panics are counted with `error_type="panic"` and the status sent, none is in flight.
async fn check_metrics(client: &reqwest::Client, addr: std::net::SocketAddr) {
    let metrics = common::scrape_socket(client, addr).await;
    let count = |route: &str, status: &str| {
        sample(
            &metrics,
            "http_server_request_duration_seconds_count",
            &[
                &format!(r#"http_route="{route}""#),
                &format!(r#"http_response_status_code="{status}""#),
                r#"error_type="panic""#,
            ],
        )
    };
    assert_eq!(count("/panic", "500"), Some(1.0), "{metrics}");
    assert_eq!(count("/stream-panic", "200"), Some(1.0), "{metrics}");
    assert_eq!(
        sample(&metrics, "http_server_active_requests", &[]),
        Some(0.0),
        "{metrics}"
    );
}

/// Each server span is errored, with the panic's exception event and no cancellation event.
async fn check_spans(otlp: &FakeOtlp, handler_trace: &str, body_trace: &str) {
    let [handler, body] =
        common::wait_for_named_spans(otlp, WAIT, ["GET /panic", "GET /stream-panic"]).await;
    assert_eq!(hex(&handler.trace_id), handler_trace);
    assert_eq!(
        string_attr(&handler.attributes, "http.response.status_code").as_deref(),
        Some("500")
    );
    assert_panicked(&handler, "boom: the handler exploded");
    assert_eq!(hex(&body.trace_id), body_trace);
    assert_eq!(
        string_attr(&body.attributes, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_panicked(&body, "boom: the body exploded");
}

/// One ERROR event per panic, with the request's trace id and the panic message.
async fn check_logs(otlp: &FakeOtlp, handler_trace: &str, body_trace: &str) {
    let logs = otlp
        .wait_for_logs(WAIT, |logs| {
            [handler_trace, body_trace]
                .iter()
                .all(|trace| logs.iter().any(|l| hex(&l.trace_id) == *trace))
        })
        .await;
    for (trace, message) in [
        (handler_trace, "boom: the handler exploded"),
        (body_trace, "boom: the body exploded"),
    ] {
        let log = logs
            .iter()
            .find(|l| hex(&l.trace_id) == trace)
            .unwrap_or_else(|| panic!("no log in trace {trace}: {logs:?}"));
        assert_eq!(log.severity_number, SeverityNumber::Error as i32, "{log:?}");
        assert!(
            string_attr(&log.attributes, "exception.message")
                .unwrap_or_default()
                .contains(message),
            "{log:?}"
        );
        assert_eq!(
            string_attr(&log.attributes, "error.type").as_deref(),
            Some("panic"),
            "{log:?}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_that_goes_away_is_a_cancellation_not_a_panic() {
    let otlp = FakeOtlp::start().await;
    let parts = build("cancel", otlp_config(&otlp, "http/protobuf"));
    let _default = tracing::subscriber::set_default(parts.subscriber());
    let started = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let app = common::one_route(&parts, "/hang", common::hang(started.clone()));
    let request = tokio::spawn(tower::ServiceExt::oneshot(
        app,
        Request::get("/hang").body(Body::empty()).unwrap(),
    ));
    let _running = started.acquire().await.unwrap();
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    let spans = otlp
        .wait_for_spans(WAIT, |s| s.iter().any(|(_, s)| s.name == "GET /hang"))
        .await;
    let span = &spans.iter().find(|(_, s)| s.name == "GET /hang").unwrap().1;
    assert!(span.events.iter().any(|e| e.name == CANCELLED), "{span:?}");
    assert!(
        !span.events.iter().any(|e| e.name == "exception"),
        "{span:?}"
    );
    // The request did not complete: an error of its own kind, never a panic.
    assert_eq!(
        span.status.as_ref().map_or(0, |s| s.code),
        OtlpStatus::Error as i32
    );
    assert_eq!(
        string_attr(&span.attributes, "error.type").as_deref(),
        Some("cancelled")
    );
    parts.logger_provider().unwrap().force_flush().unwrap();
    assert!(
        !otlp
            .logs()
            .iter()
            .any(|l| l.severity_number == SeverityNumber::Error as i32),
        "a cancellation logs no error"
    );
}
