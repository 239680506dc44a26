//! Production observability for axum services in one line: Prometheus metrics on `/metrics`,
//! OpenTelemetry HTTP semantic-convention metrics and spans, and OTLP traces and logs.
//!
//! # Quick start
//!
//! ```no_run
//! use axum::{routing::get, Router};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let app = Router::new().route("/users/{id}", get(|| async { "hello" }));
//!     let (app, mut guard) = soma_observability::setup_observability("users", app)?;
//!     let listener = tokio::net::TcpListener::bind("0.0.0.0:8000").await?;
//!     axum::serve(soma_observability::Draining::new(listener), app)
//!         .with_graceful_shutdown(soma_observability::shutdown_signal())
//!         .await?;
//!     guard.shutdown().await?; // flush traces and logs; an outage is logged, not an error
//!     Ok(())
//! }
//! ```
//!
//! That one call:
//! - serves `GET /metrics` (Prometheus text format) with the HTTP metrics below, process metrics
//!   (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`,
//!   `process_start_time_seconds`, ...), the tokio runtime's saturation (`tokio_runtime_*`, see
//!   [`runtime`]) and `target_info` with the service's resource;
//! - creates a `SERVER` span per request, continuing the caller's W3C `traceparent`, and sends
//!   spans over OTLP;
//! - sends `tracing` events to stdout and over OTLP logs, each with the trace and span id of
//!   the span it was emitted in (`trace_id=.. span_id=..` at the end of a text line, two fields
//!   in JSON);
//! - reads the standard `OTEL_*` variables (see [`config`]).
//!
//! A service without a collector runs normally: exports fail in the background, with bounded
//! queues, and cost requests nothing.
//!
//! The same pieces without touching any global state, as tests use them:
//!
//! ```
//! use axum::{body::Body, http::Request, routing::get, Router};
//! use tower::ServiceExt;
//! # use soma_observability::{Observability, ObservabilityConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ObservabilityConfig::from_lookup(|name| match name {
//!     "OTEL_TRACES_EXPORTER" | "OTEL_LOGS_EXPORTER" => Some("none".to_owned()),
//!     _ => None,
//! })?;
//! let parts = Observability::builder("users").with_config(config).build()?;
//! let app = parts.instrument(Router::new().route("/users/{id}", get(|| async { "hello" })))?;
//!
//! let response = app.clone().oneshot(Request::get("/users/7").body(Body::empty())?).await?;
//! axum::body::to_bytes(response.into_body(), usize::MAX).await?; // the body ends: recorded
//!
//! let metrics = parts.render_metrics()?;
//! assert!(metrics.contains(r#"http_route="/users/{id}""#));
//! assert!(metrics.contains("http_server_request_duration_seconds_count"));
//! # Ok(()) }
//! ```
//!
//! # Metrics emitted
//!
//! | Prometheus name | Kind | Labels |
//! |---|---|---|
//! | `http_server_request_duration_seconds_{bucket,sum,count}` | histogram (s) | `http_request_method`, `http_route`, `http_response_status_code`, `url_scheme`, `network_protocol_version`, `error_type` |
//! | `http_server_active_requests` | gauge | `http_request_method`, `url_scheme` |
//! | `http_server_request_body_size_bytes_*` | histogram (bytes) | as the duration |
//! | `http_server_response_body_size_bytes_*` | histogram (bytes) | as the duration |
//! | `http_client_request_duration_seconds_*` | histogram (s) | `http_request_method`, `server_address`, `server_port`, `url_scheme`, `http_response_status_code`, `error_type` ([`HttpClient`]) |
//! | `otel_sdk_exporter_span_exported_total` | counter | `error_type` when the export failed |
//! | `otel_sdk_span_dropped_total` | counter | spans dropped because the export queue was full |
//! | `otel_sdk_exporter_log_exported_total`, `otel_sdk_log_dropped_total` | counters | the same for OTLP log records |
//! | `otel_sdk_exporter_metric_data_point_exported_total` | counter | `error_type` when an OTLP metrics push failed ([`config`](config#otlp-metrics-push)) |
//! | `soma_metrics_callback_failures_total` | counter | `instrument`, `reason`: an observable instrument's callback panicked or did not return in time, and its values were left out (`metrics.rs`) |
//! | `process_*`, `target_info` | gauges | the service's resource on `target_info` |
//! | `tokio_runtime_workers`, `tokio_runtime_alive_tasks`, `tokio_runtime_global_queue_depth` | gauges | none ([`runtime`]) |
//! | `tokio_runtime_worker_busy_seconds_total`, `tokio_runtime_worker_parks_total` | counters | `tokio_worker` ([`runtime`]) |
//!
//! Every series also carries `otel_scope_name` (and `otel_scope_version` when the meter has one). Labels are bounded by
//! construction; see [`http`] for the rules, the spans and where the layer goes.
//!
//! # Environment variables
//!
//! See [`config`] for the full table: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_SDK_DISABLED`, `OTEL_{TRACES,LOGS,METRICS}_EXPORTER`, `OTEL_EXPORTER_OTLP_*`,
//! `OTEL_METRIC_EXPORT_{INTERVAL,TIMEOUT}`, `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_PROPAGATORS`,
//! `OTEL_BSP_*`, `OTEL_BLRP_*`,
//! `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`, `OTEL_METRICS_EXEMPLAR_FILTER`, `RUST_LOG` and
//! `SOMA_LOG_FORMAT`. Invalid values are
//! errors that name the variable, the value and what is accepted. Code beats the environment.
//!
//! # Custom telemetry
//!
//! The crate re-exports the OpenTelemetry API ([`opentelemetry`]) and [`tracing`]: use
//! `soma_observability::opentelemetry::KeyValue` rather than a direct `opentelemetry`
//! dependency, whose other version would have other types and other globals.
//!
//! [`get_meter`] returns a meter whose instruments land in the same `/metrics`, even when made
//! before setup (in the app state); histograms in seconds get second-scale buckets, and every
//! histogram keeps exemplars (the trace of a sampled measurement per bucket, shown to
//! scrapers that read OpenMetrics). [`get_tracer`] returns the global tracer; `tracing` spans
//! in handlers also become OpenTelemetry spans, children of the request's server span.
//! [`HttpClient`] propagates the context to downstream services.
//!
//! # Cargo features
//!
//! A team pays only for the exporters it uses:
//!
//! | Feature | Default | What it adds | Crates it pulls in |
//! |---|---|---|---|
//! | `otlp` | yes | OTLP export of traces and logs, and the metrics push, over HTTP/protobuf (`OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`, the specification's default) | `opentelemetry-otlp` and `prost` (logs and the metrics push; spans are encoded and sent by the crate itself, `span_export.rs`), blocking `reqwest` with its rustls TLS (aws-lc-rs, the platform verifier: `https://` endpoints, see [`tls`]) |
//! | `grpc` | no | OTLP over gRPC as well (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`); implies `otlp` | `tonic` (with rustls on the same aws-lc-rs provider, and the system roots), `h2`, `tower`'s balancing stack |
//! | `client` | yes | [`HttpClient`]: an instrumented `reqwest` client that propagates the trace context | `reqwest` (already there with `otlp`), `opentelemetry-http` |
//! | `testing` | no | [`testing`]: a test's own telemetry, read back typed (for `[dev-dependencies]`) | none |
//!
//! Metrics (`/metrics`), the HTTP layer, spans in process, the `console` exporters and stdout
//! logs are always there. The defaults are what most services want: HTTP/protobuf export, which
//! every collector accepts, and the client service-to-service calls need to form one trace,
//! which costs almost nothing once `otlp` has brought `reqwest` in. gRPC is opt-in because tonic
//! and its HTTP/2 stack are the heaviest part (see the README for the figures). A metrics-only
//! service uses `default-features = false`.
//!
//! A setting that needs a feature this build lacks is a startup error
//! ([`ConfigError::FeatureDisabled`]) naming the variable, the value and the feature, never
//! ignored: `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` without `grpc`; `OTEL_TRACES_EXPORTER=otlp`, or an
//! `OTEL_EXPORTER_OTLP_*` endpoint or protocol, without `otlp`. Without `otlp` and without those
//! variables, traces and logs are not exported (their exporters default to `none`).
//!
//! # Going further
//!
//! [`Observability::builder`] configures buckets, excluded paths and the shutdown deadline;
//! [`ObservabilityBuilder::build`] returns [`ObservabilityParts`] (the layer, the metrics
//! router, the providers and the subscriber) for services that compose them themselves.
//! [`ObservabilityBuilder::install_service`] instruments a tower service that is not an axum
//! router. Tests get their own telemetry from [`testing`] (feature `testing`).
//!
//! # Where things live
//!
//! One concept per module, and no import cycle between modules: [`config`] is parsed data and
//! uses only `error.rs`, `exemplars.rs` (its filter type), `features.rs` and [`tls`] (which know
//! nothing of it); everything else builds on it. Private modules are named by file, for readers of the source; the files of
//! [`http`] are listed in `http/mod.rs`.
//!
//! | Module | The one concept it holds |
//! |---|---|
//! | `lib.rs` | these docs, the re-exports, [`setup_observability`], [`get_meter`], [`get_tracer`] |
//! | [`config`] | [`ObservabilityConfig`]: the only place `OTEL_*` and `SOMA_*` are read |
//! | `features.rs` | settings that need a Cargo feature this build lacks |
//! | `error.rs` | [`ConfigError`], [`SetupError`], [`ShutdownError`] |
//! | `builder.rs` | [`Observability::builder`], [`ObservabilityBuilder`]: every decision, in `build()` |
//! | `parts.rs` | [`ObservabilityParts`]: what `build()` made, installed nowhere |
//! | `install.rs` | the one module that sets process-global state |
//! | `guard.rs` | [`ObservabilityGuard`]: bounded flush and shutdown |
//! | `current.rs` | [`DefaultGuard`]: parts made the telemetry of one thread ([`ObservabilityParts::set_default`]) |
//! | `otlp.rs` | what the exporters of every signal share: building one, counting its outcomes, running it |
//! | [`tls`] | TLS of the OTLP exporters: CA, client certificate, and the cause of a failed request |
//! | `delivery.rs` | what the span and log processors share: queue admission, their counters, the shutdown deadline and what it lost |
//! | [`http`] | the server layer: metrics and a span per request ([`http::headers`]: captured headers) |
//! | `client.rs` | [`HttpClient`], [`RequestBuilder`]: the instrumented outgoing client |
//! | `propagation.rs` | the propagator: strict W3C `traceparent`, bounded `tracestate` |
//! | `traces.rs` | the tracer provider, sampler and batch processor |
//! | `span_encoding.rs` | a batch of spans as the bytes of an OTLP export request |
//! | `span_export.rs` | the OTLP span exporter: those bytes over HTTP/protobuf or gRPC, with retries |
//! | `logs.rs` | the logger provider and its exporter (OTLP logs) |
//! | `subscriber.rs` | the `tracing` subscriber: stdout, spans and events to the providers |
//! | `metrics.rs` | the meter provider, its buckets and views |
//! | `metrics_push.rs` | the OTLP metrics push (`OTEL_METRICS_EXPORTER=otlp`) |
//! | `deferred.rs` | instruments from [`get_meter`] made before setup |
//! | `exemplars.rs` | exemplars: the trace of a sampled measurement per bucket |
//! | `scrape.rs` | the exposition: everything one scrape of `/metrics` shows, rendered |
//! | `exposition.rs` | the SDK's metrics written as Prometheus or OpenMetrics text |
//! | `openmetrics.rs` | content negotiation, gzip, the `prometheus` registry in OpenMetrics |
//! | `endpoint.rs` | `GET /metrics`: the router and the response |
//! | `process.rs` | process metrics (`process_*`) |
//! | [`runtime`] | tokio runtime metrics (`tokio_runtime_*`) |
//! | [`genai`] | GenAI metrics (tokens, time to first token) |
//! | `serve.rs` | [`shutdown_signal`] for the serve loop |
//! | `capture.rs` | spans and log records kept in memory instead of exported (feature `testing`) |
//! | [`testing`] | [`testing::TestTelemetry`]: a test's own telemetry, read back typed (feature `testing`) |

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod builder;
#[cfg(feature = "testing")]
mod capture;
#[cfg(feature = "client")]
mod client;
pub mod config;
mod current;
mod deferred;
mod delivery;
mod endpoint;
mod error;
mod exemplars;
mod exposition;
mod features;
pub mod genai;
mod guard;
pub mod http;
mod install;
mod logs;
mod metrics;
mod metrics_push;
mod openmetrics;
mod otlp;
mod parts;
mod process;
mod propagation;
pub mod runtime;
mod scrape;
mod serve;
#[cfg(feature = "otlp")]
mod span_encoding;
#[cfg(feature = "otlp")]
mod span_export;
mod subscriber;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod tls;
mod traces;

