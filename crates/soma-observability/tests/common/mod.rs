//! Shared test helpers: configurations, requests through a router, scraping, promtool; requests
//! over a socket (`socket.rs`) and reading received spans (`spans.rs`).
//! The OTLP receiver is the system tests' (`soma_system_tests::otlp`).
#![allow(dead_code, unreachable_pub, unused_imports)]

mod socket;
mod spans;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::MethodRouter;
use axum::Router;
pub use socket::{get_status, get_text, h2c_connect, scrape_socket};
use soma_observability::{ConfigError, Observability, ObservabilityConfig, ObservabilityParts};
pub use soma_system_tests::otlp::{hex, string_attr, Behaviour, FakeOtlp};
pub use spans::{strings, wait_for_named_spans};
use tower::ServiceExt;

/// A configuration from a list of variables, nothing read from the process environment.
pub fn config(vars: &[(&str, &str)]) -> ObservabilityConfig {
    try_config(vars).unwrap()
}

/// [`config`], for the variables that must be rejected.
pub fn try_config(vars: &[(&str, &str)]) -> Result<ObservabilityConfig, ConfigError> {
    ObservabilityConfig::from_lookup(soma_system_tests::lookup(vars))
}

/// Metrics only: no span, no OTLP log.
pub fn metrics_only() -> ObservabilityConfig {
    config(&[
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "none"),
    ])
}

/// Traces and logs to `otlp` over `protocol` (`grpc` or `http/protobuf`), exported quickly.
pub fn otlp_config(otlp: &FakeOtlp, protocol: &str) -> ObservabilityConfig {
    let endpoint = if protocol == "grpc" {
        otlp.grpc_endpoint()
    } else {
        otlp.http_endpoint()
    };
    config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "50"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
        ("RUST_LOG", "info"),
    ])
}

pub fn build(service: &str, config: ObservabilityConfig) -> ObservabilityParts {
    Observability::builder(service)
        .with_config(config)
        .build()
        .unwrap()
}

/// [`build`], with `shutdown_timeout` as the guard's shutdown deadline.
pub fn build_with_shutdown_timeout(
    service: &str,
    config: ObservabilityConfig,
    shutdown_timeout: std::time::Duration,
) -> ObservabilityParts {
    Observability::builder(service)
        .with_config(config)
        .with_shutdown_timeout(shutdown_timeout)
        .build()
        .unwrap()
}

/// What a shutdown through the guard returned, and how long it took.
#[derive(Debug)]
pub struct Shutdown {
    pub result: Result<(), soma_observability::ShutdownError>,
    /// What the guard reports it could not deliver.
    pub undelivered: Option<soma_observability::Undelivered>,
    pub took: std::time::Duration,
}

/// Shuts `parts` down through their guard.
pub async fn timed_shutdown(parts: ObservabilityParts) -> Shutdown {
    let started = std::time::Instant::now();
    let mut guard = parts.into_guard();
    let result = guard.shutdown().await;
    Shutdown {
        result,
        undelivered: guard.undelivered().cloned(),
        took: started.elapsed(),
    }
}

/// A router with the one route `path`, instrumented by `parts` (with `/metrics`).
pub fn one_route(parts: &ObservabilityParts, path: &str, route: MethodRouter) -> Router {
    parts.instrument(Router::new().route(path, route)).unwrap()
}

/// A handler that works inside a `tracing` span `load_user` and logs "loaded user" there.
#[allow(clippy::unused_async)] // an axum handler
pub async fn load_user() -> &'static str {
    let span = tracing::info_span!("load_user");
    let _entered = span.enter();
    tracing::info!(user.found = true, "loaded user");
    "user"
}

/// A route whose handler adds a permit to `started` (one per request), then never answers.
pub fn hang(started: std::sync::Arc<tokio::sync::Semaphore>) -> MethodRouter {
    axum::routing::get(move || {
        let started = started.clone();
        async move {
            started.add_permits(1);
            std::future::pending::<&'static str>().await
        }
    })
}

/// Sends `GET uri` through `app` and returns the response with its body not read yet.
pub async fn start_get(app: &Router, uri: &str) -> Response {
    app.clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap()
}

/// Sends one request through `app` and drains the response body.
pub async fn send(
    app: &Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Bytes) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, body)
}

/// Sends `GET /users/1` through `app` `n` times, asserting each answers 200.
pub async fn hit(app: &Router, n: usize) {
    for _ in 0..n {
        let status = send(app, Request::get("/users/1").body(Body::empty()).unwrap())
            .await
            .0;
        assert_eq!(status, StatusCode::OK);
    }
}

pub async fn get(app: &Router, uri: &str) -> StatusCode {
    send(app, Request::get(uri).body(Body::empty()).unwrap())
        .await
        .0
}

/// `GET /metrics` through the router, as Prometheus would.
pub async fn scrape(app: &Router) -> String {
    let (status, _, body) = send(app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    String::from_utf8(body.to_vec()).unwrap()
}

/// The value of the first sample whose line starts with `series` (name plus labels prefix)
/// and contains every one of `labels`.
pub fn sample(exposition: &str, name: &str, labels: &[&str]) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The number of series (sample lines) of the metric family `name` (exact name match).
pub fn series_count(exposition: &str, name: &str) -> usize {
    exposition
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .count()
}

/// Everything logged (in text, without colours) on this thread while `f` runs.
pub fn logged(f: impl FnOnce()) -> String {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

/// Runs the real `promtool check metrics` on `exposition` and returns its complaints.
pub fn promtool_check_metrics(exposition: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool not found: install Debian's `prometheus` package (.ci/run does)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() || !text.is_empty(),
        "promtool failed silently"
    );
    text
}

fn explode() -> &'static str {
    panic!("boom: the handler exploded")
}

/// Routes for the panic tests: `/panic` panics in the handler; `/stream-panic` sends its first
/// chunk, then panics once `go` is notified; `/ok` answers.
pub fn panic_routes(go: std::sync::Arc<tokio::sync::Notify>) -> Router {
    use axum::routing::get;
    Router::new()
        .route("/panic", get(|| async { explode() }))
        .route(
            "/stream-panic",
            get(move || async move {
                let stream = futures_util::stream::unfold(0, move |i| {
                    let go = go.clone();
                    async move {
                        if i > 0 {
                            go.notified().await;
                            panic!("boom: the body exploded after {i} chunk");
                        }
                        Some((Ok::<_, std::io::Error>(Bytes::from("first chunk")), i + 1))
                    }
                });
                Body::from_stream(stream)
            }),
        )
        .route("/ok", get(|| async { "ok" }))
}

/// Serves `app` on a free loopback port; the task runs until the test ends.
pub async fn serve(app: Router) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, server)
}
