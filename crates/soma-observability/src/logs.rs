//! Logs: `tracing` events to stdout and, through the OpenTelemetry bridge, to OTLP.
//!
//! The stdout layer prints every event the `RUST_LOG` filter lets through, in text or JSON.
//! The OTLP layer exports the same events, except those of the exporters' own stack (hyper, h2,
//! tonic, tower, reqwest, the OpenTelemetry crates and this crate): exporting those would produce more of
//! them, an endless telemetry-induced-telemetry loop. The same targets never become spans.
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
use opentelemetry_sdk::error::OTelSdkResult;
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
use crate::error::{ConfigError, SetupError, Signal};

/// Targets whose events and spans never reach the OTLP pipelines.
const EXPORTER_TARGETS: &[&str] = &["hyper", "h2", "tonic", "tower", "reqwest", "opentelemetry"];

fn is_exporter_target(target: &str) -> bool {
    EXPORTER_TARGETS.iter().any(|prefix| {
        target.starts_with(prefix)
            && target[prefix.len()..]
                .chars()
                .next()
                .is_none_or(|c| c == ':' || c == '_' || c == '-')
    })
}

/// Builds the logger provider, or `None` when logs are not exported over OTLP.
pub(crate) fn build(
    config: &ObservabilityConfig,
    resource: Resource,
    meter: &Meter,
) -> Result<Option<SdkLoggerProvider>, SetupError> {
    let otlp = &config.logs;
    if !config.logs_exported() || otlp.exporter != ExporterKind::Otlp {
        return Ok(None);
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = (resource, meter);
        Err(crate::features::otlp_disabled(Signal::Logs).into())
    }
    #[cfg(feature = "otlp")]
    build_otlp(otlp, resource, meter)
}

/// The OTLP half of [`build`].
#[cfg(feature = "otlp")]
fn build_otlp(
    otlp: &crate::config::OtlpConfig,
    resource: Resource,
    meter: &Meter,
) -> Result<Option<SdkLoggerProvider>, SetupError> {
    crate::traces::require_runtime_for_grpc(otlp, Signal::Logs)?;
    let builder = opentelemetry_otlp::LogExporter::builder();
    let exporter = match otlp.protocol {
        #[cfg(not(feature = "grpc"))]
        Protocol::Grpc => return Err(crate::features::grpc_disabled(Signal::Logs).into()),
        #[cfg(feature = "grpc")]
        Protocol::Grpc => builder
            .with_tonic()
            .with_endpoint(otlp.endpoint.clone())
            .with_timeout(otlp.timeout)
            .with_metadata(metadata(&otlp.headers)?)
            .build(),
        Protocol::HttpProtobuf => builder
            .with_http()
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
            .with_log_processor(CountingLogProcessor::new(exporter, otlp, meter))
            .build(),
    ))
}

/// The SDK's batch log processor, with every drop counted: a record is admitted only while fewer
/// than the configured queue size wait for export (the inner queue has room for one batch more,
/// so it never drops on its own); the rest are counted as `otel_sdk_log_dropped_total`.
/// Export outcomes are counted as `otel_sdk_exporter_log_exported_total`.
#[derive(Debug)]
struct CountingLogProcessor {
    inner: BatchLogProcessor,
    pending: Arc<AtomicUsize>,
    limit: usize,
    dropped: Counter<u64>,
}

impl CountingLogProcessor {
    fn new<E: LogExporter + 'static>(
        exporter: E,
        otlp: &crate::config::OtlpConfig,
        meter: &Meter,
    ) -> Self {
        let pending = Arc::new(AtomicUsize::new(0));
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
            dropped: meter
                .u64_counter("otel.sdk.log.dropped")
                .with_unit("{log_record}")
                .with_description("Log records dropped because the export queue was full.")
                .build(),
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

#[derive(Debug)]
struct CountingLogExporter<E> {
    inner: E,
    pending: Arc<AtomicUsize>,
    exported: Counter<u64>,
}

impl<E: LogExporter> LogExporter for CountingLogExporter<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = batch.iter().count();
        let result = self.inner.export(batch).await;
        self.pending.fetch_sub(n, Ordering::AcqRel);
        let failed = [KeyValue::new("error.type", "export_failed")];
        self.exported
            .add(n as u64, if result.is_ok() { &[] } else { &failed });
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
    let stdout = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(colour_stdout())
            .with_writer(|| OneLineWriter(io::stdout()))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
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
