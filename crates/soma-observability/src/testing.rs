//! Test support: a test's own telemetry, with no process-global state (feature `testing`).
//!
//! [`TestTelemetry::new`] builds the whole pipeline for one test and makes it the test
//! thread's default ([`ObservabilityParts::set_default`]): the application's own code, unchanged,
//! records into it (instruments from [`get_meter`](crate::get_meter), `HttpClient::new`,
//! `tracing` spans and events), and nothing is exported. The test then reads what was recorded:
//! a metric's value by its OpenTelemetry name and attributes, the spans that ended, the log
//! records. Tests of one binary run in parallel, each with its own telemetry.
//!
//! Add the feature for tests only:
//!
//! ```toml
//! [dev-dependencies]
//! soma-observability = { version = "0.1", features = ["testing"] }
//! ```
//!
//! ```
//! use axum::{body::Body, extract::State, http::Request, routing::get, Router};
//! use soma_observability::opentelemetry::{metrics::Counter, KeyValue};
//! use soma_observability::testing::TestTelemetry;
//! use tower::ServiceExt;
//!
//! // The application: state with its own instruments, made before setup as in `main`.
//! #[derive(Clone)]
//! struct AppState { lookups: Counter<u64> }
//! fn app() -> Router {
//!     let lookups = soma_observability::get_meter("users")
//!         .u64_counter("users.lookups")
//!         .with_description("User lookups by outcome.")
//!         .build();
//!     Router::new()
//!         .route("/users/{id}", get(|State(state): State<AppState>| async move {
//!             state.lookups.add(1, &[KeyValue::new("outcome", "found")]);
//!             soma_observability::tracing::info!("user found");
//!             "hello"
//!         }))
//!         .with_state(AppState { lookups })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The test (in `#[tokio::test]`):
//! let telemetry = TestTelemetry::new("users")?;
//! let app = telemetry.instrument(app())?;
//! let response = app.oneshot(Request::get("/users/7").body(Body::empty())?).await?;
//! axum::body::to_bytes(response.into_body(), usize::MAX).await?;
//!
//! assert_eq!(telemetry.sum("users.lookups", &[KeyValue::new("outcome", "found")]), Some(1.0));
//! let requests = telemetry.histogram(
//!     "http.server.request.duration",
//!     &[KeyValue::new("http.route", "/users/{id}")],
//! );
//! assert_eq!(requests.map(|h| h.count), Some(1));
//! let spans = telemetry.spans();
//! assert_eq!(spans[0].name, "GET /users/{id}");
//! let logs = telemetry.logs();
//! assert_eq!(logs[0].body, "user found");
//! assert_eq!(logs[0].trace_id, Some(spans[0].trace_id));
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader as _;
use opentelemetry_sdk::trace::SpanData;

pub use crate::capture::LogRecord;
use crate::capture::{lock, Capture};

use crate::error::SetupError;
use crate::{DefaultGuard, Observability, ObservabilityConfig, ObservabilityParts};

/// One test's telemetry: see the [module docs](self). It is [`ObservabilityParts`] (through
/// `Deref`: `instrument`, `http_client`, `render_metrics`, `meter`, ...) plus what the parts
/// recorded, read back.
#[derive(Debug)]
pub struct TestTelemetry {
    parts: ObservabilityParts,
    spans: Arc<Mutex<Vec<SpanData>>>,
    logs: Arc<Mutex<Vec<LogRecord>>>,
    _default: DefaultGuard,
}

impl TestTelemetry {
    /// Builds telemetry for `service_name` that keeps every span and log record in memory,
    /// reads no environment variable and exports nothing, and makes it this thread's default
    /// until it is dropped.
    ///
    /// Instruments and clients the test's code makes from then on record here; those made
    /// before (in a `static`, say) do not.
    ///
    /// # Errors
    ///
    /// [`SetupError`] if the pipeline cannot be built (it reads no environment, so this only
    /// happens if the library itself is broken).
    pub fn new(service_name: &str) -> Result<Self, SetupError> {
        Self::with_builder(Observability::builder(service_name))
    }

