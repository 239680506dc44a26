//! Logs: `tracing` events to stdout and, through the OpenTelemetry bridge, to OTLP.
//!
//! The stdout layer prints every event the `RUST_LOG` filter lets through, in text or JSON.
//! An event emitted inside a span (the request's server span, or a handler `tracing` span) ends
//! with ` trace_id=<32 hex> span_id=<16 hex>` in text, and has `"trace_id"` and `"span_id"`
//! fields in JSON, the same ids as the span and the OTLP log record: `kubectl logs` lines join
//! their traces.
//! The OTLP layer exports the same events, except those of the exporters' own stack (the crates
//! `hyper`, `hyper_util`, `h2`, `tonic`, `tower`, `reqwest` and the OpenTelemetry crates, matched
//! by whole crate name): exporting those would produce more of them, an endless
//! telemetry-induced-telemetry loop. The same targets never become spans. Every other crate's
//! events are the application's and are exported, `tower_http`'s included.
//! Each exported record carries the trace and span id that was current when it was emitted.
//!
//! Stdout lines cannot be forged: in text format a newline or carriage return inside an event
//! is written as `\n` / `\r`, so one event is always one line (JSON escapes them anyway), and
//! `tracing-subscriber` escapes ANSI control sequences in field values. Events of the
//! OpenTelemetry crates and of this crate (a collector that is down fails every batch) are
//! printed at most once per [`SDK_LOG_INTERVAL`] per call site.

// Without `otlp` the OTLP log processor below is compiled but never built (nor, without
// `grpc`, the gRPC metadata helper).
#![cfg_attr(not(feature = "grpc"), allow(dead_code, unused_imports))]

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry::logs::Severity;
use opentelemetry::metrics::{Counter, Meter};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
#[cfg(feature = "grpc")]
use opentelemetry_otlp::WithTonicConfig;
#[cfg(feature = "otlp")]
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{
    BatchConfigBuilder, BatchLogProcessor, LogBatch, LogExporter, LogProcessor, SdkLogRecord,
    SdkLoggerProvider,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

use crate::config::{ExporterKind, LogFormat, ObservabilityConfig, Protocol};
use crate::delivery::Losses;
use crate::error::{ConfigError, SetupError, Signal};

/// The crates of the OTLP exporters' own stack (HTTP and gRPC clients), by the name their
/// `tracing` targets start with: their events and spans never reach the OTLP pipelines.
///
/// Matched by whole crate name, never as a prefix: `tower` is here, but `tower_http` (whose
/// `TraceLayer` and `CatchPanicLayer` events belong to the application) is not. The exporters
/// use none of tower-http's logging parts (reqwest only uses its `follow-redirect`).
const EXPORTER_CRATES: &[&str] = &[
    "hyper",
    "hyper_util",
    "h2",
    "tonic",
    "tonic_prost",
    "tower",
    "reqwest",
];

/// Whether `target` belongs to the exporters' stack: one of [`EXPORTER_CRATES`], or an
/// OpenTelemetry crate (`opentelemetry`, `opentelemetry_sdk`, `opentelemetry-otlp`, ...).
fn is_exporter_target(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    EXPORTER_CRATES.contains(&krate)
        || krate
            .strip_prefix("opentelemetry")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['_', '-']))
}

/// Builds the logger provider, or `None` when logs are not exported over OTLP.
pub(crate) fn build(
    config: &ObservabilityConfig,
    resource: Resource,
    meter: &Meter,
    losses: &Arc<Losses>,
) -> Result<Option<SdkLoggerProvider>, SetupError> {
    let otlp = &config.logs;
    if !config.logs_exported() || otlp.exporter != ExporterKind::Otlp {
        return Ok(None);
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = (resource, meter, losses);
        Err(crate::features::otlp_disabled(Signal::Logs).into())
    }
    #[cfg(feature = "otlp")]
    build_otlp(otlp, resource, meter, losses)
}

