//! Secure export over HTTP/protobuf (default features): a TLS receiver with certificates made in
//! the test; the right CA delivers, a wrong CA fails visibly, mTLS is enforced, and TLS files that
//! cannot be used stop the startup with an error naming the variable and the path.
//!
//! Own test binary: it installs a global `tracing` subscriber to read the export warnings.

mod common;
mod secure;

use std::path::Path;
use std::time::Duration;

use common::{build, try_config};
use secure::{
    assert_failed_spans, assert_log_arrives, assert_mtls_is_enforced, capture_warnings, config,
    hit, routes, wait_for_warning, ClientAuth, Pki, TlsOtlp, WAIT,
};
use soma_observability::{ConfigError, Observability, SetupError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_ca_delivers_spans_and_logs_over_https() {
    let pki = Pki::generate();
    let receiver = TlsOtlp::start(&pki, ClientAuth::None).await;
    let cfg = config(
        &receiver.http_endpoint(),
        "http/protobuf",
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", &pki.ca)],
    );
    assert!(cfg.traces.endpoint.starts_with("https://"));
    let parts = build("tls-http", cfg);
    let app = parts.instrument(routes()).unwrap();
    let _default = tracing::subscriber::set_default(parts.subscriber());
    hit(&app, 3).await;
    let spans = receiver
        .otlp
        .wait_for_spans(WAIT, |s| {
            s.iter()
                .filter(|(_, s)| s.name == "GET /users/{id}")
                .count()
                >= 3
        })
        .await;
    assert_eq!(
        spans
            .iter()
            .filter(|(_, s)| s.name == "GET /users/{id}")
            .count(),
        3
    );
    assert_log_arrives(&receiver, "no log record arrived over TLS").await;
    assert!(
        receiver.handshake_errors().is_empty(),
        "{:?}",
        receiver.handshake_errors()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_fails_the_export_visibly_and_costs_requests_nothing() {
    capture_warnings();
    let pki = Pki::generate();
    let receiver = TlsOtlp::start(&pki, ClientAuth::None).await;
    // Traces through the per-signal variable, logs through the generic one: both wrong.
    let cfg = config(
        &receiver.http_endpoint(),
        "http/protobuf",
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", &pki.other_ca),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", &pki.other_ca),
        ],
    );
    let parts = build("tls-wrong-ca", cfg);
    let app = parts.instrument(routes()).unwrap();
    let _default = tracing::subscriber::set_default(parts.subscriber());
    let took = hit(&app, 20).await;
    assert!(
        took < Duration::from_secs(2),
        "failing exports slowed requests: {took:?}"
    );
    assert_failed_spans(&app, 20.0).await;
    assert!(
        receiver.otlp.spans().is_empty(),
        "a span got through an untrusted TLS connection"
    );
    let warning = wait_for_warning(&["span export failed", "not trusted", "UnknownIssuer"]).await;
    let warning = warning.expect("no warning says the collector's certificate is not trusted");
    assert!(
        warning.contains("OTEL_EXPORTER_OTLP_CERTIFICATE"),
        "{warning}"
    );
    assert!(
        wait_for_warning(&["log export failed", "not trusted", "UnknownIssuer"])
            .await
            .is_some(),
        "no warning says the log export failed on the collector's certificate"
    );
    assert!(receiver.otlp.logs().is_empty(), "a log record got through");
    assert!(
        !receiver.wait_for_handshake_error(WAIT).await.is_empty(),
        "the receiver saw no failed handshake"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_rejects_a_service_without_a_client_certificate_and_accepts_one_with_it() {
    assert_mtls_is_enforced(
        "http/protobuf",
        ["tls-anonymous", "tls-mutual"],
        [TlsOtlp::http_endpoint, TlsOtlp::localhost_endpoint],
    )
    .await;
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The `TlsFile` error's setting, path and problem.
fn tls_file_error(err: &ConfigError) -> (&'static str, &Path, &str) {
    match err {
        ConfigError::TlsFile {
            setting,
            path,
            problem,
        } => (setting, path, problem),
        other => panic!("expected a TLS file error, got {other:?}"),
    }
}

#[test]
fn tls_files_that_cannot_be_used_are_startup_errors_naming_variable_and_path() {
    let pki = Pki::generate();
    let missing = pki.write("placeholder", "").with_file_name("missing.pem");
    let not_pem = pki.write("notes.txt", "this is not a certificate\n");
    let key_only = pki.server_key.clone();
    let cert_only = pki.server_cert.clone();
    let not_x509 = pki.write(
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n",
    );
    let https = ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318");
    let cases: [(&str, &Path, &str); 7] = [
        (
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            &not_x509,
            "not a valid X.509 certificate",
        ),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            &not_x509,
            "not a valid X.509 certificate",
        ),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", &missing, "cannot read it"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            &not_pem,
            "no PEM certificate",
        ),
        (
            "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
            &key_only,
            "no PEM certificate",
        ),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            &key_only,
            "no PEM certificate",
        ),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            &cert_only,
            "no PEM private key",
        ),
    ];
    for (var, file, problem) in cases {
        // A client certificate needs its key (and the reverse): give the other one, valid.
        let mut vars = vec![https, (var, path(file))];
        if var.ends_with("CLIENT_CERTIFICATE") {
            vars.push(("OTEL_EXPORTER_OTLP_CLIENT_KEY", path(&pki.client_key)));
        } else if var.ends_with("CLIENT_KEY") {
            vars.push((
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                path(&pki.client_cert),
            ));
        }
        let err = try_config(&vars).unwrap_err();
        let (setting, got_path, got_problem) = tls_file_error(&err);
        assert_eq!(setting, var);
        assert_eq!(got_path, file);
        assert!(got_problem.contains(problem), "{var}: {err}");
        let message = format!("{err:?}");
        assert!(
            message.starts_with(&format!("{var}={file:?} cannot be used: ")),
            "{message}"
        );
        assert!(
            message.contains("it must be a PEM file holding"),
            "{message}"
        );
    }
}

