//! Query redaction cannot be bypassed by encoding the parameter name: every spelling that axum's
//! `Query` extractor decodes to a sensitive name is redacted in the server span's `url.query`
//! and in the client span's `url.full`, as a real OTLP receiver sees them.
//!
//! Own test binary: it sets the global tracer provider (`HttpClient` uses the global tracer).

mod common;

use std::time::Duration;

use axum::extract::Query;
use axum::routing::get;
use axum::Router;
use common::{build, otlp_config, string_attr, FakeOtlp};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use soma_observability::HttpClient;

const WAIT: Duration = Duration::from_secs(10);

/// (name as sent, name as the handler reads it).
const CASES: &[(&str, &str)] = &[
    ("token", "token"),
    ("API_KEY", "API_KEY"),
    ("to%6Ben", "token"),
    ("%74oken", "token"),
    ("api%2Dkey", "api-key"),
    ("token%20", "token "),
    ("token+", "token "),
    ("token[]", "token[]"),
    ("token%5B%5D", "token[]"),
    ("user[password]", "user[password]"),
    // Names that hold a secret word, and a double-encoded one (issue 23).
    ("auth_token", "auth_token"),
    ("oauth_token", "oauth_token"),
    ("session_id", "session_id"),
    ("sessionid", "sessionid"),
    ("private_token", "private_token"),
    ("x-api-key", "x-api-key"),
    ("jwt", "jwt"),
    ("secret_key", "secret_key"),
    ("pwd", "pwd"),
    ("pass", "pass"),
    ("credential", "credential"),
    ("%2574oken", "%74oken"),
];

/// A `;`-separated pair, as some frameworks read queries.
const SEMICOLON_SECRET: &str = "s3cr3t-semicolon-value";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_sensitive_names_never_leave_the_process() {
    let otlp = FakeOtlp::start().await;
    let parts = build("redaction", otlp_config(&otlp, "http/protobuf"));
    opentelemetry::global::set_tracer_provider(parts.tracer_provider().unwrap().clone());
    // The handler answers with the parameters exactly as the application reads them.
    let app = Router::new().route(
        "/echo",
        get(|Query(pairs): Query<Vec<(String, String)>>| async move {
            let lines: Vec<String> = pairs
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            lines.join("\n") + "\n"
        }),
    );
    let app = parts.instrument(app).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = HttpClient::new(reqwest::Client::new());
    for (i, (raw, decoded)) in CASES.iter().enumerate() {
        let secret = format!("s3cr3t-{i}-value");
        let url = format!("http://{addr}/echo?q=rust&{raw}={secret}");
        let body = client
            .send(client.get(&url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // The bypass is real: the application reads the secret under the sensitive name.
        assert!(
            body.contains(&format!("{decoded}={secret}\n")),
            "{raw}: {body}"
        );
    }

    let url = format!("http://{addr}/echo?q=rust;token={SEMICOLON_SECRET}");
    client.send(client.get(&url)).await.unwrap();

    let spans = otlp
        .wait_for_spans(WAIT, |spans| spans.len() >= 2 * CASES.len() + 2)
        .await;
    let raw_export = String::from_utf8_lossy(&otlp.raw_bytes()).into_owned();
    for i in 0..CASES.len() {
        let secret = format!("s3cr3t-{i}-value");
        assert!(!raw_export.contains(&secret), "{secret} left the process");
    }
    assert!(
        !raw_export.contains(SEMICOLON_SECRET),
        "the ;-separated token left the process"
    );
    let server_queries: Vec<String> = spans
        .iter()
        .filter(|(_, s)| s.kind == SpanKind::Server as i32)
        .filter_map(|(_, s)| string_attr(&s.attributes, "url.query"))
        .collect();
    let client_urls: Vec<String> = spans
        .iter()
        .filter(|(_, s)| s.kind == SpanKind::Client as i32)
        .filter_map(|(_, s)| string_attr(&s.attributes, "url.full"))
        .collect();
    for (raw, _) in CASES {
        // Readable: the name as sent, the value replaced.
        let redacted = format!("q=rust&{raw}=REDACTED");
        assert!(
            server_queries.contains(&redacted),
            "url.query {redacted} not in {server_queries:?}"
        );
        let full = format!("http://{addr}/echo?{redacted}");
        assert!(
            client_urls.contains(&full),
            "url.full {full} not in {client_urls:?}"
        );
    }
    assert!(
        server_queries.contains(&"q=rust;token=REDACTED".to_owned()),
        "{server_queries:?}"
    );
    server.abort();
}