/// The OTLP half of [`build`].
#[cfg(feature = "otlp")]
fn build_otlp(
    otlp: &crate::config::OtlpConfig,
    resource: Resource,
    meter: &Meter,
    losses: &Arc<Losses>,
) -> Result<Option<SdkLoggerProvider>, SetupError> {
    crate::traces::require_runtime_for_grpc(otlp, Signal::Logs)?;
    let builder = opentelemetry_otlp::LogExporter::builder();
    let exporter = match otlp.protocol {
        #[cfg(not(feature = "grpc"))]
        Protocol::Grpc => return Err(crate::features::grpc_disabled(Signal::Logs).into()),
        #[cfg(feature = "grpc")]
        Protocol::Grpc => crate::tls::tonic(builder.with_tonic(), otlp, Signal::Logs)?
            .with_endpoint(otlp.endpoint.clone())
            .with_timeout(otlp.timeout)
            .with_metadata(metadata(&otlp.headers)?)
            .build(),
        Protocol::HttpProtobuf => crate::tls::http(builder.with_http(), otlp, Signal::Logs)?
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(otlp.endpoint.clone())
            .with_timeout(otlp.timeout)
            .with_headers(otlp.headers.clone().into_iter().collect())
            .build(),
    }
    .map_err(|source| SetupError::Exporter {
        signal: Signal::Logs,
        source,
    })?;
    Ok(Some(
        SdkLoggerProvider::builder()
            .with_resource(resource)
            .with_log_processor(CountingLogProcessor::new(exporter, otlp, meter, losses))
            .build(),
    ))
}

/// The SDK's batch log processor, with every drop counted: a record is admitted only while fewer
/// than the configured queue size wait for export (the inner queue has room for one batch more,
/// so it never drops on its own); the rest are counted as `otel_sdk_log_dropped_total`.
/// Export outcomes are counted as `otel_sdk_exporter_log_exported_total`, and a failed export
/// is a warning (rate-limited like the span export's). At shutdown, records that cannot be
/// exported before the deadline are dropped and counted with `error_type="shutdown_deadline"`
/// (see `delivery`).
#[derive(Debug)]
struct CountingLogProcessor {
    inner: BatchLogProcessor,
    pending: Arc<AtomicUsize>,
    limit: usize,
    dropped: Counter<u64>,
    delivery: Arc<LogDelivery>,
    losses: Arc<Losses>,
}

/// Shared by [`CountingLogProcessor`] and [`CountingLogExporter`]: shutdown's deadline, the last
/// failure, and what shutdown lost. `pending` is decremented under this lock, so a shutdown that
/// stops waiting counts exactly what was not delivered.
#[derive(Debug, Default)]
struct LogDelivery(Mutex<LogDeliveryState>);

#[derive(Debug, Default)]
struct LogDeliveryState {
    /// Set by shutdown: its deadline.
    deadline: Option<Instant>,
    /// How long the last export took if it failed.
    last_failure: Option<Duration>,
    /// Records lost since shutdown began, and why the last of them were.
    lost: usize,
    cause: Option<String>,
    /// Shutdown stopped waiting at its deadline and counted what was left itself.
    abandoned: bool,
}

impl LogDelivery {
    fn lock(&self) -> std::sync::MutexGuard<'_, LogDeliveryState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl LogDeliveryState {
    fn lose(&mut self, n: usize, cause: String) {
        if self.deadline.is_some() && !self.abandoned {
            self.lost += n;
            self.cause = Some(cause);
        }
    }
}

impl CountingLogProcessor {
    fn new<E: LogExporter + 'static>(
        exporter: E,
        otlp: &crate::config::OtlpConfig,
        meter: &Meter,
        losses: &Arc<Losses>,
    ) -> Self {
        let pending = Arc::new(AtomicUsize::new(0));
        let delivery = Arc::new(LogDelivery::default());
        let dropped = meter
            .u64_counter("otel.sdk.log.dropped")
            .with_unit("{log_record}")
            .with_description("Log records dropped: the export queue was full, or (error_type=shutdown_deadline) the shutdown deadline left no time to export them.")
            .build();
        let exporter = CountingLogExporter {
            inner: exporter,
            pending: Arc::clone(&pending),
            exported: meter
                .u64_counter("otel.sdk.exporter.log.exported")
                .with_unit("{log_record}")
                .with_description(
                    "Log records handed to the exporter, by outcome (error_type set when the export failed).",
                )
                .build(),
            dropped: dropped.clone(),
            delivery: Arc::clone(&delivery),
            timeout: otlp.timeout,
        };
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(otlp.max_queue_size + otlp.max_export_batch_size)
            .with_max_export_batch_size(otlp.max_export_batch_size)
            .with_scheduled_delay(otlp.schedule_delay)
            .build();
        Self {
            inner: BatchLogProcessor::builder(exporter)
                .with_batch_config(batch)
                .build(),
            pending,
            limit: otlp.max_queue_size,
            dropped,
            delivery,
            losses: Arc::clone(losses),
        }
    }
}

