//! Error types: one per group of operations.
//!
//! - [`ConfigError`]: a configuration value (from code or from an `OTEL_*` variable) is not valid.
//! - [`SetupError`]: building or installing the telemetry pipelines failed.
//! - [`ShutdownError`]: flushing or shutting down a provider failed or timed out.
//!
//! Their `Debug` form is their message (followed by any cause the message does not already
//! include), as `anyhow` prints errors: a `main` that returns `Result<(), Box<dyn Error>>`
//! prints `Error: {err:?}`, and a user must read
//! `OTEL_EXPORTER_OTLP_PROTOCOL="htp" is not valid: expected ...`, not the enum's fields. The
//! fields are public on each variant for code that needs them.

use std::time::Duration;

/// The telemetry signal an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signal {
    /// Distributed traces.
    Traces,
    /// Log records.
    Logs,
    /// Metrics.
    Metrics,
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Traces => "traces",
            Self::Logs => "logs",
            Self::Metrics => "metrics",
        })
    }
}

/// A configuration value is not valid.
///
/// The message names the setting, the rejected value and what is accepted, e.g.
/// `OTEL_EXPORTER_OTLP_PROTOCOL="htp" is not valid: expected grpc or http/protobuf`.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An environment variable holds a value that cannot be used.
    #[error("{var}={value:?} is not valid: expected {expected}")]
    InvalidEnv {
        /// The variable's name.
        var: &'static str,
        /// The value found in the environment.
        value: String,
        /// What the variable accepts.
        expected: &'static str,
    },
    /// A value passed in code cannot be used.
    #[error("{setting} is not valid: {reason}")]
    InvalidValue {
        /// The builder method or setting that was given the value.
        setting: &'static str,
        /// Why the value was rejected.
        reason: String,
    },
    /// A TLS file (`OTEL_EXPORTER_OTLP_*CERTIFICATE`, `OTEL_EXPORTER_OTLP_*CLIENT_KEY`) cannot be
    /// used: it is missing, unreadable, not PEM, or holds no certificate or no private key.
    ///
    /// The message names the setting, the path and what the file must hold, e.g.
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE="/etc/otel/ca.pem" cannot be used: cannot read it (No
    /// such file or directory (os error 2)); it must be a PEM file holding the CA certificate(s)
    /// that signed the collector's certificate`.
    #[error("{setting}={path:?} cannot be used: {problem}")]
    TlsFile {
        /// The variable (or, for configuration set in code, the field) naming the file.
        setting: &'static str,
        /// The configured path.
        path: std::path::PathBuf,
        /// What is wrong with it and what it must hold.
        problem: String,
    },
    /// A setting asks for an exporter or transport this build of the crate was compiled without
    /// (see the [Cargo features](crate#cargo-features)).
    #[error(
        "{var}={value:?} needs the soma-observability feature \"{feature}\", which this build \
         does not enable: add it to the dependency (features = [\"{feature}\"]) or change {var}"
    )]
    FeatureDisabled {
        /// The variable (or, for configuration set in code, the field) that asks for it.
        var: &'static str,
        /// Its value.
        value: String,
        /// The Cargo feature to enable.
        feature: &'static str,
    },
}

/// Building or installing the telemetry pipelines failed.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The configuration is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An OTLP exporter could not be built (for example a malformed endpoint or header).
    #[cfg(feature = "otlp")]
    #[error("failed to build the OTLP {signal} exporter: {source}")]
    Exporter {
        /// Which signal's exporter failed.
        signal: Signal,
        /// What the exporter builder reported.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The gRPC exporter needs a tokio runtime to run on.
    #[error(
        "the OTLP/gRPC {signal} exporter needs a tokio runtime: call setup from inside \
         #[tokio::main] (or Runtime::enter), or set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
    )]
    NoRuntime {
        /// Which signal's exporter needs it.
        signal: Signal,
    },
    /// The router already serves the path the metrics endpoint would be mounted on.
    #[error(
        "the router already has a route at {0}; remove it, or build the parts with \
         Observability::builder(..).build() and mount the metrics router yourself"
    )]
    RouteConflict(&'static str),
    /// The separate metrics listener could not be started.
    #[error("cannot serve /metrics on {address}: {source}; check SOMA_METRICS_ADDR")]
    MetricsListener {
        /// The configured address.
        address: std::net::SocketAddr,
        /// Why binding failed (address in use, no runtime, ...).
        #[source]
        source: std::io::Error,
    },
    /// Observability was already installed in this process.
    #[error(
        "observability is already installed in this process; call setup_observability once, \
         or use Observability::builder(..).build() for parts that touch no global state"
    )]
    AlreadyInstalled,
    /// Another `tracing` subscriber is already the global default.
    #[error(
        "a global tracing subscriber is already set; remove the other subscriber initialisation \
         or build the parts with Observability::builder(..).build() and compose the layers yourself"
    )]
    SubscriberAlreadySet,
}