pub use builder::{
    Observability, ObservabilityBuilder, DEFAULT_EXCLUDED_PATHS, DEFAULT_SHUTDOWN_TIMEOUT,
};
#[cfg(feature = "client")]
pub use client::{HttpClient, RequestBuilder};
pub use config::ObservabilityConfig;
pub use current::DefaultGuard;
pub use endpoint::METRICS_PATH;
pub use error::{ConfigError, SetupError, ShutdownError, Signal, Undelivered};
pub use guard::ObservabilityGuard;
pub use metrics::SECONDS_BUCKETS;
pub use parts::ObservabilityParts;
pub use serve::{shutdown_on, shutdown_signal, Draining, DrainingIo};
#[cfg(feature = "otlp")]
#[doc(hidden)]
pub use span_export::bench as __span_export_bench;

/// The OpenTelemetry API this crate is built on (0.33), re-exported so that your instruments,
/// attributes and tracers are the very types [`get_meter`] and [`get_tracer`] use.
///
/// Use it instead of a direct `opentelemetry` dependency:
/// `soma_observability::opentelemetry::KeyValue`,
/// `soma_observability::opentelemetry::metrics::Counter`,
/// `soma_observability::opentelemetry::trace::{TraceContextExt, Tracer}`. A second
/// `opentelemetry` of another version in your `Cargo.toml` has its own types and its own
/// globals: `expected Counter<u64>, found a different Counter<u64>`, or metrics that never
/// reach `/metrics`.
pub use opentelemetry;