impl LogProcessor for CountingLogProcessor {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        let admitted = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            self.inner.emit(record, scope);
        } else {
            self.dropped.add(1, &[]);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    /// Exports what is queued within `timeout` (see `delivery` for a collector that is down),
    /// then reports what was lost to the guard.
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.delivery.lock().deadline = Some(Instant::now() + timeout);
        let result = self.inner.shutdown_with_timeout(timeout);
        let mut state = self.delivery.lock();
        if matches!(result, Err(OTelSdkError::Timeout(_))) {
            // The export in flight did not return in time: what it held and what is still
            // queued is lost too. The exporter no longer counts anything.
            state.abandoned = true;
            let left = self.pending.load(Ordering::Acquire);
            state.lost += left;
            let last = state
                .cause
                .take()
                .map(|c| format!("{c}; "))
                .unwrap_or_default();
            state.cause = Some(format!(
                "{last}{left} log records were still queued or being exported when the \
                 {timeout:.1?} deadline passed (the collector did not answer in time)"
            ));
            self.dropped
                .add(left as u64, &crate::delivery::shutdown_drop_attributes());
        }
        self.losses.add(Signal::Logs, state.lost);
        if let Some(cause) = state.cause.take() {
            self.losses.set_cause(Signal::Logs, cause);
        }
        result
    }

    fn event_enabled(&self, level: Severity, target: &str, name: Option<&str>) -> bool {
        self.inner.event_enabled(level, target, name)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[derive(Debug)]
struct CountingLogExporter<E> {
    inner: E,
    pending: Arc<AtomicUsize>,
    exported: Counter<u64>,
    dropped: Counter<u64>,
    delivery: Arc<LogDelivery>,
    /// The exporter's timeout, to tell a hung collector from a refusing one.
    timeout: Duration,
}

impl<E: LogExporter> LogExporter for CountingLogExporter<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = batch.iter().count();
        if let Some(err) = self.give_up_at_shutdown(n) {
            return Err(err);
        }
        let started = Instant::now();
        let result = self.inner.export(batch).await;
        let took = started.elapsed();
        let failure = result
            .as_ref()
            .err()
            .map(|err| crate::delivery::describe_failure(err, took, self.timeout));
        let mut state = self.delivery.lock();
        self.pending.fetch_sub(n, Ordering::AcqRel);
        state.last_failure = failure.is_some().then_some(took);
        if let Some(why) = &failure {
            state.lose(n, why.clone());
        }
        // After shutdown gave up waiting, its report already counted these records.
        let abandoned = state.abandoned;
        drop(state);
        let failed = [KeyValue::new("error.type", "export_failed")];
        self.exported
            .add(n as u64, if result.is_ok() { &[] } else { &failed });
        if let Some(why) = failure.filter(|_| !abandoned) {
            // On the SDK's export thread, where telemetry is suppressed: printed (rate-limited,
            // as the span export's warning), never exported.
            tracing::warn!(log_records = n, took = ?took, "log export failed: {why}; {n} log record(s) lost");
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn event_enabled(&self, level: Severity, target: &str, name: Option<&str>) -> bool {
        self.inner.event_enabled(level, target, name)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E> CountingLogExporter<E> {
    /// During shutdown, with a collector known to be down and too little time left for another
    /// attempt: drops and counts the batch's `n` records instead of exporting them.
    fn give_up_at_shutdown(&self, n: usize) -> Option<OTelSdkError> {
        let mut state = self.delivery.lock();
        let deadline = state.deadline?;
        if crate::delivery::worth_an_attempt(state.last_failure, deadline) {
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let took = state.last_failure.unwrap_or_default();
        let failed_before = state.last_failure.is_some();
        self.pending.fetch_sub(n, Ordering::AcqRel);
        if state.abandoned {
            return Some(OTelSdkError::InternalFailure(format!(
                "{n} log records not exported: shutdown passed its deadline"
            )));
        }
        let last = state
            .cause
            .clone()
            .map(|c| format!("{c}; "))
            .unwrap_or_default();
        state.lose(
            n,
            if failed_before {
                format!(
                    "{last}{n} queued log records dropped without another attempt: the last \
                     export failed after {took:.1?} and {left:.1?} of the shutdown deadline was \
                     left"
                )
            } else {
                format!("{last}{n} queued log records dropped: the shutdown deadline passed")
            },
        );
        drop(state);
        self.dropped
            .add(n as u64, &crate::delivery::shutdown_drop_attributes());
        if failed_before {
            tracing::warn!(
                log_records = n,
                "shutdown: {n} queued log records dropped without another attempt; the collector \
                 is down (the last export failed after {took:.1?}) and only {left:.1?} of the \
                 deadline is left"
            );
        } else {
            tracing::warn!(
                log_records = n,
                "shutdown: {n} queued log records dropped: the deadline passed"
            );
        }
        Some(OTelSdkError::InternalFailure(format!(
            "{n} log records dropped: the collector is down and the shutdown deadline is near"
        )))
    }
}

/// OTLP headers as gRPC metadata.
#[cfg(feature = "grpc")]
pub(crate) fn metadata(
    headers: &BTreeMap<String, String>,
) -> Result<tonic::metadata::MetadataMap, ConfigError> {
    let mut map = tonic::metadata::MetadataMap::new();
    for (key, value) in headers {
        let invalid = || ConfigError::InvalidValue {
            setting: "OTLP headers",
            reason: format!("{key:?} is not a valid gRPC metadata key/value pair"),
        };
        let key = tonic::metadata::MetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes())
            .map_err(|_| invalid())?;
        let value = value.parse().map_err(|_| invalid())?;
        map.insert(key, value);
    }
    Ok(map)
}

/// The `tracing` subscriber: stdout, spans to OpenTelemetry, events to OTLP logs.
pub(crate) fn subscriber(
    config: &ObservabilityConfig,
    tracer_provider: Option<&SdkTracerProvider>,
    logger_provider: Option<&SdkLoggerProvider>,
) -> impl tracing::Subscriber + Send + Sync + 'static {
    let filter = || EnvFilter::builder().parse_lossy(&config.log_filter);
    let not_exporter = || filter_fn(|meta| !is_exporter_target(meta.target()));
    let colour = colour_stdout();
    let stdout = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(colour)
            .map_event_format(|format| WithTraceIds {
                inner: format.with_ansi(colour),
                json: false,
            })
            .with_writer(|| OneLineWriter(io::stdout()))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .map_event_format(|format| WithTraceIds {
                inner: format,
                json: true,
            })
            .boxed(),
    }
    .with_filter(filter().and(rate_limited_sdk_logs()));
    let spans = tracer_provider.map(|provider| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("soma-observability"))
            .with_filter(filter().and(not_exporter()))
    });
    let logs = logger_provider.map(|provider| {
        OpenTelemetryTracingBridge::new(provider).with_filter(filter().and(not_exporter()))
    });
    tracing_subscriber::registry()
        .with(stdout)
        .with(spans)
        .with(logs)
}

