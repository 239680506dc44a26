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
//! Stdout lines cannot be forged:
//! - in text format a newline or carriage return inside an event is written as `\n` / `\r`, so
//!   one event is always one line, and every other control character (C0, DEL, C1) as `\xNN` /
//!   `\u{NN}`: request data cannot move the cursor, retitle the terminal (OSC) or hide text. The
//!   only escape sequences written are the formatter's own colours (`ESC [ digits m`), and only
//!   when stdout is a terminal. JSON escapes control characters itself;
//! - the ids cannot be forged from a field: in text format a `trace_id=` or `span_id=` inside the
//!   event (in its message or a field value) is written `trace_id\=` / `span_id\=`, so the only
//!   `trace_id=<32 hex> span_id=<16 hex>` of a line is the one appended here; in JSON an event's
//!   own `trace_id` / `span_id` fields are renamed `field.trace_id` / `field.span_id`;
//! - panics go through the same formatter ([`install_panic_hook`], set by `install`): an `ERROR`
//!   event of target `panic` with the message and location as fields, escaped like every other
//!   line and exported as a log record, instead of the default hook's raw text on stderr.
//!
//! Events of the
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
            .with_writer(move || OneLineWriter {
                inner: io::stdout(),
                colour,
            })
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
        // Colours are decided by `inner` itself (`Format::with_ansi`), not by this buffer.
        let mut line = String::with_capacity(256);
        self.inner.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        let line = without_forged_ids(&line, self.json);
        let Some((trace_id, span_id)) = current_trace_ids() else {
            return writer.write_str(&line);
        };
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*line, ""),
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

/// `line` with the ids an event itself carries made unlike the appended ones (see the module
/// docs): `trace_id=` becomes `trace_id\=` in text, the key `"trace_id":` becomes
/// `"field.trace_id":` in JSON (a JSON value cannot hold `"trace_id":`: its quotes are escaped).
fn without_forged_ids(line: &str, json: bool) -> std::borrow::Cow<'_, str> {
    let replacements: [(&str, &str); 2] = if json {
        [
            (r#""trace_id":"#, r#""field.trace_id":"#),
            (r#""span_id":"#, r#""field.span_id":"#),
        ]
    } else {
        [("trace_id=", "trace_id\\="), ("span_id=", "span_id\\=")]
    };
    if !replacements.iter().any(|(from, _)| line.contains(from)) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = line.to_owned();
    for (from, to) in replacements {
        out = out.replace(from, to);
    }
    std::borrow::Cow::Owned(out)
}

/// Replaces the panic hook with one that reports a panic as an `ERROR` event of target `panic`
/// (see the module docs): the message and location as fields, the backtrace too when
/// `RUST_BACKTRACE` asks for one. Without a subscriber the event goes nowhere, so `install` sets
/// it after the global subscriber.
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("<unnamed>");
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!(
                target: "panic",
                panic_message = %message,
                panic_location = %location,
                thread,
                backtrace = %backtrace,
                "thread panicked"
            );
        } else {
            tracing::error!(
                target: "panic",
                panic_message = %message,
                panic_location = %location,
                thread,
                "thread panicked"
            );
        }
    }));
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

/// Writes each formatted event as one line, with the control characters of its content escaped
/// (see the module docs); with `colour`, the formatter's own colour sequences are kept.
struct OneLineWriter<W> {
    inner: W,
    colour: bool,
}

impl<W: Write> Write for OneLineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, newline) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, true),
            None => (buf, false),
        };
        // UTF-8 C1 controls (U+0080..U+009F) start with 0xC2.
        let special = |b: &u8| *b < 0x20 && *b != b'\t' || *b == 0x7F || *b == 0xC2;
        if !body.iter().any(special) {
            self.inner.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 16);
        escape_controls(body, self.colour, &mut line);
        if newline {
            line.push(b'\n');
        }
        self.inner.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `body` with its control characters escaped into `out`; with `colour`, `ESC [ digits/; m`
/// (a colour) is kept.
fn escape_controls(body: &[u8], colour: bool, out: &mut Vec<u8>) {
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x1B if colour && colour_sequence(&body[i..]) > 0 => {
                let len = colour_sequence(&body[i..]);
                out.extend_from_slice(&body[i..i + len]);
                i += len;
                continue;
            }
            b'\t' => out.push(b),
            0x00..=0x1F | 0x7F => {
                let _ = write!(out, "\\x{b:02x}");
            }
            0xC2 if matches!(body.get(i + 1), Some(0x80..=0x9F)) => {
                let _ = write!(out, "\\u{{{:04x}}}", body[i + 1]);
                i += 2;
                continue;
            }
            _ => out.push(b),
        }
        i += 1;
    }
}

/// The length of the colour sequence `ESC [ [0-9;]* m` at the start of `bytes`, or 0.
fn colour_sequence(bytes: &[u8]) -> usize {
    if !bytes.starts_with(b"\x1b[") {
        return 0;
    }
    let params = bytes[2..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b';')
        .count();
    match bytes.get(2 + params) {
        Some(b'm') => 3 + params,
        _ => 0,
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
        let write = |line: &[u8], colour: bool| {
            let mut out = Vec::new();
            OneLineWriter {
                inner: &mut out,
                colour,
            }
            .write_all(line)
            .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            write(b"INFO path=/x\nINFO forged line\r\n", false),
            "INFO path=/x\\nINFO forged line\\r\n"
        );
        // OSC (retitle), cursor movement, BEL, DEL and a C1 CSI are escaped; tabs are kept.
        assert_eq!(
            write(
                "a\x1b]0;pwned\x07b\x1b[2Jc\x7f\u{9b}d\te\n".as_bytes(),
                false
            ),
            "a\\x1b]0;pwned\\x07b\\x1b[2Jc\\x7f\\u{009b}d\te\n"
        );
        // With colours, the formatter's own colour sequences stay; anything else does not.
        assert_eq!(
            write(b"\x1b[1;31mERROR\x1b[0m \x1b[2J\n", true),
            "\x1b[1;31mERROR\x1b[0m \\x1b[2J\n"
        );
    }
}
