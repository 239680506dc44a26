//! Configuration, parsed once from the standard `OTEL_*` environment variables.
//!
//! [`ObservabilityConfig::from_env`] is the only place in the crate that reads the environment.
//! Every value is validated: a value that cannot be used gives a [`ConfigError`] naming the
//! variable, the value and what is accepted. An empty variable counts as unset.
//!
//! # Precedence
//!
//! Values set in code (the `with_*` methods of [`ObservabilityBuilder`](crate::ObservabilityBuilder),
//! or the fields of an [`ObservabilityConfig`] changed before it is given to
//! [`with_config`](crate::ObservabilityBuilder::with_config)) beat the environment, which beats
//! the defaults documented below.
//! Signal-specific variables (`OTEL_EXPORTER_OTLP_TRACES_*`) beat the generic ones
//! (`OTEL_EXPORTER_OTLP_*`).
//!
//! # Variables
//!
//! | Variable | Meaning | Default | If invalid |
//! |---|---|---|---|
//! | `OTEL_SERVICE_NAME` | `service.name` when the code gives none | the name passed to `setup_observability` wins | - |
//! | `OTEL_RESOURCE_ATTRIBUTES` | `k=v,k2=v2` resource attributes (percent-decoded) | none | error |
//! | `OTEL_SDK_DISABLED` | `true` turns off traces and logs export and span creation (metrics stay) | `false` | error |
//! | `OTEL_TRACES_EXPORTER` | `otlp`, `console` (stdout) or `none` | `otlp` (`none` without the `otlp` feature) | error; `otlp` without the feature too |
//! | `OTEL_LOGS_EXPORTER` | `otlp`, `console` (stdout) or `none` | `otlp` (`none` without the `otlp` feature) | error; `otlp` without the feature too |
//! | `OTEL_METRICS_EXPORTER` | `prometheus` (the `/metrics` endpoint), `otlp` (push, no `/metrics`), `prometheus,otlp` (both) or `none` (see [OTLP metrics push](#otlp-metrics-push)) | `prometheus` | error; `otlp` without the feature too |
//! | `OTEL_METRIC_EXPORT_INTERVAL` | milliseconds between two metric pushes (> 0) | `60000` | error |
//! | `OTEL_METRIC_EXPORT_TIMEOUT` | longest one metric push may take, retries included, in milliseconds (> 0) | `30000` | error |
//! | `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` | `cumulative`, `delta` or `lowmemory` (case-insensitive) | `cumulative` | error |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | collector base URL; `/v1/traces`, `/v1/logs`, `/v1/metrics` are appended for HTTP | `http://localhost:4318` (HTTP), `http://localhost:4317` (gRPC) | error |
//! | `OTEL_EXPORTER_OTLP_{TRACES,LOGS,METRICS}_ENDPOINT` | full URL for one signal, used as is | from the generic endpoint | error |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL`, `..._{TRACES,LOGS,METRICS}_PROTOCOL` | `grpc` (feature `grpc`) or `http/protobuf` | `http/protobuf` | error; `grpc` without the feature too |
//! | `OTEL_EXPORTER_OTLP_HEADERS`, `..._{TRACES,LOGS,METRICS}_HEADERS` | `k=v,k2=v2` sent with every export (percent-decoded) | none | error |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT`, `..._{TRACES,LOGS,METRICS}_TIMEOUT` | timeout of one export request in milliseconds (> 0) | `10000` | error |
//! | `OTEL_EXPORTER_OTLP_COMPRESSION`, `..._{TRACES,LOGS,METRICS}_COMPRESSION` | `gzip` or `none` (case-insensitive) | `none` | error |
//! | `OTEL_EXPORTER_OTLP_CERTIFICATE`, `..._{TRACES,METRICS,LOGS}_CERTIFICATE` | PEM file of the CA certificate(s) that verify the collector's TLS certificate; replaces the system roots (see [`tls`](crate::tls)) | unset: the system roots verify an `https://` endpoint | error (missing file, not PEM, no certificate, or an `http://` endpoint) |
//! | `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`, `..._{TRACES,METRICS,LOGS}_CLIENT_CERTIFICATE` | PEM file of this service's client certificate (chain) for mTLS; needs the key below | none | error (as above, or without a key) |
//! | `OTEL_EXPORTER_OTLP_CLIENT_KEY`, `..._{TRACES,METRICS,LOGS}_CLIENT_KEY` | PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1) | none | error (as above, no private key, or without a certificate) |
//! | `OTEL_TRACES_SAMPLER` | `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio` | `parentbased_always_on` | error |
//! | `OTEL_TRACES_SAMPLER_ARG` | ratio in `[0, 1]` for the `*traceidratio` samplers | `1.0` | error |
//! | `OTEL_PROPAGATORS` | comma list of `tracecontext`, `baggage`, `none` | `tracecontext,baggage` | error |
//! | `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BLRP_SCHEDULE_DELAY` | export interval in ms (> 0; `0` would busy-spin) | `1000` | error |
//! | `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BLRP_MAX_QUEUE_SIZE` | queue size (> 0; `0` would drop everything) | `16384` | error |
//! | `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BLRP_MAX_EXPORT_BATCH_SIZE` | spans or logs per export (> 0) | `1024` | error; clamped to the queue size with a warning |
//! | `SOMA_BSP_MAX_EXPORT_BATCH_BYTES` | the most bytes one span export request carries (the encoded `ExportTraceServiceRequest`, before gzip): a larger batch is split, and a span larger than this on its own is dropped and counted (`otel_sdk_span_dropped_total{error_type="too_large"}`). Keep it under the collector's limit (its gRPC receiver's `max_recv_msg_size_mib`, 4 MiB by default) | `3145728` (3 MiB) | error |
//! | `OTEL_METRICS_EXEMPLAR_FILTER` | which histogram measurements become exemplars on `/metrics` (OpenMetrics only): `trace_based` (inside a sampled span), `always_on`, `always_off` | `trace_based` | error |
//! | `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT` | longest string attribute taken from a request (user agent, path, query), in bytes | `1024` | error |
//! | `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST`, `..._SERVER_RESPONSE` | comma-separated header names (case-insensitive, at most 32) recorded on server spans as `http.{request,response}.header.<name>` (see [`http::headers`](crate::http::headers)) | none | error |
//! | `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST`, `..._CLIENT_RESPONSE` | the same for [`HttpClient`](crate::HttpClient) spans | none | error |
//! | `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS` | names whose captured header values are recorded as `[REDACTED]` and whose query parameter values are `REDACTED` in `url.query` and `url.full` (credentials always are) | none | error |
//! | `RUST_LOG` | `tracing` filter for stdout and OTLP logs | `info,opentelemetry=warn` | error |
//! | `SOMA_SHUTDOWN_DRAIN_TIMEOUT` | after SIGTERM/SIGINT ([`shutdown_signal`](crate::shutdown_signal)), how long requests in flight may take, in ms; then the connections still open ([`Draining`](crate::Draining) listeners) are closed. Keep it plus the guard's shutdown timeout (10 s) under Kubernetes' `terminationGracePeriodSeconds` (30 s by default) | `15000` | error at setup; `shutdown_signal` warns and uses the default |
//! | `SOMA_LOG_FORMAT` | stdout log format: `text` or `json` | `text` | error |
//! | `SOMA_METRICS_ADDR` | serve `/metrics` on this separate address (e.g. `0.0.0.0:9464`) and not on the application's port | unset: `/metrics` on the application's router | error |
//! | `SOMA_RUNTIME_METRICS` | `false` leaves out the tokio runtime metrics (`tokio_runtime_*`, see [`runtime`](crate::runtime)) | `true` | error |
//! | `SOMA_TRUSTED_PROTO_HEADER` | the header your reverse proxy sets to the client's scheme, trusted for `url.scheme`: `x-forwarded-proto`, `forwarded` (its `proto=`) or `none`. Set it only when every request comes through that proxy and the proxy overwrites (or appends to) the header | `none`: `url.scheme` is the listener's (`http`, or `https` with [`with_tls_listener`](crate::ObservabilityBuilder::with_tls_listener)); the request line never decides | error |
//!
//! # OTLP metrics push
//!
//! `OTEL_METRICS_EXPORTER=otlp` pushes metrics to a collector instead of serving `/metrics`;
//! `prometheus,otlp` does both; `prometheus` (the default) only serves `/metrics`; `none` does
//! neither (the HTTP layer then records no metrics). With `otlp` alone `/metrics` is not
//! mounted (a request for it gets the application's 404) and no Prometheus reader is attached to
//! the meter provider.
//!
//! **What is pushed:** every instrument of the meter provider: the HTTP server instruments
//! (`http.server.request.duration`, active requests, body sizes), [`HttpClient`](crate::HttpClient)'s,
//! the crate's own `otel.sdk.*` export counters, and every instrument made with
//! [`get_meter`](crate::get_meter) or [`ObservabilityParts::meter`](crate::ObservabilityParts::meter)
//! (in their OpenTelemetry form: dotted names, units, histograms with their bucket boundaries).
//! **What is not pushed:** the process metrics (`process_*`), the tokio runtime metrics
//! (`tokio_runtime_*`), `target_info` as a series (the resource travels with every push
//! instead), collectors registered in [`ObservabilityParts::registry`](crate::ObservabilityParts::registry)
//! and exemplars: they are written at scrape time by `/metrics` and are not SDK instruments.
//!
//! **When:** every `OTEL_METRIC_EXPORT_INTERVAL` (default 60 s) from a thread of its own
//! (requests only record into the SDK's in-memory aggregates), and once more when
//! [`ObservabilityGuard::shutdown`](crate::ObservabilityGuard::shutdown) runs, after traces and
//! logs, within the same deadline. One push may take at most `OTEL_METRIC_EXPORT_TIMEOUT`
//! (default 30 s, the exporter's retries included) and never longer than what is left of the
//! shutdown deadline; a push still running then is abandoned.
//!
//! **Temporality** (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`, see
//! [`MetricsTemporality`]): `cumulative` pushes totals since start (a failed push loses no
//! counts, the next one carries them); `delta` pushes what happened in the interval (a failed
//! push loses that interval's points); `lowmemory` is delta for counters and histograms.
//!
//! **Failures** are counted on `/metrics` (and in the next successful push) as
//! `otel_sdk_exporter_metric_data_point_exported_total{error_type="export_failed"}` (per data
//! point; without `error_type` on success), and warned about on stdout (rate-limited). Nothing
//! is queued between pushes: memory stays the aggregates' (bounded by the SDK's cardinality
//! limit of 2 000 attribute sets per instrument), whatever the collector does.