#[test]
fn a_client_certificate_without_its_key_is_an_error() {
    let pki = Pki::generate();
    let err = try_config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            path(&pki.client_cert),
        ),
    ])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE is not valid: it is set but \
         OTEL_EXPORTER_OTLP_CLIENT_KEY is not: a client certificate (mTLS) needs both the \
         certificate and its private key"
    );
    let err = try_config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
        ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", path(&pki.client_key)),
    ])
    .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY is not valid: it is set but \
             OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE is not"
        ),
        "{err}"
    );
}

#[test]
fn a_certificate_for_a_plain_text_endpoint_is_an_error() {
    let pki = Pki::generate();
    let err = try_config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", path(&pki.ca)),
    ])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "OTEL_EXPORTER_OTLP_CERTIFICATE is not valid: it is set, but the endpoint \
         http://collector:4318/v1/traces is not https://: TLS settings apply to secure \
         connections only; use an https:// endpoint, or unset OTEL_EXPORTER_OTLP_CERTIFICATE"
    );
    // Per signal: only the signal that exports in plain text is wrong.
    let err = try_config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
        (
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "http://logs:4318/v1/logs",
        ),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", path(&pki.ca)),
    ])
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("http://logs:4318/v1/logs is not https://"),
        "{err}"
    );
    // Unused settings are not checked: logs not exported, or OTEL_SDK_DISABLED.
    let cfg = try_config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
        (
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "http://logs:4318/v1/logs",
        ),
        ("OTEL_LOGS_EXPORTER", "none"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", path(&pki.ca)),
    ])
    .unwrap();
    assert_eq!(cfg.traces.certificate.as_deref(), Some(pki.ca.as_path()));
    assert!(try_config(&[
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"),
    ])
    .is_ok());
}

#[test]
fn per_signal_tls_files_beat_the_generic_ones() {
    let pki = Pki::generate();
    let cfg = try_config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", path(&pki.ca)),
        ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", path(&pki.other_ca)),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            path(&pki.client_cert),
        ),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", path(&pki.client_key)),
        (
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            path(&pki.other_client_cert),
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
            path(&pki.other_client_key),
        ),
    ])
    .unwrap();
    assert_eq!(cfg.traces.certificate.as_deref(), Some(pki.ca.as_path()));
    assert_eq!(
        cfg.logs.certificate.as_deref(),
        Some(pki.other_ca.as_path())
    );
    assert_eq!(
        cfg.traces.client_certificate.as_deref(),
        Some(pki.other_client_cert.as_path())
    );
    assert_eq!(
        cfg.traces.client_key.as_deref(),
        Some(pki.other_client_key.as_path())
    );
    assert_eq!(
        cfg.logs.client_certificate.as_deref(),
        Some(pki.client_cert.as_path())
    );
    assert_eq!(
        cfg.logs.client_key.as_deref(),
        Some(pki.client_key.as_path())
    );
}

#[test]
fn a_tls_file_set_in_code_is_checked_when_building() {
    let pki = Pki::generate();
    let mut cfg = try_config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:9"),
        ("OTEL_LOGS_EXPORTER", "none"),
    ])
    .unwrap();
    let missing = pki.ca.with_file_name("gone.pem");
    cfg.traces.certificate = Some(missing.clone());
    let err = Observability::builder("code")
        .with_config(cfg)
        .build()
        .expect_err("a missing CA file set in code must fail the build");
    let SetupError::Config(config) = &err else {
        panic!("expected a configuration error, got {err:?}");
    };
    let (setting, got_path, _) = tls_file_error(config);
    assert_eq!(setting, "ObservabilityConfig::traces.certificate");
    assert_eq!(got_path, missing);
}