    /// As [`new`](Self::new), with the builder's settings (buckets, excluded paths, captured
    /// headers, ...): `TestTelemetry::with_builder(Observability::builder("users").with_..)`.
    /// A configuration given to the builder is replaced by one that exports nothing.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_builder(builder: crate::ObservabilityBuilder) -> Result<Self, SetupError> {
        let config = ObservabilityConfig::from_lookup(|name| match name {
            "OTEL_TRACES_EXPORTER" | "OTEL_LOGS_EXPORTER" => Some("none".to_owned()),
            _ => None,
        })?;
        let spans = Arc::default();
        let logs = Arc::default();
        let capture = Capture {
            spans: Arc::clone(&spans),
            logs: Arc::clone(&logs),
        };
        let mut parts = builder
            .with_config(config)
            .with_runtime_metrics(false)
            .with_capture(capture)
            .build()?;
        parts.subscriber.stdout = false;
        let default = parts.set_default();
        Ok(Self {
            parts,
            spans,
            logs,
            _default: default,
        })
    }

    /// The value of the counter or up-down counter named `name` (its OpenTelemetry name,
    /// `users.lookups`), added up over the series whose attributes include every one of
    /// `attributes` (`&[]`: all series). `None` when no such series exists.
    pub fn sum(&self, name: &str, attributes: &[KeyValue]) -> Option<f64> {
        self.points(name, attributes)
            .filter_map(|point| match point {
                Point::Sum(value) => Some(value),
                _ => None,
            })
            .reduce(|a, b| a + b)
    }

    /// The value of the gauge named `name`, added up over the series whose attributes include
    /// every one of `attributes` (give them all to read one series). `None` when no such series
    /// exists.
    pub fn gauge(&self, name: &str, attributes: &[KeyValue]) -> Option<f64> {
        self.points(name, attributes)
            .filter_map(|point| match point {
                Point::Gauge(value) => Some(value),
                _ => None,
            })
            .reduce(|a, b| a + b)
    }

    /// The histogram named `name`, merged over the series whose attributes include every one
    /// of `attributes`. `None` when no such series exists.
    pub fn histogram(&self, name: &str, attributes: &[KeyValue]) -> Option<HistogramValue> {
        self.points(name, attributes)
            .filter_map(|point| match point {
                Point::Histogram(value) => Some(value),
                _ => None,
            })
            .reduce(|mut merged, value| {
                merged.count += value.count;
                merged.sum += value.sum;
                for (total, count) in merged.bucket_counts.iter_mut().zip(value.bucket_counts) {
                    *total += count;
                }
                merged
            })
    }

    /// The data points of the metric `name` whose attributes include `attributes`, collected
    /// now.
    fn points(&self, name: &str, attributes: &[KeyValue]) -> impl Iterator<Item = Point> {
        let mut rm = ResourceMetrics::default();
        let mut points = Vec::new();
        if self.parts.exposition.reader.collect(&mut rm).is_ok() {
            for metric in rm
                .scope_metrics()
                .flat_map(opentelemetry_sdk::metrics::data::ScopeMetrics::metrics)
                .filter(|metric| metric.name() == name)
            {
                match metric.data() {
                    AggregatedMetrics::F64(data) => collect_points(data, attributes, &mut points),
                    AggregatedMetrics::U64(data) => collect_points(data, attributes, &mut points),
                    AggregatedMetrics::I64(data) => collect_points(data, attributes, &mut points),
                }
            }
        }
        points.into_iter()
    }

    /// Every span that ended so far, in the order they ended.
    pub fn spans(&self) -> Vec<FinishedSpan> {
        lock(&self.spans).iter().map(FinishedSpan::from).collect()
    }

    /// Every log record emitted so far (`tracing` events), in order.
    pub fn logs(&self) -> Vec<LogRecord> {
        lock(&self.logs).clone()
    }
}