pub use crate::exemplars::ExemplarFilter;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderName;

use crate::error::ConfigError;

/// Declares each variable's name as a constant of the same name, documented by the
/// [table of variables](self#variables), the one place that explains them.
macro_rules! variables {
    ($($name:ident),* $(,)?) => {$(
        #[doc = concat!("`", stringify!($name), "`: see [Variables](self#variables).")]
        pub const $name: &str = stringify!($name);
    )*};
}

variables! {
    OTEL_SERVICE_NAME,
    OTEL_RESOURCE_ATTRIBUTES,
    OTEL_SDK_DISABLED,
    OTEL_TRACES_EXPORTER,
    OTEL_LOGS_EXPORTER,
    OTEL_METRICS_EXPORTER,
    OTEL_METRIC_EXPORT_INTERVAL,
    OTEL_METRIC_EXPORT_TIMEOUT,
    OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    OTEL_EXPORTER_OTLP_METRICS_HEADERS,
    OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
    OTEL_EXPORTER_OTLP_COMPRESSION,
    OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
    OTEL_EXPORTER_OTLP_LOGS_COMPRESSION,
    OTEL_EXPORTER_OTLP_METRICS_COMPRESSION,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    OTEL_EXPORTER_OTLP_LOGS_HEADERS,
    OTEL_EXPORTER_OTLP_TIMEOUT,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    OTEL_EXPORTER_OTLP_LOGS_TIMEOUT,
    OTEL_EXPORTER_OTLP_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
    OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE,
    OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY,
    OTEL_TRACES_SAMPLER,
    OTEL_TRACES_SAMPLER_ARG,
    OTEL_PROPAGATORS,
    OTEL_BSP_SCHEDULE_DELAY,
    OTEL_BSP_MAX_QUEUE_SIZE,
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BLRP_SCHEDULE_DELAY,
    OTEL_BLRP_MAX_QUEUE_SIZE,
    OTEL_BLRP_MAX_EXPORT_BATCH_SIZE,
    OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS,
    RUST_LOG,
    OTEL_METRICS_EXEMPLAR_FILTER,
    SOMA_BSP_MAX_EXPORT_BATCH_BYTES,
    SOMA_SHUTDOWN_DRAIN_TIMEOUT,
    SOMA_LOG_FORMAT,
    SOMA_METRICS_ADDR,
    SOMA_RUNTIME_METRICS,
    SOMA_TRUSTED_PROTO_HEADER,
}

/// Where a signal is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExporterKind {
    /// OTLP to a collector.
    Otlp,
    /// Human-readable lines on stdout, for local work.
    Console,
    /// Not exported at all.
    None,
}

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318).
    HttpProtobuf,
}

/// How OTLP export requests are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// Sent as is.
    #[default]
    None,
    /// gzip (`Content-Encoding: gzip` over HTTP, `grpc-encoding: gzip` over gRPC).
    Gzip,
}

/// Which aggregation temporality pushed metrics use
/// (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`, as the OTLP exporter specification
/// defines the three choices). `/metrics` is always cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricsTemporality {
    /// Every push carries the totals since the start.
    #[default]
    Cumulative,
    /// Counters, histograms and gauges carry what happened since the previous push;
    /// up-down counters stay cumulative.
    Delta,
    /// Counters and histograms are delta, everything else cumulative.
    LowMemory,
}

/// How stdout logs are formatted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// The sampler applied to new traces.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Sampler {
    /// Record every trace.
    AlwaysOn,
    /// Record no trace.
    AlwaysOff,
    /// Record a fixed fraction of traces, chosen by trace id.
    TraceIdRatio(f64),
    /// Follow the caller's decision; for root spans use the inner sampler.
    ParentBased(ParentBasedRoot),
}

/// The root decision of a parent-based sampler.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum ParentBasedRoot {
    /// Sample every root span.
    AlwaysOn,
    /// Sample no root span.
    AlwaysOff,
    /// Sample a fraction of root spans.
    TraceIdRatio(f64),
}

/// A context propagator named in `OTEL_PROPAGATORS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Propagator {
    /// W3C `traceparent` / `tracestate`.
    TraceContext,
    /// W3C `baggage`.
    Baggage,
}

/// A header through which a trusted reverse proxy tells the service the scheme the client used
/// (see [`ObservabilityBuilder::with_trusted_proto_header`](crate::ObservabilityBuilder::with_trusted_proto_header)).
///
/// When a request carries the header several times or as a list, the last value counts: that
/// is the one the nearest proxy (yours) wrote. A value other than `http` or `https`, or a
/// missing header, leaves the listener's scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtoHeader {
    /// `X-Forwarded-Proto: https` (nginx, AWS load balancers, most ingress controllers).
    XForwardedProto,
    /// `Forwarded: for=192.0.2.1;proto=https` (RFC 7239): the `proto` parameter.
    Forwarded,
}

