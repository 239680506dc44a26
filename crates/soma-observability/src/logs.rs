//! Logs: the OpenTelemetry logger provider that exports `tracing` events over OTLP (the
//! `subscriber` module bridges the events to it and keeps the exporters' own events out), with
//! every record counted.

// Without `otlp` the OTLP log processor below is compiled but never built.
#![cfg_attr(not(feature = "grpc"), allow(dead_code, unused_imports))]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry::logs::Severity;
use opentelemetry::metrics::{Counter, Meter};
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{
    BatchConfigBuilder, BatchLogProcessor, LogBatch, LogExporter, LogProcessor, SdkLogRecord,
    SdkLoggerProvider,
};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::{ExporterKind, ObservabilityConfig};
use crate::delivery::Losses;
use crate::error::{SetupError, Signal};

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
    // The connection runs on the caller's runtime (`None`), as it always has for logs.
    let (exporter, _no_runtime) = crate::otlp::build_exporter!(
        opentelemetry_otlp::LogExporter::builder(),
        otlp,
        Signal::Logs,
        None
    )?;
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
    /// Says when the full queue drops log records.
    full: crate::delivery::QueueFullWarning,
    delivery: Arc<LogDelivery>,
    losses: Arc<Losses>,
}

/// Shared by [`CountingLogProcessor`] and [`CountingLogExporter`]: shutdown's deadline and what
/// it lost, and the last failure. `pending` is decremented under this lock, so a shutdown that
/// stops waiting counts exactly what was not delivered.
#[derive(Debug, Default)]
struct LogDelivery(Mutex<LogDeliveryState>);

#[derive(Debug, Default)]
struct LogDeliveryState {
    shutdown: crate::delivery::Shutdown,
    /// How long the last export took if it failed.
    last_failure: Option<Duration>,
}

impl LogDelivery {
    fn lock(&self) -> std::sync::MutexGuard<'_, LogDeliveryState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let crate::delivery::Counters { exported, dropped } =
            crate::delivery::Counters::new(meter, Signal::Logs);
        let exporter = CountingLogExporter {
            inner: exporter,
            pending: Arc::clone(&pending),
            exported,
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
            full: crate::delivery::QueueFullWarning::default(),
            delivery,
            losses: Arc::clone(losses),
        }
    }
}

impl LogProcessor for CountingLogProcessor {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        if crate::delivery::admit(&self.pending, self.limit) {
            self.inner.emit(record, scope);
        } else {
            self.dropped.add(1, &[]);
            self.full.dropped(crate::error::Signal::Logs, self.limit);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    /// Exports what is queued within `timeout` (see `delivery` for a collector that is down),
    /// then reports what was lost to the guard.
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.delivery.lock().shutdown.deadline = Some(Instant::now() + timeout);
        let result = self.inner.shutdown_with_timeout(timeout);
        let mut state = self.delivery.lock();
        if matches!(result, Err(OTelSdkError::Timeout(_))) {
            // The export in flight did not return in time: what it held and what is still
            // queued is lost too. The exporter no longer counts anything.
            let left = self.pending.load(Ordering::Acquire);
            state.shutdown.abandon(Signal::Logs, left, timeout);
            self.dropped
                .add(left as u64, &crate::delivery::shutdown_drop_attributes());
        }
        state.shutdown.report(Signal::Logs, &self.losses);
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
            state.shutdown.lose(n, why.clone());
        }
        // After shutdown gave up waiting, its report already counted these records.
        let abandoned = state.shutdown.abandoned;
        drop(state);
        crate::otlp::count_export(&self.exported, n, &result);
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
        let deadline = state.shutdown.deadline?;
        if crate::delivery::worth_an_attempt(state.last_failure, deadline) {
            return None;
        }
        self.pending.fetch_sub(n, Ordering::AcqRel);
        let last_failure = state.last_failure;
        let Some(warning) = state.shutdown.give_up(Signal::Logs, n, last_failure) else {
            return Some(OTelSdkError::InternalFailure(format!(
                "{n} log records not exported: shutdown passed its deadline"
            )));
        };
        drop(state);
        self.dropped
            .add(n as u64, &crate::delivery::shutdown_drop_attributes());
        tracing::warn!(log_records = n, "{warning}");
        Some(OTelSdkError::InternalFailure(format!(
            "{n} log records dropped: the collector is down and the shutdown deadline is near"
        )))
    }
}