/// The stdout event format, plus the trace and span id of the OpenTelemetry context current when
/// the event was emitted (the request's server span, or a handler `tracing` span, which
/// tracing-opentelemetry makes current on enter), so that a `kubectl logs` line can be joined to
/// its trace: ` trace_id=<32 hex> span_id=<16 hex>` at the end of a text line, `"trace_id"` and
/// `"span_id"` fields in a JSON object. Events outside any span are unchanged.
struct WithTraceIds<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = current_trace_ids() else {
            return self.inner.format_event(ctx, writer, event);
        };
        // Colours are decided by `inner` itself (`Format::with_ansi`), not by this buffer.
        let mut line = String::with_capacity(256);
        self.inner.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line.as_str(), ""),
        };
        match body.strip_suffix('}').filter(|_| self.json) {
            Some(object) => {
                let comma = if object.ends_with('{') { "" } else { "," };
                write!(
                    writer,
                    r#"{object}{comma}"trace_id":"{trace_id}","span_id":"{span_id}"}}{newline}"#
                )
            }
            None => write!(
                writer,
                "{body} trace_id={trace_id} span_id={span_id}{newline}"
            ),
        }
    }
}

/// The trace and span id of the OpenTelemetry context current on this thread, if it has a span.
fn current_trace_ids() -> Option<(opentelemetry::trace::TraceId, opentelemetry::trace::SpanId)> {
    use opentelemetry::trace::TraceContextExt as _;
    opentelemetry::Context::map_current(|cx| {
        let span = cx.span();
        let context = span.span_context();
        context
            .is_valid()
            .then(|| (context.trace_id(), context.span_id()))
    })
}