/// The most header names one list of [`HeaderCapture`] may hold.
pub const MAX_CAPTURED_HEADERS: usize = 32;

/// Which headers become span attributes (see [`http::headers`](crate::http::headers)). Names are
/// case-insensitive; every list is empty by default.
///
/// ```
/// use soma_observability::http::HeaderCapture;
///
/// let capture = HeaderCapture {
///     server_request: vec!["X-Request-Id".into(), "Accept".into()],
///     server_response: vec!["Content-Type".into()],
///     sanitize: vec!["X-Tenant-Secret-Ish".into()],
///     ..HeaderCapture::default()
/// };
/// # let _ = capture;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderCapture {
    /// Request headers recorded on server spans (`http.request.header.<name>`).
    pub server_request: Vec<String>,
    /// Response headers recorded on server spans (`http.response.header.<name>`).
    pub server_response: Vec<String>,
    /// Request headers recorded on [`HttpClient`](crate::HttpClient) spans.
    pub client_request: Vec<String>,
    /// Response headers recorded on [`HttpClient`](crate::HttpClient) spans.
    pub client_response: Vec<String>,
    /// Extra headers whose values are redacted, besides the always-sensitive ones.
    pub sanitize: Vec<String>,
}

/// Parses a comma-separated list of header names (the environment's form); `None` if a name is
/// not a valid header name or there are more than [`MAX_CAPTURED_HEADERS`].
pub(crate) fn parse_names(value: &str) -> Option<Vec<String>> {
    let names: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let valid = names.len() <= MAX_CAPTURED_HEADERS
        && names
            .iter()
            .all(|n| HeaderName::from_bytes(n.as_bytes()).is_ok());
    valid.then_some(names)
}

/// Where and how one signal (traces, logs or pushed metrics) is exported over OTLP.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OtlpConfig {
    /// The exporter for this signal.
    pub exporter: ExporterKind,
    /// The transport.
    pub protocol: Protocol,
    /// The full URL the exporter sends to.
    pub endpoint: String,
    /// Headers (gRPC metadata) sent with every export.
    pub headers: BTreeMap<String, String>,
    /// How long one export request may take.
    pub timeout: Duration,
    /// How export requests are compressed.
    pub compression: Compression,
    /// PEM file of the CA certificate(s) that verify the collector (`https://` endpoints only);
    /// `None`: the system roots. See [`tls`](crate::tls).
    pub certificate: Option<PathBuf>,
    /// PEM file of the client certificate (chain) for mTLS; set with
    /// [`client_key`](Self::client_key).
    pub client_certificate: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub client_key: Option<PathBuf>,
    /// Batch processor: how often a batch is sent. For metrics: the export interval
    /// (`OTEL_METRIC_EXPORT_INTERVAL`).
    pub schedule_delay: Duration,
    /// Batch processor: how many items may wait; more are dropped (and counted). Not used by
    /// metrics.
    pub max_queue_size: usize,
    /// Batch processor: how many items one export carries. Not used by metrics.
    pub max_export_batch_size: usize,
}

impl OtlpConfig {
    /// The endpoint and TLS files, as [`tls`](crate::tls) checks and applies them.
    pub(crate) fn tls(&self) -> crate::tls::Settings<'_> {
        crate::tls::Settings {
            endpoint: &self.endpoint,
            certificate: self.certificate.as_deref(),
            client_certificate: self.client_certificate.as_deref(),
            client_key: self.client_key.as_deref(),
        }
    }
}

/// All telemetry settings, typed and validated.
///
/// Build it with [`ObservabilityConfig::from_env`] (or [`ObservabilityConfig::from_lookup`] in
/// tests), then adjust it in code; code beats the environment.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::struct_excessive_bools)] // independent on/off settings, one per variable
#[non_exhaustive]
pub struct ObservabilityConfig {
    /// `service.name`, when the code does not set one.
    pub service_name: Option<String>,
    /// Extra resource attributes, in addition to `service.name` and the SDK's own.
    pub resource_attributes: BTreeMap<String, String>,
    /// `OTEL_SDK_DISABLED`: no spans are created and nothing is exported over OTLP.
    pub sdk_disabled: bool,
    /// Whether `/metrics` is served (`OTEL_METRICS_EXPORTER` names `prometheus`).
    pub metrics_enabled: bool,
    /// Trace export.
    pub traces: OtlpConfig,
    /// Log export.
    pub logs: OtlpConfig,
    /// Metrics push over OTLP (`OTEL_METRICS_EXPORTER` names `otlp`): exporter
    /// [`ExporterKind::Otlp`] pushes, [`ExporterKind::None`] does not (`console` is not
    /// supported for metrics). See [OTLP metrics push](self#otlp-metrics-push).
    pub metrics: OtlpConfig,
    /// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`: the temporality of pushed metrics.
    pub metrics_temporality: MetricsTemporality,
    /// `OTEL_METRIC_EXPORT_TIMEOUT`: the longest one metric push may take, the exporter's
    /// retries included; a push still running then is abandoned and counted as failed.
    pub metric_export_timeout: Duration,
    /// The sampler for new traces.
    pub sampler: Sampler,
    /// The propagators for incoming and outgoing requests.
    pub propagators: Vec<Propagator>,
    /// The longest string attribute taken from a request, in bytes.
    pub attribute_value_length_limit: usize,
    /// `SOMA_BSP_MAX_EXPORT_BATCH_BYTES`: the most bytes one span export request carries; larger
    /// batches are split, and a span larger on its own is dropped and counted.
    pub max_export_batch_bytes: usize,
    /// `SOMA_SHUTDOWN_DRAIN_TIMEOUT`: how long [`shutdown_signal`](crate::shutdown_signal) lets
    /// requests in flight finish before [`Draining`](crate::Draining) listeners close the rest.
    pub shutdown_drain_timeout: Duration,
    /// The `tracing` filter directives (`RUST_LOG` syntax).
    pub log_filter: String,
    /// The stdout log format.
    pub log_format: LogFormat,
    /// Serve `/metrics` on this separate (internal) address instead of the application's router.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Whether `/metrics` shows the tokio runtime metrics (see [`runtime`](crate::runtime)).
    pub runtime_metrics: bool,
    /// Which HTTP headers become span attributes (see [`http::headers`](crate::http::headers)).
    pub capture_headers: HeaderCapture,
    /// `SOMA_TRUSTED_PROTO_HEADER`: the proxy header trusted for `url.scheme` (`None`: the
    /// listener's scheme, whatever the request says).
    pub trusted_proto_header: Option<ProtoHeader>,
    /// Whether the listener serving the instrumented router terminates TLS (`url.scheme` is then
    /// `https`). Not read from the environment: the code that binds the listener knows it.
    pub tls_listener: bool,
    /// `OTEL_METRICS_EXEMPLAR_FILTER`: which histogram measurements become exemplars.
    pub exemplar_filter: ExemplarFilter,
}

