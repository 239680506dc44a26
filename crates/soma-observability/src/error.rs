//! Error types: one per group of operations.
//!
//! - [`ConfigError`]: a configuration value (from code or from an `OTEL_*` variable) is not valid.
//! - [`SetupError`]: building or installing the telemetry pipelines failed.
//! - [`ShutdownError`]: flushing or shutting down a provider failed or timed out.

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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
#[derive(Debug, thiserror::Error)]
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
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// Shutdown did not finish within its deadline; pending telemetry may be lost.
    #[error("telemetry shutdown did not finish within {0:?}; pending telemetry may be lost")]
    Timeout(Duration),
    /// One or more providers reported errors while shutting down.
    #[error("telemetry shutdown reported errors: {}", .0.join("; "))]
    Providers(Vec<String>),
}
