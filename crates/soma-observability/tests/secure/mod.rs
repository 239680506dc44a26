//! Helpers of the secure export tests (`secure_export*.rs`): a TLS receiver, configurations that
//! point at it, and the warnings the export threads log.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use soma_observability::config::ExporterKind;
use soma_observability::ObservabilityConfig;
pub use soma_system_tests::tls::{ClientAuth, Pki, TlsOtlp};

use crate::common::{build, get as get_status, sample, scrape};

pub const WAIT: Duration = Duration::from_secs(15);

/// A route whose handler logs, so both spans and log records are exported.
pub fn routes() -> Router {
    Router::new().route(
        "/users/{id}",
        get(|| async {
            tracing::info!("loaded user over tls");
            "user"
        }),
    )
}

/// Traces and logs to `endpoint` over `protocol`, exported quickly, plus `extra` variables.
pub fn config(
    endpoint: &str,
    protocol: &str,
    extra: &[(&str, &std::path::Path)],
) -> ObservabilityConfig {
    let paths: Vec<(&str, String)> = extra
        .iter()
        .map(|(var, path)| (*var, path.display().to_string()))
        .collect();
    let mut vars = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "50"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
        ("RUST_LOG", "info"),
    ];
    vars.extend(paths.iter().map(|(var, path)| (*var, path.as_str())));
    crate::common::config(&vars)
}

/// Sends `n` requests, asserting each succeeds; returns how long they took.
pub async fn hit(app: &Router, n: usize) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        assert_eq!(
            get_status(app, "/users/1").await,
            axum::http::StatusCode::OK
        );
    }
    started.elapsed()
}

/// Polls `/metrics` until `otel_sdk_exporter_span_exported_total{error_type="export_failed"}`
/// counts `n` spans (bounded by [`WAIT`]); returns the last exposition.
pub async fn wait_for_failed_spans(app: &Router, n: f64) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let metrics = scrape(app).await;
        let failed = sample(
            &metrics,
            "otel_sdk_exporter_span_exported_total",
            &[r#"error_type="export_failed""#],
        );
        if failed.is_some_and(|f| f >= n) || Instant::now() >= deadline {
            return metrics;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Asserts that `otel_sdk_exporter_span_exported_total{error_type="export_failed"}` reaches
/// exactly `n` spans (waiting for it as [`wait_for_failed_spans`] does).
pub async fn assert_failed_spans(app: &Router, n: f64) {
    let metrics = wait_for_failed_spans(app, n).await;
    assert_eq!(
        sample(
            &metrics,
            "otel_sdk_exporter_span_exported_total",
            &[r#"error_type="export_failed""#]
        ),
        Some(n),
        "{metrics}"
    );
}

/// Waits for the log record of [`routes`] at `receiver`; `missing` is the failure message.
pub async fn assert_log_arrives(receiver: &TlsOtlp, missing: &str) {
    let logs = receiver
        .otlp
        .wait_for_logs(WAIT, |logs| {
            logs.iter()
                .any(|l| format!("{:?}", l.body).contains("loaded user over tls"))
        })
        .await;
    assert!(
        logs.iter()
            .any(|l| format!("{:?}", l.body).contains("loaded user over tls")),
        "{missing}"
    );
}

/// The mTLS scenario over `protocol`: a receiver that requires client certificates rejects the
/// handshake of service `services[0]`, which has none (every span export fails and is counted),
/// and accepts `services[1]`, which has one; each exports to its endpoint of `endpoints`.
pub async fn assert_mtls_is_enforced(
    protocol: &str,
    services: [&str; 2],
    endpoints: [fn(&TlsOtlp) -> String; 2],
) {
    let pki = Pki::generate();
    let receiver = TlsOtlp::start(&pki, ClientAuth::Required).await;

    let mut anonymous = config(
        &endpoints[0](&receiver),
        protocol,
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", &pki.ca)],
    );
    anonymous.logs.exporter = ExporterKind::None;
    let parts = build(services[0], anonymous);
    let app = parts.instrument(routes()).unwrap();
    hit(&app, 5).await;
    assert_failed_spans(&app, 5.0).await;
    let errors = receiver.wait_for_handshake_error(WAIT).await;
    assert!(
        errors.iter().any(|e| e.contains("certificate")),
        "the receiver did not reject the handshake for a missing client certificate: {errors:?}"
    );
    assert!(receiver.otlp.spans().is_empty());

    let cfg = config(
        &endpoints[1](&receiver),
        protocol,
        &[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", &pki.ca),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &pki.client_cert),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &pki.client_key),
        ],
    );
    let parts = build(services[1], cfg);
    let app = parts.instrument(routes()).unwrap();
    hit(&app, 2).await;
    let spans = receiver.otlp.wait_for_spans(WAIT, |s| s.len() >= 2).await;
    assert_eq!(
        spans.len(),
        2,
        "the service with a client certificate was not accepted"
    );
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per test binary) a global subscriber that keeps what the export threads log.
fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        captured
    })
}

/// Starts capturing warnings (call before building the parts).
pub fn capture_warnings() {
    let _ = captured();
}

/// Waits until a captured warning line contains every one of `needles`; returns that line.
pub async fn wait_for_warning(needles: &[&str]) -> Option<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = String::from_utf8_lossy(&captured().0.lock().unwrap()).into_owned();
        if let Some(line) = text
            .lines()
            .find(|line| needles.iter().all(|needle| line.contains(needle)))
        {
            return Some(line.to_owned());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Everything captured so far.
pub fn warnings() -> String {
    String::from_utf8_lossy(&captured().0.lock().unwrap()).into_owned()
}
