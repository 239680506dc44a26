//! Bad `OTEL_*` values in the real process environment give the documented errors.

use soma_observability::{ConfigError, Observability, SetupError};

#[test]
fn invalid_environment_values_fail_setup_with_a_clear_message() {
    let cases = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "htp", r#"OTEL_EXPORTER_OTLP_PROTOCOL="htp" is not valid: expected grpc or http/protobuf"#),
        ("OTEL_BSP_SCHEDULE_DELAY", "0", r#"OTEL_BSP_SCHEDULE_DELAY="0" is not valid: expected a positive number of milliseconds (0 would make the export thread spin)"#),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0", r#"OTEL_BSP_MAX_QUEUE_SIZE="0" is not valid: expected a positive whole number (0 would drop everything)"#),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "-1", r#"OTEL_EXPORTER_OTLP_TIMEOUT="-1" is not valid: expected a positive number of milliseconds"#),
        ("OTEL_TRACES_SAMPLER", "sometimes", "OTEL_TRACES_SAMPLER=\"sometimes\" is not valid"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317", "OTEL_EXPORTER_OTLP_ENDPOINT=\"localhost:4317\" is not valid: expected an http:// or https:// URL"),
    ];
    for (var, value, message) in cases {
        let result = temp_env::with_var(var, Some(value), || Observability::builder("svc").build());
        let err = result.unwrap_err();
        assert!(
            matches!(&err, SetupError::Config(ConfigError::InvalidEnv { var: v, .. }) if *v == var),
            "{var}: {err:?}"
        );
        assert!(err.to_string().starts_with(message), "{var}: {err}");
    }
}

#[test]
fn grpc_without_a_runtime_is_an_error_not_a_panic() {
    let result = temp_env::with_vars(
        [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", Some("grpc")),
            ("OTEL_LOGS_EXPORTER", Some("none")),
        ],
        || Observability::builder("svc").build(),
    );
    let err = result.unwrap_err();
    assert!(matches!(err, SetupError::NoRuntime { .. }), "{err:?}");
    assert!(err.to_string().contains("needs a tokio runtime"), "{err}");
}
