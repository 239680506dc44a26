//! Secure export over OTLP/gRPC (feature `grpc`): the right CA delivers spans and logs, a wrong CA
//! fails visibly without costing requests anything, and mTLS is enforced.
//!
//! Own test binary: it installs a global `tracing` subscriber to read the export warnings.

mod common;
mod secure;

use std::time::Duration;

use common::build;
use secure::{
    assert_failed_spans, assert_log_arrives, assert_mtls_is_enforced, capture_warnings, config,
    hit, routes, wait_for_warning, ClientAuth, Pki, TlsOtlp, WAIT,
};
use soma_observability::config::ExporterKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_ca_delivers_spans_and_logs_over_grpc_with_tls() {
    let pki = Pki::generate();
    let receiver = TlsOtlp::start(&pki, ClientAuth::None).await;
    // By name: the certificate is for localhost as well as 127.0.0.1.
    let parts = build(
        "tls-grpc",
        config(
            &receiver.localhost_endpoint(),
            "grpc",
            &[("OTEL_EXPORTER_OTLP_CERTIFICATE", &pki.ca)],
        ),
    );
    let app = parts.instrument(routes()).unwrap();
    let _default = tracing::subscriber::set_default(parts.subscriber());
    hit(&app, 3).await;
    let spans = receiver.otlp.wait_for_spans(WAIT, |s| s.len() >= 3).await;
    assert_eq!(spans.len(), 3, "{spans:?}");
    assert_log_arrives(&receiver, "no log record arrived over gRPC with TLS").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_fails_grpc_export_visibly_and_costs_requests_nothing() {
    capture_warnings();
    let pki = Pki::generate();
    let receiver = TlsOtlp::start(&pki, ClientAuth::None).await;
    let mut cfg = config(
        &receiver.grpc_endpoint(),
        "grpc",
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", &pki.other_ca)],
    );
    cfg.logs.exporter = ExporterKind::None;
    let parts = build("tls-grpc-wrong-ca", cfg);
    let app = parts.instrument(routes()).unwrap();
    let took = hit(&app, 20).await;
    assert!(
        took < Duration::from_secs(2),
        "failing exports slowed requests: {took:?}"
    );
    assert_failed_spans(&app, 20.0).await;
    assert!(receiver.otlp.spans().is_empty());
    let warning = wait_for_warning(&["span export failed", "not trusted", "UnknownIssuer"])
        .await
        .expect("no warning says the collector's certificate is not trusted");
    assert!(
        warning.contains("OTEL_EXPORTER_OTLP_CERTIFICATE"),
        "{warning}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_mtls_rejects_a_service_without_a_client_certificate_and_accepts_one_with_it() {
    assert_mtls_is_enforced(
        "grpc",
        ["tls-grpc-anonymous", "tls-grpc-mutual"],
        [TlsOtlp::grpc_endpoint, TlsOtlp::grpc_endpoint],
    )
    .await;
}