/// Default batch delay: short enough that a short-lived job exports, long enough to batch.
const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_secs(1);
/// Default queue size: keeps up with ~16 k spans/s bursts at the default delay, bounded to a few MiB.
const DEFAULT_MAX_QUEUE_SIZE: usize = 16_384;
/// Default export batch size.
const DEFAULT_MAX_EXPORT_BATCH_SIZE: usize = 1_024;
/// Default export timeout (the OpenTelemetry specification's).
const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default metric export interval (the OpenTelemetry specification's).
const DEFAULT_METRIC_EXPORT_INTERVAL: Duration = Duration::from_secs(60);
/// Default bound on one metric push (the OpenTelemetry specification's).
const DEFAULT_METRIC_EXPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `tracing` filter: the application at info, the SDK's own chatter at warn.
const DEFAULT_LOG_FILTER: &str = "info,opentelemetry=warn";
/// Default bound on one span export request: under the 4 MiB an OpenTelemetry Collector's
/// gRPC receiver accepts by default, with room for the request's framing and headers.
pub(crate) const DEFAULT_MAX_EXPORT_BATCH_BYTES: usize = 3 * 1024 * 1024;
/// Default limit for string attributes taken from requests.
pub(crate) const DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT: usize = 1_024;

impl ObservabilityConfig {
    /// Reads and validates every supported `OTEL_*` variable (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidEnv`] for the first variable whose value cannot be used.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), but reads variables through `lookup`, so tests can
    /// supply an environment without touching the process's.
    ///
    /// ```
    /// use soma_observability::{ConfigError, ObservabilityConfig};
    ///
    /// let err = ObservabilityConfig::from_lookup(|name| {
    ///     (name == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| "htp".to_owned())
    /// })
    /// .unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     r#"OTEL_EXPORTER_OTLP_PROTOCOL="htp" is not valid: expected grpc or http/protobuf"#
    /// );
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidEnv`] for the first variable whose value cannot be used.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        // Read in this order: of several invalid variables, the first is the one reported.
        let signals = env.signals()?;
        Ok(Self {
            service_name: env.get(OTEL_SERVICE_NAME),
            resource_attributes: env.resource_attributes()?,
            sdk_disabled: signals.sdk_disabled,
            metrics_enabled: signals.metrics_enabled,
            traces: signals.traces,
            logs: signals.logs,
            metrics: signals.metrics,
            metrics_temporality: signals.metrics_temporality,
            metric_export_timeout: signals.metric_export_timeout,
            sampler: env.sampler()?,
            propagators: env.propagators()?,
            attribute_value_length_limit: env.attribute_value_length_limit()?,
            max_export_batch_bytes: env.max_export_batch_bytes()?,
            shutdown_drain_timeout: shutdown_drain_timeout(&lookup)?,
            log_filter: env.log_filter()?,
            log_format: env.log_format()?,
            metrics_address: env.metrics_address()?,
            runtime_metrics: env.runtime_metrics()?,
            capture_headers: env.capture_headers()?,
            trusted_proto_header: env.trusted_proto_header()?,
            tls_listener: false,
            exemplar_filter: env.exemplar_filter()?,
        })
    }

    /// Whether spans are created at all.
    pub(crate) fn traces_enabled(&self) -> bool {
        !self.sdk_disabled && self.traces.exporter != ExporterKind::None
    }

    /// Whether log records are exported (stdout logging is always on).
    pub(crate) fn logs_exported(&self) -> bool {
        !self.sdk_disabled && self.logs.exporter != ExporterKind::None
    }

    /// Whether metrics are pushed over OTLP.
    pub(crate) fn metrics_pushed(&self) -> bool {
        self.metrics.exporter == ExporterKind::Otlp
    }

    /// Whether the HTTP layer records metrics at all: for `/metrics`, for the push, or both.
    pub(crate) fn metrics_recorded(&self) -> bool {
        self.metrics_enabled || self.metrics_pushed()
    }
}

/// What [`ObservabilityConfig::from_lookup`] reads first: which signals are exported, and how.
struct Signals {
    sdk_disabled: bool,
    metrics_enabled: bool,
    traces: OtlpConfig,
    logs: OtlpConfig,
    metrics: OtlpConfig,
    metrics_temporality: MetricsTemporality,
    metric_export_timeout: Duration,
}

/// The generic `OTEL_EXPORTER_OTLP_*` values, which the per-signal ones override.
struct Generic {
    endpoint: Option<String>,
    protocol: Option<Protocol>,
    headers: Option<BTreeMap<String, String>>,
    timeout: Option<Duration>,
    compression: Option<Compression>,
    /// `OTEL_SDK_DISABLED=true`: nothing is exported, so the TLS files are not checked.
    sdk_disabled: bool,
}

/// The generic TLS variables (their values are looked up per signal).
const GENERIC_TLS: crate::tls::Vars = crate::tls::Vars {
    certificate: OTEL_EXPORTER_OTLP_CERTIFICATE,
    client_certificate: OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
    client_key: OTEL_EXPORTER_OTLP_CLIENT_KEY,
};

/// The variable names of one signal (metrics have no queue).
struct SignalVars {
    endpoint: &'static str,
    protocol: &'static str,
    headers: &'static str,
    timeout: &'static str,
    compression: &'static str,
    /// `OTEL_EXPORTER_OTLP_<SIGNAL>_{CERTIFICATE,CLIENT_CERTIFICATE,CLIENT_KEY}`.
    tls: crate::tls::Vars,
    schedule_delay: &'static str,
    default_schedule_delay: Duration,
    max_queue_size: Option<&'static str>,
    max_export_batch_size: Option<&'static str>,
    http_path: &'static str,
}

const TRACES: SignalVars = SignalVars {
    endpoint: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    protocol: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    headers: OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    timeout: OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    compression: OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
    tls: crate::tls::Vars {
        certificate: OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
        client_certificate: OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
        client_key: OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
    },
    schedule_delay: OTEL_BSP_SCHEDULE_DELAY,
    default_schedule_delay: DEFAULT_SCHEDULE_DELAY,
    max_queue_size: Some(OTEL_BSP_MAX_QUEUE_SIZE),
    max_export_batch_size: Some(OTEL_BSP_MAX_EXPORT_BATCH_SIZE),
    http_path: "/v1/traces",
};

const LOGS: SignalVars = SignalVars {
    endpoint: OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
    protocol: OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
    headers: OTEL_EXPORTER_OTLP_LOGS_HEADERS,
    timeout: OTEL_EXPORTER_OTLP_LOGS_TIMEOUT,
    compression: OTEL_EXPORTER_OTLP_LOGS_COMPRESSION,
    tls: crate::tls::Vars {
        certificate: OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE,
        client_certificate: OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE,
        client_key: OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY,
    },
    schedule_delay: OTEL_BLRP_SCHEDULE_DELAY,
    default_schedule_delay: DEFAULT_SCHEDULE_DELAY,
    max_queue_size: Some(OTEL_BLRP_MAX_QUEUE_SIZE),
    max_export_batch_size: Some(OTEL_BLRP_MAX_EXPORT_BATCH_SIZE),
    http_path: "/v1/logs",
};

const METRICS: SignalVars = SignalVars {
    endpoint: OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    protocol: OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    headers: OTEL_EXPORTER_OTLP_METRICS_HEADERS,
    timeout: OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
    compression: OTEL_EXPORTER_OTLP_METRICS_COMPRESSION,
    tls: crate::tls::Vars {
        certificate: OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE,
        client_certificate: OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE,
        client_key: OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY,
    },
    schedule_delay: OTEL_METRIC_EXPORT_INTERVAL,
    default_schedule_delay: DEFAULT_METRIC_EXPORT_INTERVAL,
    max_queue_size: None,
    max_export_batch_size: None,
    http_path: "/v1/metrics",
};

/// The default of `SOMA_SHUTDOWN_DRAIN_TIMEOUT`: with the guard's 10 s shutdown, 25 s, under
/// Kubernetes' default `terminationGracePeriodSeconds` of 30 s.
pub const DEFAULT_SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// `SOMA_SHUTDOWN_DRAIN_TIMEOUT` read through `lookup` (see [Variables](self#variables)).
pub(crate) fn shutdown_drain_timeout(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Duration, ConfigError> {
    Ok(Env(lookup)
        .parse(
            SOMA_SHUTDOWN_DRAIN_TIMEOUT,
            "a positive number of milliseconds",
            parse_positive_millis,
        )?
        .unwrap_or(DEFAULT_SHUTDOWN_DRAIN_TIMEOUT))
}

/// A view of the environment that treats empty values as unset.
struct Env<'a, F>(&'a F);

impl<F: Fn(&str) -> Option<String>> Env<'_, F> {
    fn get(&self, var: &str) -> Option<String> {
        (self.0)(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn parse<T>(
        &self,
        var: &'static str,
        expected: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(var)
            .map(|value| {
                parse(&value).ok_or(ConfigError::InvalidEnv {
                    var,
                    value,
                    expected,
                })
            })
            .transpose()
    }

    // Signals: which are exported, where and how.

    /// The exporters, their OTLP settings and the metrics push, checked against this build's
    /// features.
    fn signals(&self) -> Result<Signals, ConfigError> {
        let sdk_disabled = self.parse(OTEL_SDK_DISABLED, "true or false", parse_bool)?;
        let (metrics_enabled, metrics_pushed) = self
            .parse(
                OTEL_METRICS_EXPORTER,
                "prometheus, otlp, prometheus,otlp or none",
                parse_metrics_exporters,
            )?
            .unwrap_or((true, false));
        let generic = self.generic(sdk_disabled == Some(true))?;
        let mut traces = self.otlp(&generic, self.exporter(OTEL_TRACES_EXPORTER)?, &TRACES)?;
        let mut logs = self.otlp(&generic, self.exporter(OTEL_LOGS_EXPORTER)?, &LOGS)?;
        let pushed = if metrics_pushed {
            ExporterKind::Otlp
        } else {
            ExporterKind::None
        };
        let mut metrics = self.otlp(&generic, pushed, &METRICS)?;
        let metrics_temporality = self.metrics_temporality()?;
        let metric_export_timeout = self
            .parse(
                OTEL_METRIC_EXPORT_TIMEOUT,
                "a positive number of milliseconds",
                parse_positive_millis,
            )?
            .unwrap_or(DEFAULT_METRIC_EXPORT_TIMEOUT);
        if sdk_disabled != Some(true) {
            // What this build was compiled without is an error, never ignored.
            self.resolve_features(&mut traces, crate::Signal::Traces)?;
            self.resolve_features(&mut logs, crate::Signal::Logs)?;
        }
        // Metrics are not turned off by OTEL_SDK_DISABLED (they never were): check them always.
        self.resolve_features(&mut metrics, crate::Signal::Metrics)?;
        Ok(Signals {
            sdk_disabled: sdk_disabled.unwrap_or(false),
            metrics_enabled,
            traces,
            logs,
            metrics,
            metrics_temporality,
            metric_export_timeout,
        })
    }

    /// The generic `OTEL_EXPORTER_OTLP_*` values.
    fn generic(&self, sdk_disabled: bool) -> Result<Generic, ConfigError> {
        Ok(Generic {
            endpoint: self.parse(
                OTEL_EXPORTER_OTLP_ENDPOINT,
                "an http:// or https:// URL",
                parse_endpoint,
            )?,
            protocol: self.parse(
                OTEL_EXPORTER_OTLP_PROTOCOL,
                "grpc or http/protobuf",
                parse_protocol,
            )?,
            headers: self.parse(
                OTEL_EXPORTER_OTLP_HEADERS,
                "comma-separated key=value pairs",
                parse_pairs,
            )?,
            timeout: self.parse(
                OTEL_EXPORTER_OTLP_TIMEOUT,
                "a positive number of milliseconds",
                parse_positive_millis,
            )?,
            compression: self.parse(
                OTEL_EXPORTER_OTLP_COMPRESSION,
                "gzip or none",
                parse_compression,
            )?,
            sdk_disabled,
        })
    }

    fn metrics_temporality(&self) -> Result<MetricsTemporality, ConfigError> {
        Ok(self
            .parse(
                OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
                "cumulative, delta or lowmemory",
                |v| match v.to_ascii_lowercase().as_str() {
                    "cumulative" => Some(MetricsTemporality::Cumulative),
                    "delta" => Some(MetricsTemporality::Delta),
                    "lowmemory" => Some(MetricsTemporality::LowMemory),
                    _ => None,
                },
            )?
            .unwrap_or_default())
    }

    /// Checks `otlp`, read from the environment, against this build's features (see
    /// `features`); without `otlp` and with no variable asking for it, the exporter is none.
    fn resolve_features(
        &self,
        otlp: &mut OtlpConfig,
        signal: crate::Signal,
    ) -> Result<(), ConfigError> {
        let (exporter, endpoint, protocol) = match signal {
            crate::Signal::Logs => (
                OTEL_LOGS_EXPORTER,
                OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
                OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
            ),
            crate::Signal::Metrics => (
                OTEL_METRICS_EXPORTER,
                OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
                OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
            ),
            _ => (
                OTEL_TRACES_EXPORTER,
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
            ),
        };
        let vars = crate::features::Vars {
            exporter,
            endpoint,
            protocol,
            any_endpoint: OTEL_EXPORTER_OTLP_ENDPOINT,
            any_protocol: OTEL_EXPORTER_OTLP_PROTOCOL,
        };
        let asked = crate::features::Asked {
            otlp: otlp.exporter == ExporterKind::Otlp,
            grpc: otlp.protocol == Protocol::Grpc,
        };
        if crate::features::resolve_env(&vars, asked, |var| self.get(var))?
            == crate::features::Resolved::NoExporter
        {
            otlp.exporter = ExporterKind::None;
        }
        Ok(())
    }

    /// `OTEL_TRACES_EXPORTER` or `OTEL_LOGS_EXPORTER`.
    fn exporter(&self, var: &'static str) -> Result<ExporterKind, ConfigError> {
        Ok(self
            .parse(var, "otlp, console or none", |v| match v {
                "otlp" => Some(ExporterKind::Otlp),
                "console" => Some(ExporterKind::Console),
                "none" => Some(ExporterKind::None),
                _ => None,
            })?
            .unwrap_or(ExporterKind::Otlp))
    }

    fn otlp(
        &self,
        generic: &Generic,
        exporter: ExporterKind,
        vars: &SignalVars,
    ) -> Result<OtlpConfig, ConfigError> {
        let protocol = self
            .parse(vars.protocol, "grpc or http/protobuf", parse_protocol)?
            .or(generic.protocol)
            .unwrap_or(Protocol::HttpProtobuf);
        let endpoint = if let Some(endpoint) =
            self.parse(vars.endpoint, "an http:// or https:// URL", parse_endpoint)?
        {
            endpoint
        } else {
            {
                let base = generic.endpoint.as_deref().unwrap_or(match protocol {
                    Protocol::Grpc => "http://localhost:4317",
                    Protocol::HttpProtobuf => "http://localhost:4318",
                });
                match protocol {
                    Protocol::Grpc => base.to_owned(),
                    Protocol::HttpProtobuf => {
                        format!("{}{}", base.trim_end_matches('/'), vars.http_path)
                    }
                }
            }
        };
        let headers = self
            .parse(vars.headers, "comma-separated key=value pairs", parse_pairs)?
            .or_else(|| generic.headers.clone())
            .unwrap_or_default();
        let timeout = self
            .parse(
                vars.timeout,
                "a positive number of milliseconds",
                parse_positive_millis,
            )?
            .or(generic.timeout)
            .unwrap_or(DEFAULT_EXPORT_TIMEOUT);
        let compression = self
            .parse(vars.compression, "gzip or none", parse_compression)?
            .or(generic.compression)
            .unwrap_or_default();
        let schedule_delay = self
            .parse(
                vars.schedule_delay,
                "a positive number of milliseconds (0 would make the export thread spin)",
                parse_positive_millis,
            )?
            .unwrap_or(vars.default_schedule_delay);
        let max_queue_size = vars
            .max_queue_size
            .map(|var| {
                self.parse(
                    var,
                    "a positive whole number (0 would drop everything)",
                    parse_positive,
                )
            })
            .transpose()?
            .flatten()
            .unwrap_or(DEFAULT_MAX_QUEUE_SIZE);
        let mut max_export_batch_size = vars
            .max_export_batch_size
            .map(|var| self.parse(var, "a positive whole number", parse_positive))
            .transpose()?
            .flatten()
            .unwrap_or(DEFAULT_MAX_EXPORT_BATCH_SIZE);
        if max_export_batch_size > max_queue_size {
            tracing::warn!(
                variable = vars.max_export_batch_size.unwrap_or_default(),
                batch = max_export_batch_size,
                queue = max_queue_size,
                "export batch size is larger than the queue; clamped to the queue size"
            );
            max_export_batch_size = max_queue_size;
        }
        let (tls_vars, [certificate, client_certificate, client_key]) =
            self.tls_files(&GENERIC_TLS, &vars.tls);
        let otlp = OtlpConfig {
            exporter,
            protocol,
            endpoint,
            headers,
            timeout,
            compression,
            certificate,
            client_certificate,
            client_key,
            schedule_delay,
            max_queue_size,
            max_export_batch_size,
        };
        if exporter == ExporterKind::Otlp && !generic.sdk_disabled {
            // A file that cannot be used is a startup error naming the variable it came from.
            crate::tls::check(otlp.tls(), &tls_vars)?;
        }
        Ok(otlp)
    }

    /// One signal's TLS files (certificate, client certificate, client key): each from the
    /// signal's variable, else the generic one; and the variable each came from, for errors. An
    /// unset half of the client certificate pair is named at the level (signal or generic) of
    /// the half that is set.
    fn tls_files(
        &self,
        generic: &crate::tls::Vars,
        signal: &crate::tls::Vars,
    ) -> (crate::tls::Vars, [Option<PathBuf>; 3]) {
        let file = |signal: &'static str, generic: &'static str| {
            [signal, generic]
                .into_iter()
                .find_map(|var| self.get(var).map(|path| (var, PathBuf::from(path))))
        };
        let certificate = file(signal.certificate, generic.certificate);
        let client_certificate = file(signal.client_certificate, generic.client_certificate);
        let client_key = file(signal.client_key, generic.client_key);
        let pair_from_signal = [&client_certificate, &client_key]
            .into_iter()
            .flatten()
            .any(|(var, _)| *var == signal.client_certificate || *var == signal.client_key);
        let unset = |signal, generic| if pair_from_signal { signal } else { generic };
        let source = |file: &Option<(&'static str, PathBuf)>, default| {
            file.as_ref().map_or(default, |f| f.0)
        };
        let vars = crate::tls::Vars {
            certificate: source(&certificate, signal.certificate),
            client_certificate: source(
                &client_certificate,
                unset(signal.client_certificate, generic.client_certificate),
            ),
            client_key: source(&client_key, unset(signal.client_key, generic.client_key)),
        };
        let path = |file: Option<(&'static str, PathBuf)>| file.map(|f| f.1);
        (
            vars,
            [
                path(certificate),
                path(client_certificate),
                path(client_key),
            ],
        )
    }

    // Sampler and propagators.

    fn sampler(&self) -> Result<Sampler, ConfigError> {
        let arg = self.parse(OTEL_TRACES_SAMPLER_ARG, "a number between 0 and 1", |v| {
            v.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r))
        })?;
        let ratio = arg.unwrap_or(1.0);
        Ok(self
            .parse(
                OTEL_TRACES_SAMPLER,
                "always_on, always_off, traceidratio, parentbased_always_on, \
                 parentbased_always_off or parentbased_traceidratio",
                |v| match v {
                    "always_on" => Some(Sampler::AlwaysOn),
                    "always_off" => Some(Sampler::AlwaysOff),
                    "traceidratio" => Some(Sampler::TraceIdRatio(ratio)),
                    "parentbased_always_on" => {
                        Some(Sampler::ParentBased(ParentBasedRoot::AlwaysOn))
                    }
                    "parentbased_always_off" => {
                        Some(Sampler::ParentBased(ParentBasedRoot::AlwaysOff))
                    }
                    "parentbased_traceidratio" => {
                        Some(Sampler::ParentBased(ParentBasedRoot::TraceIdRatio(ratio)))
                    }
                    _ => None,
                },
            )?
            .unwrap_or(Sampler::ParentBased(ParentBasedRoot::AlwaysOn)))
    }

    fn propagators(&self) -> Result<Vec<Propagator>, ConfigError> {
        Ok(self
            .parse(
                OTEL_PROPAGATORS,
                "a comma-separated list of tracecontext, baggage or none",
                parse_propagators,
            )?
            .unwrap_or_else(|| vec![Propagator::TraceContext, Propagator::Baggage]))
    }

    // Resource.

    fn resource_attributes(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        Ok(self
            .parse(
                OTEL_RESOURCE_ATTRIBUTES,
                "comma-separated key=value pairs",
                parse_pairs,
            )?
            .unwrap_or_default())
    }

    // Logs on stdout.

    fn log_filter(&self) -> Result<String, ConfigError> {
        Ok(self
            .parse(
                RUST_LOG,
                "tracing filter directives, e.g. info,my_crate=debug",
                |v| {
                    tracing_subscriber::EnvFilter::builder()
                        .parse(v)
                        .ok()
                        .map(|_| v.to_owned())
                },
            )?
            .unwrap_or_else(|| DEFAULT_LOG_FILTER.to_owned()))
    }

    fn log_format(&self) -> Result<LogFormat, ConfigError> {
        Ok(self
            .parse(SOMA_LOG_FORMAT, "text or json", |v| match v {
                "text" => Some(LogFormat::Text),
                "json" => Some(LogFormat::Json),
                _ => None,
            })?
            .unwrap_or(LogFormat::Text))
    }

    // The `/metrics` endpoint.

    fn metrics_address(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        self.parse(
            SOMA_METRICS_ADDR,
            "a socket address such as 0.0.0.0:9464",
            |v| v.parse().ok(),
        )
    }

    fn runtime_metrics(&self) -> Result<bool, ConfigError> {
        Ok(self
            .parse(SOMA_RUNTIME_METRICS, "true or false", parse_bool)?
            .unwrap_or(true))
    }

    fn exemplar_filter(&self) -> Result<ExemplarFilter, ConfigError> {
        Ok(self
            .parse(
                OTEL_METRICS_EXEMPLAR_FILTER,
                "trace_based, always_on or always_off",
                |v| match v {
                    "trace_based" => Some(ExemplarFilter::TraceBased),
                    "always_on" => Some(ExemplarFilter::AlwaysOn),
                    "always_off" => Some(ExemplarFilter::AlwaysOff),
                    _ => None,
                },
            )?
            .unwrap_or_default())
    }

    // HTTP options.

    fn max_export_batch_bytes(&self) -> Result<usize, ConfigError> {
        Ok(self
            .parse(
                SOMA_BSP_MAX_EXPORT_BATCH_BYTES,
                "a positive whole number of bytes",
                parse_positive,
            )?
            .unwrap_or(DEFAULT_MAX_EXPORT_BATCH_BYTES))
    }

    fn attribute_value_length_limit(&self) -> Result<usize, ConfigError> {
        Ok(self
            .parse(
                OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
                "a positive whole number of bytes",
                parse_positive,
            )?
            .unwrap_or(DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT))
    }

    fn capture_headers(&self) -> Result<HeaderCapture, ConfigError> {
        let list = |var| {
            self.parse(
                var,
                "comma-separated HTTP header names (at most 32)",
                parse_names,
            )
            .map(Option::unwrap_or_default)
        };
        Ok(HeaderCapture {
            server_request: list(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST)?,
            server_response: list(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE)?,
            client_request: list(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST)?,
            client_response: list(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE)?,
            sanitize: list(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS)?,
        })
    }

    fn trusted_proto_header(&self) -> Result<Option<ProtoHeader>, ConfigError> {
        Ok(self
            .parse(
                SOMA_TRUSTED_PROTO_HEADER,
                "x-forwarded-proto, forwarded or none",
                |v| match v {
                    "x-forwarded-proto" => Some(Some(ProtoHeader::XForwardedProto)),
                    "forwarded" => Some(Some(ProtoHeader::Forwarded)),
                    "none" => Some(None),
                    _ => None,
                },
            )?
            .flatten())
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn parse_protocol(value: &str) -> Option<Protocol> {
    match value {
        "grpc" => Some(Protocol::Grpc),
        "http/protobuf" => Some(Protocol::HttpProtobuf),
        _ => None,
    }
}

fn parse_compression(value: &str) -> Option<Compression> {
    match value.to_ascii_lowercase().as_str() {
        "gzip" => Some(Compression::Gzip),
        "none" => Some(Compression::None),
        _ => None,
    }
}

/// `OTEL_METRICS_EXPORTER`: a comma-separated list of `prometheus` and `otlp`, or `none` alone;
/// returns whether `/metrics` is served and whether metrics are pushed.
fn parse_metrics_exporters(value: &str) -> Option<(bool, bool)> {
    let (mut prometheus, mut otlp) = (false, false);
    let names: Vec<&str> = value.split(',').map(str::trim).collect();
    if names == ["none"] {
        return Some((false, false));
    }
    for name in names {
        match name {
            "prometheus" => prometheus = true,
            "otlp" => otlp = true,
            _ => return None,
        }
    }
    Some((prometheus, otlp))
}

fn parse_endpoint(value: &str) -> Option<String> {
    let url = url::Url::parse(value).ok()?;
    (matches!(url.scheme(), "http" | "https") && url.host().is_some()).then(|| value.to_owned())
}

fn parse_positive(value: &str) -> Option<usize> {
    value.parse::<usize>().ok().filter(|n| *n > 0)
}

fn parse_positive_millis(value: &str) -> Option<Duration> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(Duration::from_millis)
}

/// Parses `k=v,k2=v2` (W3C baggage-like syntax, percent-decoded), as used by
/// `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS`.
fn parse_pairs(value: &str) -> Option<BTreeMap<String, String>> {
    value
        .split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (key, val) = pair.split_once('=')?;
            let key = percent_decode(key.trim())?;
            let val = percent_decode(val.trim())?;
            (!key.is_empty()).then_some((key, val))
        })
        .collect()
}

fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = input.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_propagators(value: &str) -> Option<Vec<Propagator>> {
    let mut out = Vec::new();
    for name in value.split(',').map(str::trim) {
        match name {
            "tracecontext" => out.push(Propagator::TraceContext),
            "baggage" => out.push(Propagator::Baggage),
            "none" => {}
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lists_are_trimmed_lowercased_and_bounded() {
        assert_eq!(
            parse_names(" X-Request-Id, ,accept "),
            Some(vec!["x-request-id".to_owned(), "accept".to_owned()])
        );
        assert_eq!(parse_names("bad header"), None);
        let many = (0..=MAX_CAPTURED_HEADERS)
            .map(|i| format!("x-{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(parse_names(&many), None);
    }

    fn config(vars: &[(&str, &str)]) -> Result<ObservabilityConfig, ConfigError> {
        ObservabilityConfig::from_lookup(soma_system_tests::lookup(vars))
    }

    #[test]
    fn defaults_follow_the_specification() {
        let c = config(&[]).unwrap();
        assert_eq!(c.traces.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.traces.endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(c.logs.endpoint, "http://localhost:4318/v1/logs");
        assert_eq!(c.traces.timeout, Duration::from_secs(10));
        assert_eq!(c.sampler, Sampler::ParentBased(ParentBasedRoot::AlwaysOn));
        assert_eq!(
            c.propagators,
            vec![Propagator::TraceContext, Propagator::Baggage]
        );
        assert!(c.metrics_enabled);
    }

    #[test]
    #[cfg(feature = "otlp")] // without it, OTLP settings are errors (see features.rs)
    fn generic_http_endpoint_gets_the_signal_path() {
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]).unwrap();
        assert_eq!(c.traces.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(c.logs.endpoint, "http://collector:4318/v1/logs");
    }

    #[test]
    #[cfg(feature = "otlp")] // without it, OTLP settings are errors (see features.rs)
    fn signal_endpoint_is_used_as_is_and_beats_the_generic_one() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
        ])
        .unwrap();
        assert_eq!(c.traces.endpoint, "http://traces:9999/custom");
        assert_eq!(c.logs.endpoint, "http://collector:4318/v1/logs");
    }

    #[test]
    #[cfg(feature = "grpc")] // without it, OTLP settings are errors (see features.rs)
    fn grpc_endpoint_gets_no_path() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ])
        .unwrap();
        assert_eq!(c.traces.protocol, Protocol::Grpc);
        assert_eq!(c.traces.endpoint, "http://collector:4317");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", " "),
            ("OTEL_BSP_MAX_QUEUE_SIZE", ""),
        ])
        .unwrap();
        assert_eq!(c.traces.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.traces.max_queue_size, DEFAULT_MAX_QUEUE_SIZE);
    }

    #[test]
    fn headers_and_resource_attributes_are_percent_decoded() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b,x=1"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod, team=soma",
            ),
        ])
        .unwrap();
        assert_eq!(c.traces.headers.get("api-key").unwrap(), "a b");
        assert_eq!(c.logs.headers.get("x").unwrap(), "1");
        assert_eq!(
            c.resource_attributes.get("deployment.environment").unwrap(),
            "prod"
        );
        assert_eq!(c.resource_attributes.get("team").unwrap(), "soma");
    }

    #[test]
    fn batch_size_above_queue_is_clamped() {
        let c = config(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "500"),
        ])
        .unwrap();
        assert_eq!(c.traces.max_export_batch_size, 100);
    }

    #[test]
    fn every_invalid_value_names_variable_value_and_expectation() {
        // `VARIABLE=value -> what the error must say is expected`.
        let cases = [
            "OTEL_EXPORTER_OTLP_PROTOCOL=htp -> grpc or http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json -> grpc or http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT=collector:4317 -> URL",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=ftp://x -> URL",
            "OTEL_EXPORTER_OTLP_TIMEOUT=-5 -> positive",
            "OTEL_EXPORTER_OTLP_HEADERS=novalue -> key=value",
            "OTEL_BSP_SCHEDULE_DELAY=0 -> spin",
            "OTEL_BSP_MAX_QUEUE_SIZE=0 -> drop everything",
            "OTEL_BSP_MAX_QUEUE_SIZE=lots -> positive",
            "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE=-1 -> positive",
            "OTEL_TRACES_SAMPLER=sometimes -> parentbased_always_on",
            "OTEL_TRACES_SAMPLER_ARG=1.5 -> between 0 and 1",
            "OTEL_TRACES_EXPORTER=jaeger -> otlp, console or none",
            "OTEL_LOGS_EXPORTER=loki -> otlp, console or none",
            "OTEL_METRICS_EXPORTER=console -> prometheus, otlp, prometheus,otlp or none",
            "OTEL_METRICS_EXPORTER=none,otlp -> prometheus, otlp",
            "OTEL_METRIC_EXPORT_INTERVAL=0 -> positive",
            "OTEL_METRIC_EXPORT_TIMEOUT=soon -> positive",
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=sometimes -> cumulative, delta or lowmemory",
            "OTEL_EXPORTER_OTLP_COMPRESSION=zstd -> gzip or none",
            "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION=br -> gzip or none",
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT=0 -> positive",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=collector -> URL",
            "OTEL_PROPAGATORS=tracecontext,b3 -> tracecontext, baggage or none",
            "OTEL_SDK_DISABLED=yes -> true or false",
            "OTEL_RESOURCE_ATTRIBUTES=a=%zz -> key=value",
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT=0 -> positive",
            "SOMA_BSP_MAX_EXPORT_BATCH_BYTES=4MiB -> positive",
            "SOMA_SHUTDOWN_DRAIN_TIMEOUT=20s -> milliseconds",
            "SOMA_LOG_FORMAT=xml -> text or json",
            "SOMA_METRICS_ADDR=localhost -> socket address",
            "SOMA_RUNTIME_METRICS=off -> true or false",
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST=x-ok,bad header -> header names",
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS=x(1) -> header names",
            "SOMA_TRUSTED_PROTO_HEADER=X-Real-Proto -> x-forwarded-proto, forwarded or none",
            "RUST_LOG=info,[ -> directives",
        ];
        for case in cases {
            let (setting, expected) = case.split_once(" -> ").unwrap();
            let (var, value) = setting.split_once('=').unwrap();
            let err = config(&[(var, value)]).unwrap_err();
            let ConfigError::InvalidEnv {
                var: got_var,
                value: got_value,
                expected: got_expected,
            } = &err
            else {
                panic!("{var}: unexpected error {err:?}");
            };
            assert_eq!(*got_var, var);
            assert_eq!(got_value, value);
            assert!(
                got_expected.contains(expected),
                "{var}: {got_expected:?} does not mention {expected:?}"
            );
            assert!(err.to_string().starts_with(&format!("{var}=")), "{err}");
        }
    }

    #[test]
    fn metrics_exporters_choose_scrape_push_or_both() {
        for (value, scraped, pushed) in [
            ("prometheus", true, false),
            ("otlp", false, true),
            ("prometheus,otlp", true, true),
            ("otlp, prometheus", true, true),
            ("none", false, false),
        ] {
            if pushed && !crate::features::OTLP {
                continue; // an error without the feature (see features.rs)
            }
            let c = config(&[("OTEL_METRICS_EXPORTER", value)]).unwrap();
            assert_eq!(c.metrics_enabled, scraped, "{value}");
            assert_eq!(c.metrics_pushed(), pushed, "{value}");
            assert_eq!(c.metrics_recorded(), scraped || pushed, "{value}");
        }
        let c = config(&[]).unwrap();
        assert!(c.metrics_enabled && !c.metrics_pushed());
        assert_eq!(c.metrics.exporter, ExporterKind::None);
    }

    #[test]
    fn metrics_push_defaults_follow_the_specification() {
        let c = config(&[]).unwrap();
        assert_eq!(c.metrics.endpoint, "http://localhost:4318/v1/metrics");
        assert_eq!(c.metrics.schedule_delay, Duration::from_secs(60));
        assert_eq!(c.metric_export_timeout, Duration::from_secs(30));
        assert_eq!(c.metrics.timeout, Duration::from_secs(10));
        assert_eq!(c.metrics_temporality, MetricsTemporality::Cumulative);
        assert_eq!(c.metrics.compression, Compression::None);
        // The span processor's delay is not the metrics interval.
        assert_eq!(c.traces.schedule_delay, DEFAULT_SCHEDULE_DELAY);
    }

    #[test]
    #[cfg(feature = "otlp")] // without it, OTLP settings are errors (see features.rs)
    fn metrics_push_variables_are_read_signal_first() {
        let c = config(&[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "m=2"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "1500"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "250"),
            ("OTEL_METRIC_EXPORT_TIMEOUT", "4000"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Delta"),
        ])
        .unwrap();
        assert_eq!(c.metrics.exporter, ExporterKind::Otlp);
        assert_eq!(c.metrics.endpoint, "http://collector:4318/v1/metrics");
        assert_eq!(c.metrics.headers.get("m").unwrap(), "2");
        assert!(!c.metrics.headers.contains_key("a"));
        assert_eq!(c.traces.headers.get("a").unwrap(), "1");
        assert_eq!(c.metrics.timeout, Duration::from_millis(1500));
        assert_eq!(c.metrics.schedule_delay, Duration::from_millis(250));
        assert_eq!(c.metric_export_timeout, Duration::from_secs(4));
        assert_eq!(c.metrics_temporality, MetricsTemporality::Delta);
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:9/custom"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                "LOWMEMORY",
            ),
        ])
        .unwrap();
        assert_eq!(c.metrics.endpoint, "http://m:9/custom");
        assert_eq!(c.metrics_temporality, MetricsTemporality::LowMemory);
    }

    #[test]
    fn compression_is_read_for_every_signal_signal_first() {
        let c = config(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP")]).unwrap();
        assert_eq!(c.traces.compression, Compression::Gzip);
        assert_eq!(c.logs.compression, Compression::Gzip);
        assert_eq!(c.metrics.compression, Compression::Gzip);
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "none"),
        ])
        .unwrap();
        assert_eq!(c.traces.compression, Compression::None);
        assert_eq!(c.logs.compression, Compression::Gzip);
        assert_eq!(c.metrics.compression, Compression::None);
    }

    #[test]
    fn the_trusted_proto_header_is_opt_in() {
        assert_eq!(config(&[]).unwrap().trusted_proto_header, None);
        for (value, expected) in [
            ("x-forwarded-proto", Some(ProtoHeader::XForwardedProto)),
            ("forwarded", Some(ProtoHeader::Forwarded)),
            ("none", None),
            ("", None),
        ] {
            let c = config(&[("SOMA_TRUSTED_PROTO_HEADER", value)]).unwrap();
            assert_eq!(c.trusted_proto_header, expected, "{value:?}");
            assert!(!c.tls_listener);
        }
    }

    /// A metrics push signal gets the TLS variables through the same lookup as traces and logs:
    /// its `SignalVars` names the `OTEL_EXPORTER_OTLP_METRICS_*` forms.
    #[test]
    #[cfg(feature = "otlp")]
    fn a_metrics_signal_reads_its_tls_files_like_the_others() {
        let pki = soma_system_tests::tls::Pki::generate();
        let (ca, other_ca) = (
            pki.ca.display().to_string(),
            pki.other_ca.display().to_string(),
        );
        let vars = [
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.as_str()),
            ("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", other_ca.as_str()),
        ];
        let lookup = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        let config = ObservabilityConfig::from_lookup(lookup).unwrap();
        let metrics = config.metrics;
        assert_eq!(metrics.certificate, Some(pki.other_ca.clone()));
        assert_eq!(config.traces.certificate, Some(pki.ca.clone()));
    }

    #[test]
    fn samplers_take_their_ratio() {
        let c = config(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ])
        .unwrap();
        assert_eq!(
            c.sampler,
            Sampler::ParentBased(ParentBasedRoot::TraceIdRatio(0.25))
        );
    }

    #[test]
    fn sdk_disabled_turns_off_traces_and_log_export() {
        let c = config(&[("OTEL_SDK_DISABLED", "true")]).unwrap();
        assert!(!c.traces_enabled());
        assert!(!c.logs_exported());
        assert!(c.metrics_enabled);
    }
}
