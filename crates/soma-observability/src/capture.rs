//! Spans and log records kept in memory instead of exported: what
//! [`testing`](crate::testing) reads back.

use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::logs::{AnyValue, Severity};
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::Key;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLoggerProvider, SimpleLogProcessor};
use opentelemetry_sdk::trace::{SdkTracerProvider, SimpleSpanProcessor, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

/// A log record (a `tracing` event), as a test reads it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LogRecord {
    /// The message.
    pub body: String,
    /// Its severity (`INFO`, `WARN`, ...).
    pub severity: Option<Severity>,
    /// The `tracing` target (the module that emitted it, by default).
    pub target: String,
    /// The trace it was emitted in, if any.
    pub trace_id: Option<TraceId>,
    /// The span it was emitted in, if any.
    pub span_id: Option<SpanId>,
    /// Its fields.
    pub attributes: Vec<(Key, AnyValue)>,
}

impl LogRecord {
    /// The value of the field `key`, if the record has it.
    pub fn attribute(&self, key: &str) -> Option<&AnyValue> {
        self.attributes
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, value)| value)
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a test's spans and log records go instead of an exporter: handed to the builder by
/// [`TestTelemetry`].
#[derive(Clone, Debug)]
pub(crate) struct Capture {
    pub(crate) spans: Arc<Mutex<Vec<SpanData>>>,
    pub(crate) logs: Arc<Mutex<Vec<LogRecord>>>,
}

impl Capture {
    /// A tracer and a logger provider that keep what they get here.
    pub(crate) fn providers(
        &self,
        sampler: crate::config::Sampler,
        resource: &Resource,
    ) -> (Option<SdkTracerProvider>, Option<SdkLoggerProvider>) {
        (
            Some(self.tracer_provider(resource.clone(), crate::traces::sampler(sampler))),
            Some(self.logger_provider(resource.clone())),
        )
    }

    /// A tracer provider that keeps every span as it ends.
    fn tracer_provider(
        &self,
        resource: Resource,
        sampler: opentelemetry_sdk::trace::Sampler,
    ) -> SdkTracerProvider {
        SdkTracerProvider::builder()
            .with_resource(resource)
            .with_sampler(sampler)
            .with_span_processor(SimpleSpanProcessor::new(MemorySpans(Arc::clone(
                &self.spans,
            ))))
            .build()
    }

    /// A logger provider that keeps every record as it is emitted.
    fn logger_provider(&self, resource: Resource) -> SdkLoggerProvider {
        SdkLoggerProvider::builder()
            .with_resource(resource)
            .with_log_processor(SimpleLogProcessor::new(MemoryLogs(Arc::clone(&self.logs))))
            .build()
    }
}

#[derive(Debug)]
struct MemorySpans(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for MemorySpans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        lock(&self.0).extend(batch);
        Ok(())
    }
}

#[derive(Debug)]
struct MemoryLogs(Arc<Mutex<Vec<LogRecord>>>);

impl LogExporter for MemoryLogs {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let records = batch.iter().map(|(record, _scope)| LogRecord {
            body: match record.body() {
                Some(AnyValue::String(body)) => body.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            },
            severity: record.severity_number(),
            target: record.target().map(ToString::to_string).unwrap_or_default(),
            trace_id: record.trace_context().map(|cx| cx.trace_id),
            span_id: record.trace_context().map(|cx| cx.span_id),
            attributes: record.attributes_iter().cloned().collect(),
        });
        lock(&self.0).extend(records);
        Ok(())
    }
}
