//! The `tracing` subscriber: stdout, spans to OpenTelemetry, events to OTLP logs.
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

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

use crate::config::{LogFormat, ObservabilityConfig};

/// What the subscriber needs of the configuration, taken once by
/// [`build`](crate::ObservabilityBuilder::build).
#[derive(Clone, Debug)]
pub(crate) struct SubscriberSettings {
    /// The `RUST_LOG` directives.
    pub(crate) filter: String,
    /// Text or JSON on stdout.
    pub(crate) format: LogFormat,
    /// Whether events are printed on stdout at all (not in `testing`).
    pub(crate) stdout: bool,
    /// The instrumentation scope of the application's `tracing` spans: the service's name.
    pub(crate) scope: String,
}

impl SubscriberSettings {
    pub(crate) fn new(config: &ObservabilityConfig, service_name: &str) -> Self {
        Self {
            filter: config.log_filter.clone(),
            format: config.log_format,
            stdout: true,
            scope: service_name.to_owned(),
        }
    }
}

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

/// The `tracing` subscriber: stdout, spans to OpenTelemetry, events to OTLP logs.
pub(crate) fn subscriber(
    settings: &SubscriberSettings,
    tracer_provider: Option<&SdkTracerProvider>,
    logger_provider: Option<&SdkLoggerProvider>,
) -> impl tracing::Subscriber + Send + Sync + 'static {
    let filter = || EnvFilter::builder().parse_lossy(&settings.filter);
    let not_exporter = || filter_fn(|meta| !is_exporter_target(meta.target()));
    let colour = colour_stdout();
    let stdout = match settings.format {
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
    let stdout = settings.stdout.then_some(stdout);
    // With OTLP logs on, an event is a log record (with its trace and span id), not also a span
    // event: never both. An ERROR event still marks its span as failed (`ErrorStatus`).
    let events_are_logs = logger_provider.is_some();
    let spans = tracer_provider.map(|provider| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(settings.scope.clone()))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(
                filter()
                    .and(not_exporter())
                    .and(filter_fn(move |meta| !(events_are_logs && meta.is_event()))),
            )
    });
    let error_status = (tracer_provider.is_some() && events_are_logs)
        .then(|| ErrorStatus.with_filter(filter().and(not_exporter())));
    let logs = logger_provider.map(|provider| {
        OpenTelemetryTracingBridge::new(provider).with_filter(filter().and(not_exporter()))
    });
    tracing_subscriber::registry()
        .with(stdout)
        .with(spans)
        .with(error_status)
        .with(logs)
}

/// Sets the status of the OpenTelemetry span of an ERROR event's `tracing` span to Error, with
/// the event's message, as tracing-opentelemetry does for the events it records: for when events
/// go to OTLP logs instead of span events.
struct ErrorStatus;

impl<S> Layer<S> for ErrorStatus
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        // Contextual events inside a `tracing` span only: that span's OpenTelemetry context is
        // the current one (tracing-opentelemetry makes it current on enter).
        if *event.metadata().level() != tracing::Level::ERROR
            || event.parent().is_some()
            || ctx.lookup_current().is_none()
        {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        opentelemetry::Context::map_current(|cx| {
            use opentelemetry::trace::TraceContextExt as _;
            cx.span()
                .set_status(opentelemetry::trace::Status::error(message.0));
        });
    }
}

/// The `message` field of an event.
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
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
