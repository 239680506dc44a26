//! Each reference service started with an invalid `OTEL_*` value stops at once with a non-zero
//! exit and the readable message on stderr (what to fix), not the error's `Debug` fields.

use std::process::Command;

use soma_system_tests::services::binary;

const SERVICES: &[&str] = &[
    "gateway",
    "orchestrator",
    "policy-engine",
    "identity-service",
    "slm-service",
];

#[test]
fn an_invalid_otel_value_prints_the_readable_message() {
    for service in SERVICES {
        let output = Command::new(binary(service))
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "htp")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{service} exited with success");
        assert!(
            stderr
                .starts_with(r#"Error: OTEL_EXPORTER_OTLP_PROTOCOL="htp" is not valid: expected "#),
            "{service}: {stderr}"
        );
        assert!(!stderr.contains("InvalidEnv"), "{service}: {stderr}");
    }
}

/// A TLS file that cannot be used (issue 13) stops the service the same way, naming the
/// variable and the path.
#[test]
fn a_missing_tls_file_prints_the_variable_and_the_path() {
    for service in SERVICES {
        let output = Command::new(binary(service))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4318")
            .env("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/otel/ca.pem")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{service} exited with success");
        assert!(
            stderr.starts_with(
                r#"Error: OTEL_EXPORTER_OTLP_CERTIFICATE="/nonexistent/otel/ca.pem" cannot be used: cannot read it"#
            ),
            "{service}: {stderr}"
        );
        assert!(!stderr.contains("TlsFile"), "{service}: {stderr}");
    }
}