impl std::ops::Deref for TestTelemetry {
    type Target = ObservabilityParts;

    fn deref(&self) -> &ObservabilityParts {
        &self.parts
    }
}

/// One data point, its value as `f64`.
enum Point {
    Sum(f64),
    Gauge(f64),
    Histogram(HistogramValue),
}

/// The number types of instruments, as `f64`.
trait AsF64: Copy {
    fn as_f64(self) -> f64;
}

impl AsF64 for f64 {
    fn as_f64(self) -> f64 {
        self
    }
}

#[allow(clippy::cast_precision_loss)] // test values, far below 2^53
impl AsF64 for u64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}

#[allow(clippy::cast_precision_loss)]
impl AsF64 for i64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}

/// Appends the points of `data` whose attributes include every one of `wanted`.
fn collect_points<T: AsF64>(data: &MetricData<T>, wanted: &[KeyValue], out: &mut Vec<Point>) {
    let matches = |attributes: &mut dyn Iterator<Item = &KeyValue>| {
        let attributes: Vec<&KeyValue> = attributes.collect();
        wanted.iter().all(|kv| attributes.contains(&kv))
    };
    match data {
        MetricData::Sum(sum) => out.extend(
            sum.data_points()
                .filter(|p| matches(&mut p.attributes()))
                .map(|p| Point::Sum(p.value().as_f64())),
        ),
        MetricData::Gauge(gauge) => out.extend(
            gauge
                .data_points()
                .filter(|p| matches(&mut p.attributes()))
                .map(|p| Point::Gauge(p.value().as_f64())),
        ),
        MetricData::Histogram(histogram) => out.extend(
            histogram
                .data_points()
                .filter(|p| matches(&mut p.attributes()))
                .map(|p| {
                    Point::Histogram(HistogramValue {
                        count: p.count(),
                        sum: p.sum().as_f64(),
                        bounds: p.bounds().collect(),
                        bucket_counts: p.bucket_counts().collect(),
                    })
                }),
        ),
        MetricData::ExponentialHistogram(_) => {}
    }
}

/// A histogram's series, merged: see [`TestTelemetry::histogram`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct HistogramValue {
    /// How many measurements were recorded.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The buckets' upper bounds (the last bucket, above them all, has none).
    pub bounds: Vec<f64>,
    /// Measurements per bucket (not cumulative): one more than `bounds`.
    pub bucket_counts: Vec<u64>,
}

/// A span that ended, as a test reads it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FinishedSpan {
    /// Its name (`GET /users/{id}`).
    pub name: String,
    /// Server, client, internal, ...
    pub kind: SpanKind,
    /// Its trace.
    pub trace_id: TraceId,
    /// Its own id.
    pub span_id: SpanId,
    /// Its parent's id (`SpanId::INVALID` for a root span).
    pub parent_span_id: SpanId,
    /// Unset, Ok or Error.
    pub status: Status,
    /// Its attributes.
    pub attributes: Vec<KeyValue>,
    /// The names of its events (`exception`, ...).
    pub events: Vec<String>,
    /// The name of the instrumentation scope that made it.
    pub scope: String,
}

impl FinishedSpan {
    /// The value of the attribute `key`, if the span has it.
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }
}

impl From<&SpanData> for FinishedSpan {
    fn from(span: &SpanData) -> Self {
        Self {
            name: span.name.to_string(),
            kind: span.span_kind.clone(),
            trace_id: span.span_context.trace_id(),
            span_id: span.span_context.span_id(),
            parent_span_id: span.parent_span_id,
            status: span.status.clone(),
            attributes: span.attributes.clone(),
            events: span
                .events
                .iter()
                .map(|event| event.name.to_string())
                .collect(),
            scope: span.instrumentation_scope.name().to_owned(),
        }
    }
}