/// The `tracing` crate whose events and spans this crate's subscriber sends to stdout and OTLP:
/// `soma_observability::tracing::info!(..)`, `soma_observability::tracing::info_span!(..)`.
///
/// The `#[tracing::instrument]` attribute expands to `::tracing::..` paths, so it needs
/// `tracing` as a direct dependency (`cargo add tracing@0.1`); any 0.1 version is the same
/// crate as this one, cargo unifies them.
pub use tracing;

use axum::Router;

/// The instrumentation scope of everything this crate records itself.
pub(crate) const SCOPE: &str = "soma-observability";

/// Sets up metrics, traces and logs for `service_name` and instruments `router`: the one line
/// every service adds to `main`.
///
/// Reads the `OTEL_*` environment, installs the global meter, tracer and logger providers, the
/// propagator and the `tracing` subscriber, wraps `router` in the HTTP telemetry layer and mounts
/// `GET /metrics`. Hold the returned guard and call [`ObservabilityGuard::shutdown`] after the
/// server has drained. See the [crate docs](crate) for an example.
///
/// # Errors
///
/// - [`SetupError::Config`]: an `OTEL_*` variable holds an invalid value;
/// - [`SetupError::Exporter`]: an OTLP exporter cannot be built;
/// - [`SetupError::AlreadyInstalled`]: called a second time in this process;
/// - [`SetupError::SubscriberAlreadySet`]: another global `tracing` subscriber exists;
/// - [`SetupError::RouteConflict`]: `router` already serves `/metrics`.
pub fn setup_observability<S>(
    service_name: &str,
    router: Router<S>,
) -> Result<(Router<S>, ObservabilityGuard), SetupError>
where
    S: Clone + Send + Sync + 'static,
{
    Observability::builder(service_name).install(router)
}

/// A meter from the global provider, for custom business metrics; they appear on `/metrics`.
///
/// It may be called before [`setup_observability`] (to keep instruments in the app state that
/// `.with_state(..)` hands to the router before setup): such instruments record into the
/// installed provider. What they record before setup is kept (up to 1 024 measurements per
/// instrument; beyond, one warning at setup names the meter and instrument) and replayed at
/// setup; observable instruments' callbacks run from setup on. (Meters from
/// `opentelemetry::global::meter` made before setup stay no-ops forever: use this function.)
///
/// ```
/// let orders = soma_observability::get_meter("checkout")
///     .u64_counter("checkout.orders")
///     .with_description("Orders placed.")
///     .build();
/// orders.add(1, &[soma_observability::opentelemetry::KeyValue::new("payment.method", "card")]);
/// ```
pub fn get_meter(name: &'static str) -> opentelemetry::metrics::Meter {
    deferred::meter(name)
}

/// A tracer from the global provider, for spans made with the OpenTelemetry API.
///
/// Before [`setup_observability`] it returns a no-op tracer.
pub fn get_tracer(name: &'static str) -> opentelemetry::global::BoxedTracer {
    current::tracer(name).unwrap_or_else(|| opentelemetry::global::tracer(name))
}