/// Colours only for a terminal, and never when `NO_COLOR` is set (<https://no-color.org>).
fn colour_stdout() -> bool {
    use std::io::IsTerminal;
    io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The shortest interval between two stdout lines from one OpenTelemetry call site.
pub(crate) const SDK_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Lets an event from the OpenTelemetry crates through at most once per [`SDK_LOG_INTERVAL`]
/// per call site; every other event passes.
fn rate_limited_sdk_logs(
) -> impl tracing_subscriber::layer::Filter<tracing_subscriber::Registry> + Send + Sync + 'static {
    let last_seen: Mutex<HashMap<tracing::callsite::Identifier, Instant>> = Mutex::default();
    tracing_subscriber::filter::DynFilterFn::new(move |meta, _cx| {
        if !is_sdk_event(meta) {
            return true;
        }
        let Ok(mut last_seen) = last_seen.lock() else {
            return true;
        };
        let now = Instant::now();
        match last_seen.get(&meta.callsite()) {
            Some(seen) if now.duration_since(*seen) < SDK_LOG_INTERVAL => false,
            _ => {
                last_seen.insert(meta.callsite(), now);
                true
            }
        }
    })
    // Ask about every SDK event (the answer changes over time); cache "yes" for the rest.
    .with_callsite_filter(|meta| {
        if is_sdk_event(meta) {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::always()
        }
    })
}

fn is_sdk_event(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_event()
        && (meta.target().starts_with("opentelemetry")
            || meta.target().starts_with("soma_observability"))
}

/// Writes each formatted event as one line: inner newlines and carriage returns are escaped.
struct OneLineWriter<W>(W);

impl<W: Write> Write for OneLineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, newline) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, true),
            None => (buf, false),
        };
        if !body.iter().any(|b| *b == b'\n' || *b == b'\r') {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 8);
        for &b in body {
            match b {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                _ => line.push(b),
            }
        }
        if newline {
            line.push(b'\n');
        }
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exporter_targets_are_matched_by_crate() {
        assert!(is_exporter_target("hyper"));
        assert!(is_exporter_target("hyper_util::client"));
        assert!(is_exporter_target("h2::proto"));
        assert!(is_exporter_target("opentelemetry_sdk"));
        assert!(is_exporter_target("opentelemetry-otlp"));
        assert!(!is_exporter_target("gateway"));
        assert!(!is_exporter_target("hyperdrive"));
        assert!(!is_exporter_target("towel::x"));
        assert!(is_exporter_target("tower::buffer::worker"));
        assert!(is_exporter_target("tonic::transport::channel"));
        assert!(is_exporter_target("opentelemetry"));
        assert!(!is_exporter_target("opentelemetryish"));
        // Application middleware whose name starts like an exporter crate.
        assert!(!is_exporter_target("tower_http::trace::on_response"));
        assert!(!is_exporter_target("tower_http::catch_panic"));
        assert!(!is_exporter_target("hyperlocal"));
        assert!(!is_exporter_target("h2o::x"));
    }

    #[test]
    fn sdk_warnings_are_rate_limited_and_application_logs_are_not() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt;

        #[derive(Clone, Default)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl Write for Capture {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .with_filter(rate_limited_sdk_logs()),
        );
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..5 {
                tracing::warn!(target: "opentelemetry_sdk", "export failed");
                tracing::warn!(target: "checkout", "payment declined");
            }
        });
        let output = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert_eq!(output.matches("export failed").count(), 1, "{output}");
        assert_eq!(output.matches("payment declined").count(), 5, "{output}");
    }

    #[test]
    fn one_event_is_one_line() {
        let mut out = Vec::new();
        OneLineWriter(&mut out)
            .write_all(b"INFO path=/x\nINFO forged line\r\n")
            .unwrap();
        assert_eq!(out, b"INFO path=/x\\nINFO forged line\\r\n");
    }
}