/// Flushing or shutting down telemetry failed.
///
/// Telemetry a collector outage kept from being delivered is not one of these errors: shutdown
/// logs it and returns `Ok` (see [`ObservabilityGuard::undelivered`](crate::ObservabilityGuard::undelivered)).
/// None of these errors means the application failed either: a service whose own work stopped
/// cleanly can log the error and exit 0.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// Shutdown did not finish within its deadline; pending telemetry may be lost.
    #[error("telemetry shutdown did not finish within {0:?}; pending telemetry may be lost")]
    Timeout(Duration),
    /// One or more providers reported errors while shutting down.
    #[error("telemetry shutdown reported errors: {}", .0.join("; "))]
    Providers(Vec<String>),
}

/// What shutdown could not deliver: spans and log records that were queued (or being exported)
/// when the deadline came, or whose last export failed, and why.
///
/// Displays as, for example, `telemetry shutdown lost 1200 spans and 3 log records within the
/// 10s deadline; traces: the collector could not be reached (...)`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Undelivered {
    /// Spans not delivered: failed in the final exports, not attempted because the deadline
    /// left no time for another attempt, or still in flight when it passed.
    pub spans: u64,
    /// Log records not delivered, counted the same way.
    pub log_records: u64,
    /// The shutdown deadline.
    pub deadline: Duration,
    /// Why, one entry per signal (`traces: ...`, `logs: ...`), plus any other provider error.
    pub causes: Vec<String>,
}

impl std::fmt::Display for Undelivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "telemetry shutdown lost {} span{} and {} log record{} within the {:?} deadline",
            self.spans,
            if self.spans == 1 { "" } else { "s" },
            self.log_records,
            if self.log_records == 1 { "" } else { "s" },
            self.deadline,
        )?;
        if !self.causes.is_empty() {
            write!(f, "; {}", self.causes.join("; "))?;
        }
        Ok(())
    }
}

impl std::error::Error for Undelivered {}

/// `Debug` is the readable message (see the [module docs](self)).
macro_rules! readable_debug {
    ($($error:ty),* $(,)?) => {$(
        impl std::fmt::Debug for $error {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write_readable(self, f)
            }
        }
    )*};
}

readable_debug!(ConfigError, SetupError, ShutdownError);

/// Writes `error`'s message, then each cause in its source chain that the message does not
/// already contain, in the `Caused by:` layout `anyhow` uses.
fn write_readable(
    error: &dyn std::error::Error,
    f: &mut std::fmt::Formatter<'_>,
) -> std::fmt::Result {
    let message = error.to_string();
    f.write_str(&message)?;
    let mut heading = false;
    let mut cause = error.source();
    while let Some(source) = cause {
        let text = source.to_string();
        if !message.contains(&text) {
            if !heading {
                f.write_str("\n\nCaused by:")?;
                heading = true;
            }
            write!(f, "\n    {text}")?;
        }
        cause = source.source();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_the_readable_message() {
        let err = SetupError::from(ConfigError::InvalidEnv {
            var: "OTEL_EXPORTER_OTLP_PROTOCOL",
            value: "htp".to_owned(),
            expected: "grpc or http/protobuf",
        });
        let expected =
            r#"OTEL_EXPORTER_OTLP_PROTOCOL="htp" is not valid: expected grpc or http/protobuf"#;
        assert_eq!(format!("{err:?}"), expected);
        assert_eq!(format!("{err:#?}"), expected);
        // What `main() -> Result<(), Box<dyn Error>>` prints.
        let boxed: Box<dyn std::error::Error> = Box::new(err);
        assert_eq!(format!("Error: {boxed:?}"), format!("Error: {expected}"));
        assert_eq!(
            format!(
                "{:?}",
                ShutdownError::Providers(vec!["traces: failed".to_owned()])
            ),
            "telemetry shutdown reported errors: traces: failed"
        );
    }

    #[test]
    fn debug_adds_causes_the_message_does_not_show() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let err = Outer(std::io::Error::other("inner cause"));
        let mut out = String::new();
        std::fmt::write(&mut out, format_args!("{}", Readable(&err))).unwrap();
        assert_eq!(out, "outer\n\nCaused by:\n    inner cause");

        let listener = SetupError::MetricsListener {
            address: ([127, 0, 0, 1], 9).into(),
            source: std::io::Error::other("address in use"),
        };
        assert_eq!(
            format!("{listener:?}"),
            listener.to_string(),
            "cause shown once"
        );
    }

    struct Readable<'a>(&'a dyn std::error::Error);
    impl std::fmt::Display for Readable<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write_readable(self.0, f)
        }
    }
}
