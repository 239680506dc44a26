//! Chosen headers on server spans (`OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*`), over a real
//! socket, read back from the real OTLP receiver.

mod common;

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use axum::routing::get;
use axum::Router;
use common::strings;
use common::FakeOtlp;
use opentelemetry_proto::tonic::trace::v1::Span;
use soma_observability::http::headers::{MAX_VALUES_PER_HEADER, REDACTED};
use soma_observability::http::HeaderCapture;
use soma_observability::{ConfigError, Observability, ObservabilityParts};

fn captured_bytes(span: &Span) -> usize {
    span.attributes
        .iter()
        .filter(|kv| {
            kv.key.starts_with("http.request.header.")
                || kv.key.starts_with("http.response.header.")
        })
        .map(|kv| {
            strings(&span.attributes, &kv.key)
                .unwrap()
                .iter()
                .map(String::len)
                .sum::<usize>()
        })
        .sum()
}

fn parts(otlp: &FakeOtlp, extra: &[(&str, &str)]) -> ObservabilityParts {
    let endpoint = otlp.http_endpoint();
    let mut vars = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_LOGS_EXPORTER", "none"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "64"),
    ];
    vars.extend_from_slice(extra);
    common::build("headers", common::config(&vars))
}

/// Serves `/v1/items` (answering with a few response headers) through `parts` on 127.0.0.1.
async fn serve(parts: &ObservabilityParts) -> String {
    let app: Router = parts
        .instrument(Router::new().route(
            "/v1/items",
            get(|| async {
                let mut headers = HeaderMap::new();
                headers.append("x-served-by", HeaderValue::from_static("node-a"));
                headers.append("x-served-by", HeaderValue::from_static("node-b"));
                headers.append("set-cookie", HeaderValue::from_static("session=s3cr3t"));
                headers.append("x-not-listed", HeaderValue::from_static("nope"));
                (headers, "ok")
            }),
        ))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1/items")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_headers_become_string_arrays_and_credentials_are_redacted() {
    let otlp = FakeOtlp::start().await;
    let parts = parts(
        &otlp,
        &[
            (
                "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
                "X-Request-Id, accept,Authorization,COOKIE,x-api-key,X-Tenant,x-long,x-missing",
            ),
            (
                "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE",
                "X-Served-By,set-cookie",
            ),
            (
                "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS",
                "x-tenant",
            ),
        ],
    );
    let url = serve(&parts).await;
    let response = reqwest::Client::new()
        .get(&url)
        .header("x-request-id", "req-42")
        .header("accept", "text/plain")
        .header("accept", "application/json")
        .header("authorization", "Bearer top-secret")
        .header("cookie", "session=s3cr3t")
        .header("x-api-key", "k-123")
        .header("x-tenant", "acme")
        .header("x-long", "a".repeat(200))
        .header("x-unlisted", "hidden")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "ok");

    let spans = otlp
        .wait_for_spans(Duration::from_secs(10), |spans| !spans.is_empty())
        .await;
    let attrs = &spans[0].1.attributes;
    let get = |key: &str| strings(attrs, key);
    assert_eq!(get("http.request.header.x-request-id").unwrap(), ["req-42"]);
    assert_eq!(
        get("http.request.header.accept").unwrap(),
        ["text/plain", "application/json"],
        "one element per header line"
    );
    for key in ["authorization", "cookie", "x-api-key", "x-tenant"] {
        assert_eq!(
            get(&format!("http.request.header.{key}")).unwrap(),
            [REDACTED],
            "{key}"
        );
    }
    assert_eq!(get("http.request.header.x-long").unwrap(), ["a".repeat(64)]);
    assert_eq!(get("http.request.header.x-missing"), None);
    assert_eq!(get("http.request.header.x-unlisted"), None);
    assert_eq!(
        get("http.response.header.x-served-by").unwrap(),
        ["node-a", "node-b"]
    );
    assert_eq!(get("http.response.header.set-cookie").unwrap(), [REDACTED]);
    assert_eq!(get("http.response.header.x-not-listed"), None);
    let raw = String::from_utf8_lossy(&otlp.raw_bytes()).into_owned();
    for secret in ["top-secret", "s3cr3t", "k-123", "acme", "hidden"] {
        assert!(!raw.contains(secret), "{secret} was exported");
    }
    // Nothing captured becomes a metric label.
    let metrics = parts.render_metrics().unwrap();
    assert!(!metrics.contains("req-42") && !metrics.contains("x_request_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_headers_costs_a_bounded_attribute() {
    let otlp = FakeOtlp::start().await;
    let parts = parts(
        &otlp,
        &[(
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
            "x-flood,x-request-id",
        )],
    );
    let url = serve(&parts).await;
    let client = reqwest::Client::new();
    let requests = 20;
    for i in 0..requests {
        let mut request = client.get(&url).header("x-request-id", i.to_string());
        // 80 lines of 2 KB of one listed header, and 15 large headers nobody listed.
        for line in 0..80 {
            request = request.header("x-flood", format!("{line:04}{}", "f".repeat(2_000)));
        }
        for other in 0..15 {
            request = request.header(format!("x-other-{other}"), "o".repeat(2_000));
        }
        assert!(request.send().await.unwrap().status().is_success());
    }
    let spans = otlp
        .wait_for_spans(Duration::from_secs(20), |spans| spans.len() >= requests)
        .await;
    assert_eq!(spans.len(), requests);
    for (_, span) in &spans {
        let flood = strings(&span.attributes, "http.request.header.x-flood").unwrap();
        assert_eq!(flood.len(), MAX_VALUES_PER_HEADER);
        assert!(flood.iter().all(|v| v.len() == 64), "cut to the limit");
        assert_eq!(flood[0], format!("0000{}", "f".repeat(60)));
        assert!(!span.attributes.iter().any(|kv| kv.key.contains("x-other")));
        // Every span carries the same bounded amount: no growth from one request to the next.
        assert_eq!(
            captured_bytes(span),
            MAX_VALUES_PER_HEADER * 64 + span_id_len(span)
        );
    }
}

/// The length of the `x-request-id` value captured on `span`.
fn span_id_len(span: &Span) -> usize {
    strings(&span.attributes, "http.request.header.x-request-id").unwrap()[0].len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_beats_the_environment() {
    let otlp = FakeOtlp::start().await;
    let endpoint = otlp.http_endpoint();
    let config = common::config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_LOGS_EXPORTER", "none"),
        (
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
            "x-from-env",
        ),
    ]);
    let parts = Observability::builder("headers")
        .with_config(config)
        .with_captured_headers(HeaderCapture {
            server_request: vec!["X-From-Code".into(), "X-Secret-Ish".into()],
            sanitize: vec!["x-secret-ish".into()],
            ..HeaderCapture::default()
        })
        .unwrap()
        .build()
        .unwrap();
    let url = serve(&parts).await;
    reqwest::Client::new()
        .get(&url)
        .header("x-from-env", "env")
        .header("x-from-code", "code")
        .header("x-secret-ish", "shh")
        .send()
        .await
        .unwrap();
    let spans = otlp
        .wait_for_spans(Duration::from_secs(10), |spans| !spans.is_empty())
        .await;
    let attrs = &spans[0].1.attributes;
    assert_eq!(
        strings(attrs, "http.request.header.x-from-code").unwrap(),
        ["code"]
    );
    assert_eq!(
        strings(attrs, "http.request.header.x-secret-ish").unwrap(),
        [REDACTED]
    );
    assert_eq!(strings(attrs, "http.request.header.x-from-env"), None);
}

#[test]
fn invalid_lists_are_errors_that_say_what_to_fix() {
    let err = Observability::builder("headers")
        .with_captured_headers(HeaderCapture {
            server_request: vec!["x ok".into()],
            ..HeaderCapture::default()
        })
        .unwrap_err();
    assert!(matches!(err, ConfigError::InvalidValue { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("\"x ok\" is not a valid HTTP header name"),
        "{err}"
    );
    let err = Observability::builder("headers")
        .with_captured_headers(HeaderCapture {
            client_response: (0..40).map(|i| format!("x-{i}")).collect(),
            ..HeaderCapture::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("at most 32"), "{err}");
    let err = common::try_config(&[(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST",
        "x-a,x b",
    )])
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(
            r#"OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST="x-a,x b" is not valid"#
        ),
        "{err}"
    );
}
