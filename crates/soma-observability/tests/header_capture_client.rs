//! Chosen headers on `HttpClient` spans: the `..._CLIENT_*` lists that setup installs, and a
//! client's own lists from code. Its own file: `setup_observability` sets globals.

mod common;

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use common::strings;
use common::FakeOtlp;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use soma_observability::http::headers::REDACTED;
use soma_observability::http::HeaderCapture;
use soma_observability::{setup_observability, HttpClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, told in order
async fn client_spans_record_the_installed_lists_and_their_own() {
    let otlp = FakeOtlp::start().await;
    let endpoint = otlp.http_endpoint();
    let app = Router::new().route(
        "/v1/evaluate",
        get(|| async {
            (
                [
                    ("retry-after", "3"),
                    ("set-cookie", "session=s3cr3t"),
                    ("x-policy", "allow"),
                ],
                "allow",
            )
        }),
    );
    let (app, mut guard) = temp_env::with_vars(
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", Some(endpoint.as_str())),
            ("OTEL_BSP_SCHEDULE_DELAY", Some("50")),
            ("OTEL_LOGS_EXPORTER", Some("none")),
            (
                "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST",
                Some("x-request-id,Proxy-Authorization"),
            ),
            (
                "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE",
                Some("Retry-After,set-cookie"),
            ),
        ],
        || setup_observability("caller", app).unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/evaluate", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // Created after setup: the installed client lists.
    let client = HttpClient::new(reqwest::Client::new());
    let response = client
        .send(
            client
                .get(&url)
                .header("x-request-id", "req-7")
                .header("proxy-authorization", "Basic cGFzcw=="),
        )
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "allow");
    // Its own lists, from code.
    let own = HttpClient::new(reqwest::Client::new())
        .with_captured_headers(&HeaderCapture {
            client_response: vec!["X-Policy".into()],
            ..HeaderCapture::default()
        })
        .unwrap();
    own.send(own.get(&url).header("x-request-id", "req-8"))
        .await
        .unwrap();

    let spans = otlp
        .wait_for_spans(Duration::from_secs(10), |spans| {
            spans
                .iter()
                .filter(|(_, s)| s.kind == SpanKind::Client as i32)
                .count()
                == 2
        })
        .await;
    let clients: Vec<_> = spans
        .iter()
        .filter(|(_, s)| s.kind == SpanKind::Client as i32)
        .map(|(_, s)| &s.attributes)
        .collect();
    let installed = clients
        .iter()
        .find(|a| strings(a, "http.request.header.x-request-id").is_some())
        .unwrap();
    assert_eq!(
        strings(installed, "http.request.header.x-request-id").unwrap(),
        ["req-7"]
    );
    assert_eq!(
        strings(installed, "http.request.header.proxy-authorization").unwrap(),
        [REDACTED]
    );
    assert_eq!(
        strings(installed, "http.response.header.retry-after").unwrap(),
        ["3"]
    );
    assert_eq!(
        strings(installed, "http.response.header.set-cookie").unwrap(),
        [REDACTED]
    );
    let own = clients
        .iter()
        .find(|a| strings(a, "http.response.header.x-policy").is_some())
        .unwrap();
    assert_eq!(
        strings(own, "http.response.header.x-policy").unwrap(),
        ["allow"]
    );
    assert_eq!(strings(own, "http.request.header.x-request-id"), None);
    // Server lists were not configured: the server spans capture nothing.
    assert!(spans
        .iter()
        .filter(|(_, s)| s.kind == SpanKind::Server as i32)
        .all(|(_, s)| !s.attributes.iter().any(|kv| kv.key.contains(".header."))));
    assert!(!String::from_utf8_lossy(&otlp.raw_bytes()).contains("cGFzcw"));
    guard.shutdown().await.unwrap();
}
