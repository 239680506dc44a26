//! `url.scheme` is what the connection is, not what the request line claims: over a real plain
//! TCP socket, an HTTP/1.1 absolute-form `https://` target and an HTTP/2 (prior knowledge)
//! `:scheme: https` are both `http`, on `/metrics` and on the server span.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use common::{config, otlp_config, sample, scrape, send, string_attr, FakeOtlp};
use soma_observability::config::ProtoHeader;
use soma_observability::Observability;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);

fn routes() -> Router {
    Router::new().route("/users/{id}", get(|| async { "user" }))
}

/// `GET https://…` in absolute form, written by hand over a plain TCP connection.
async fn absolute_form_request(addr: std::net::SocketAddr) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET https://shop.example/users/1 HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    response
}

/// An HTTP/2 request with prior knowledge (h2c) whose `:scheme` is `https`, over plain TCP.
async fn h2c_https_request(addr: std::net::SocketAddr) -> (StatusCode, axum::http::Version) {
    let (mut sender, driver) = common::h2c_connect(addr).await;
    let request = Request::get("https://shop.example/users/2")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let result = (response.status(), response.version());
    drop(sender);
    driver.abort();
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_line_cannot_make_a_plain_connection_https() {
    let otlp = FakeOtlp::start().await;
    let parts = common::build("scheme", otlp_config(&otlp, "http/protobuf"));
    let app = parts.instrument(routes()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let response = absolute_form_request(addr).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(
        h2c_https_request(addr).await,
        (StatusCode::OK, axum::http::Version::HTTP_2)
    );

    let metrics = common::scrape_socket(&reqwest::Client::new(), addr).await;
    for version in ["1.1", "2"] {
        assert_eq!(
            sample(
                &metrics,
                "http_server_request_duration_seconds_count",
                &[
                    r#"url_scheme="http""#,
                    &format!(r#"network_protocol_version="{version}""#),
                ]
            ),
            Some(1.0),
            "HTTP/{version}:\n{metrics}"
        );
    }
    assert!(!metrics.contains(r#"url_scheme="https""#), "{metrics}");

    let spans = otlp
        .wait_for_spans(WAIT, |spans| {
            spans
                .iter()
                .filter(|(_, s)| s.name == "GET /users/{id}")
                .count()
                == 2
        })
        .await;
    for (_, span) in spans.iter().filter(|(_, s)| s.name == "GET /users/{id}") {
        assert_eq!(
            string_attr(&span.attributes, "url.scheme").as_deref(),
            Some("http"),
            "{span:?}"
        );
    }
    server.abort();
}

fn metrics_only_builder(name: &str) -> soma_observability::ObservabilityBuilder {
    Observability::builder(name).with_config(config(&[
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "none"),
    ]))
}

async fn scheme_of(app: &Router, headers: &[(&str, &str)]) {
    let mut request = Request::get("/users/1");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    assert_eq!(
        send(app, request.body(Body::empty()).unwrap()).await.0,
        StatusCode::OK
    );
}

fn count(metrics: &str, scheme: &str) -> Option<f64> {
    sample(
        metrics,
        "http_server_request_duration_seconds_count",
        &[&format!(r#"url_scheme="{scheme}""#)],
    )
}

#[tokio::test]
async fn forwarded_headers_count_only_when_trusted() {
    // Default: a client-sent X-Forwarded-Proto or Forwarded changes nothing.
    let parts = metrics_only_builder("untrusted").build().unwrap();
    let app = parts.instrument(routes()).unwrap();
    scheme_of(&app, &[("x-forwarded-proto", "https")]).await;
    scheme_of(&app, &[("forwarded", "proto=https")]).await;
    let metrics = scrape(&app).await;
    assert_eq!(count(&metrics, "http"), Some(2.0), "{metrics}");
    assert_eq!(count(&metrics, "https"), None);

    // Trusted X-Forwarded-Proto: its (last) value counts; Forwarded is still ignored.
    let parts = metrics_only_builder("xfp")
        .with_trusted_proto_header(Some(ProtoHeader::XForwardedProto))
        .build()
        .unwrap();
    let app = parts.instrument(routes()).unwrap();
    scheme_of(&app, &[("x-forwarded-proto", "https")]).await;
    scheme_of(&app, &[("forwarded", "proto=https")]).await;
    scheme_of(&app, &[]).await;
    let metrics = scrape(&app).await;
    assert_eq!(count(&metrics, "https"), Some(1.0), "{metrics}");
    assert_eq!(count(&metrics, "http"), Some(2.0), "{metrics}");

    // Trusted Forwarded, from the environment.
    let parts = Observability::builder("forwarded")
        .with_config(config(&[
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_LOGS_EXPORTER", "none"),
            ("SOMA_TRUSTED_PROTO_HEADER", "forwarded"),
        ]))
        .build()
        .unwrap();
    let app = parts.instrument(routes()).unwrap();
    scheme_of(&app, &[("forwarded", "for=192.0.2.1;proto=https")]).await;
    scheme_of(&app, &[("x-forwarded-proto", "https")]).await;
    let metrics = scrape(&app).await;
    assert_eq!(count(&metrics, "https"), Some(1.0), "{metrics}");
    assert_eq!(count(&metrics, "http"), Some(1.0), "{metrics}");
}

#[tokio::test]
async fn a_tls_listener_is_https() {
    let parts = metrics_only_builder("tls")
        .with_tls_listener(true)
        .build()
        .unwrap();
    let app = parts.instrument(routes()).unwrap();
    scheme_of(&app, &[]).await;
    let metrics = scrape(&app).await;
    assert_eq!(count(&metrics, "https"), Some(1.0), "{metrics}");
    assert_eq!(count(&metrics, "http"), None, "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "http_server_active_requests",
            &[r#"url_scheme="https""#]
        ),
        Some(0.0),
        "{metrics}"
    );
}
