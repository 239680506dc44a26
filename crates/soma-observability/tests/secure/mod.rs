//! Helpers of the secure export tests (`secure_export*.rs`): a TLS receiver, configurations that
//! point at it, and the warnings the export threads log.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use soma_observability::ObservabilityConfig;
pub use soma_system_tests::tls::{ClientAuth, Pki, TlsOtlp};

use crate::common::{get as get_status, sample, scrape};

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
    let mut vars: Vec<(String, String)> = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.into()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), protocol.into()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "50".into()),
        ("OTEL_BLRP_SCHEDULE_DELAY".into(), "50".into()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT".into(), "3000".into()),
        ("RUST_LOG".into(), "info".into()),
    ];
    for (var, path) in extra {
        vars.push(((*var).to_owned(), path.display().to_string()));
    }
    ObservabilityConfig::from_lookup(move |name| {
        vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .unwrap()
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
