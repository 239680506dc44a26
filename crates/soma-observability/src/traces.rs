//! The tracer provider: sampler, batch processor and exporter. Touches no global state.
//!
//! # Nothing lost silently
//!
//! The SDK's batch processor drops spans when its queue is full and reports it only in a log
//! line. The batch processor here keeps the count of spans waiting for export and drops (and
//! counts) a span when the configured queue is full, so every drop shows up on `/metrics` as
//! `otel_sdk_span_dropped_total`. Export outcomes are counted as
//! `otel_sdk_exporter_span_exported_total` (with `error_type="export_failed"` for failed batches).
//! At shutdown, spans that cannot be exported before the deadline are dropped and counted as
//! `otel_sdk_span_dropped_total{error_type="shutdown_deadline"}` (see `delivery`).
//!
//! # Cheap when busy, small when idle
//!
//! Spans wait in a queue that grows with the backlog (the SDK's channel is allocated and written
//! for its full size up front: ~6 MiB for the default 16 384 spans). One thread exports a batch
//! at a time; the gRPC exporter's connection runs on a one-thread runtime of its own, so a busy
//! application runtime cannot starve it (see `benches/README.md` for the figures).

// Without `otlp` (or `grpc`) the exporters' helpers below are compiled but never used.
#![cfg_attr(not(feature = "grpc"), allow(dead_code, unused_imports))]

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry::metrics::{Counter, Meter};
use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    Sampler as SdkSampler, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;

use crate::config::{ExporterKind, ObservabilityConfig, OtlpConfig, ParentBasedRoot, Sampler};
use crate::delivery::{self, Losses};
use crate::error::{SetupError, Signal};
use crate::otlp::ExportRuntime;

/// Builds the tracer provider, or `None` when traces are disabled.
pub(crate) fn build(
    config: &ObservabilityConfig,
    resource: Resource,
    meter: &Meter,
    losses: &Arc<Losses>,
) -> Result<Option<SdkTracerProvider>, SetupError> {
    if !config.traces_enabled() {
        return Ok(None);
    }
    let counters = ExportCounters::new(meter, losses);
    let builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(sampler(config.sampler));
    let provider = match config.traces.exporter {
        #[cfg(not(feature = "otlp"))]
        ExporterKind::Otlp => return Err(crate::features::otlp_disabled(Signal::Traces).into()),
        #[cfg(feature = "otlp")]
        ExporterKind::Otlp => {
            let (exporter, runtime) = otlp_exporter(config, &counters.dropped)?;
            builder.with_span_processor(
                CountingProcessor::new(exporter, &config.traces, counters).with_runtime(runtime),
            )
        }
        ExporterKind::Console => builder.with_span_processor(CountingProcessor::new(
            ConsoleExporter,
            &config.traces,
            counters,
        )),
        ExporterKind::None => return Ok(None),
    };
    Ok(Some(provider.build()))
}

pub(crate) fn sampler(sampler: Sampler) -> SdkSampler {
    match sampler {
        Sampler::AlwaysOn => SdkSampler::AlwaysOn,
        Sampler::AlwaysOff => SdkSampler::AlwaysOff,
        Sampler::TraceIdRatio(ratio) => SdkSampler::TraceIdRatioBased(ratio),
        Sampler::ParentBased(root) => SdkSampler::ParentBased(Box::new(match root {
            ParentBasedRoot::AlwaysOn => SdkSampler::AlwaysOn,
            ParentBasedRoot::AlwaysOff => SdkSampler::AlwaysOff,
            ParentBasedRoot::TraceIdRatio(ratio) => SdkSampler::TraceIdRatioBased(ratio),
        })),
    }
}

/// The OTLP span exporter (see [`span_export`](crate::span_export)), and for gRPC the runtime
/// its connection runs on (see [`ExportRuntime`]).
#[cfg(feature = "otlp")]
fn otlp_exporter(
    config: &ObservabilityConfig,
    dropped: &Counter<u64>,
) -> Result<(crate::span_export::OtlpSpanExporter, Option<ExportRuntime>), SetupError> {
    let (exporter, runtime) =
        crate::span_export::OtlpSpanExporter::build(&config.traces, config.max_export_batch_bytes)?;
    Ok((exporter.with_dropped(dropped.clone()), runtime))
}

#[derive(Clone, Debug)]
struct ExportCounters {
    exported: Counter<u64>,
    dropped: Counter<u64>,
    /// What shutdown could not deliver, read by the guard.
    losses: Arc<Losses>,
}

impl ExportCounters {
    fn new(meter: &Meter, losses: &Arc<Losses>) -> Self {
        let delivery::Counters { exported, dropped } =
            delivery::Counters::new(meter, Signal::Traces);
        Self {
            exported,
            dropped,
            losses: Arc::clone(losses),
        }
    }
}

/// A batch processor that never drops silently (see the module docs).
///
/// Spans wait in a vector that grows with the backlog, not in a channel allocated (and, as
/// `std::sync::mpsc` does, written to) for the whole queue size up front: the SDK's batch
/// processor with the default 16 384-span queue held ~6 MiB before the first span. One thread
/// exports, a batch at a time, when a batch is full, every schedule delay, on flush and at
/// shutdown.
#[derive(Debug)]
struct CountingProcessor {
    queue: Arc<Queue>,
    exporter: Arc<Mutex<dyn DynExporter>>,
    pending: Arc<AtomicUsize>,
    limit: usize,
    /// Says when the full queue drops spans.
    full: Arc<delivery::QueueFullWarning>,
    batch_size: usize,
    counters: ExportCounters,
    /// Declared last: shut down after the export thread was told to stop.
    runtime: Option<ExportRuntime>,
}

/// How long [`SpanProcessor::force_flush`] waits, as the SDK's batch processor does.
const FORCE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the request threads and the export thread share.
#[derive(Debug, Default)]
struct Queue {
    state: Mutex<QueueState>,
    /// Wakes the export thread: a batch is full, or a flush or the shutdown was asked for.
    work: Condvar,
    /// Wakes flushers and shutdown: the export thread finished a round.
    progress: Condvar,
}

#[derive(Debug, Default)]
struct QueueState {
    spans: Vec<SpanData>,
    flushes_asked: u64,
    flushes_done: u64,
    /// Its deadline and what it lost, once shutdown began.
    shutdown: delivery::Shutdown,
    stopped: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Waits on `condvar` until `done` holds or `timeout` passes; `false` on time-out.
fn wait_until<'a>(
    condvar: &Condvar,
    state: MutexGuard<'a, QueueState>,
    timeout: Duration,
    done: impl Fn(&QueueState) -> bool,
) -> (MutexGuard<'a, QueueState>, bool) {
    delivery::wait_until(condvar, state, Instant::now() + timeout, done)
}

/// [`SpanExporter`] made object-safe for the export thread.
trait DynExporter: Send + Sync + std::fmt::Debug {
    fn export_blocking(&self, batch: Vec<SpanData>) -> OTelSdkResult;
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult;
    fn set_resource(&mut self, resource: &Resource);
}

impl<E: SpanExporter> DynExporter for CountingExporter<E> {
    fn export_blocking(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        // Without a deadline it returns only once the export is done.
        crate::otlp::block_on(SpanExporter::export(self, batch), None)
            .unwrap_or(Err(OTelSdkError::Timeout(Duration::ZERO)))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        SpanExporter::shutdown_with_timeout(self, timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        SpanExporter::set_resource(self, resource);
    }
}

impl CountingProcessor {
    fn new<E: SpanExporter + 'static>(
        exporter: E,
        otlp: &OtlpConfig,
        counters: ExportCounters,
    ) -> Self {
        let pending = Arc::new(AtomicUsize::new(0));
        let exporter: Arc<Mutex<dyn DynExporter>> = Arc::new(Mutex::new(CountingExporter {
            inner: exporter,
            counters: counters.clone(),
        }));
        let queue = Arc::new(Queue::default());
        let batch_size = otlp.max_export_batch_size.max(1);
        let worker = {
            let export = ExportThread {
                queue: Arc::clone(&queue),
                exporter: Arc::clone(&exporter),
                pending: Arc::clone(&pending),
                counters: counters.clone(),
                batch_size,
                delay: otlp.schedule_delay,
                timeout: otlp.timeout,
            };
            move || export.run()
        };
        if let Err(err) = std::thread::Builder::new()
            .name("OpenTelemetry.Traces.BatchProcessor".to_owned())
            .spawn(worker)
        {
            tracing::warn!(error = %err, "cannot start the span export thread; spans will be dropped");
            queue.lock().stopped = true;
        }
        Self {
            queue,
            exporter,
            pending,
            limit: otlp.max_queue_size,
            full: Arc::default(),
            batch_size,
            counters,
            runtime: None,
        }
    }

    /// Keeps the exporter's runtime alive as long as the processor.
    fn with_runtime(mut self, runtime: Option<ExportRuntime>) -> Self {
        self.runtime = runtime;
        self
    }
}

/// What the export thread works with.
struct ExportThread {
    queue: Arc<Queue>,
    exporter: Arc<Mutex<dyn DynExporter>>,
    /// Spans queued or being exported; decremented here, under the queue's lock, so that a
    /// shutdown that stops waiting counts exactly what was not delivered.
    pending: Arc<AtomicUsize>,
    counters: ExportCounters,
    batch_size: usize,
    delay: Duration,
    /// The exporter's timeout, to tell a hung collector from a refusing one.
    timeout: Duration,
}

impl ExportThread {
    /// One round per full batch, schedule delay, flush or shutdown.
    fn run(self) {
        // As on the SDK's log export thread: what this thread logs (export warnings) is
        // printed but never exported, so a failing collector cannot feed itself.
        let _suppressed = Context::enter_telemetry_suppressed_scope();
        let queue = &*self.queue;
        let batch_size = self.batch_size;
        // How long the last export took if it failed: the collector is known to be down, and
        // during shutdown no attempt is started that could not finish in the time left.
        let mut last_failure = None;
        loop {
            let state = queue.lock();
            let (mut state, _) = wait_until(&queue.work, state, self.delay, |s| {
                s.spans.len() >= batch_size
                    || s.flushes_asked > s.flushes_done
                    || s.shutdown.began()
            });
            let busy = state.spans.len() >= batch_size;
            let mut spans = std::mem::replace(
                &mut state.spans,
                if busy {
                    Vec::with_capacity(batch_size)
                } else {
                    Vec::new()
                },
            );
            let flushes = state.flushes_asked;
            let shutdown = state.shutdown.deadline;
            drop(state);
            let exporter = self.exporter.lock().unwrap_or_else(PoisonError::into_inner);
            while !spans.is_empty() {
                let rest = if spans.len() > batch_size {
                    spans.split_off(batch_size)
                } else {
                    Vec::new()
                };
                let deadline = queue.lock().shutdown.deadline;
                if let Some(deadline) = deadline {
                    if !delivery::worth_an_attempt(last_failure, deadline) {
                        self.give_up(spans.len() + rest.len(), last_failure);
                        break;
                    }
                }
                last_failure = self.export(&*exporter, spans);
                spans = rest;
            }
            let stop = shutdown.map(|deadline| {
                exporter.shutdown_with_timeout(deadline.saturating_duration_since(Instant::now()))
            });
            drop(exporter);
            let mut state = queue.lock();
            state.flushes_done = flushes;
            if let Some(result) = stop {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "span exporter shutdown failed");
                }
                state.stopped = true;
                queue.progress.notify_all();
                return;
            }
            queue.progress.notify_all();
        }
    }

    /// Exports one batch; returns how long it took if it failed.
    fn export(&self, exporter: &dyn DynExporter, batch: Vec<SpanData>) -> Option<Duration> {
        let n = batch.len();
        let started = Instant::now();
        let result = exporter.export_blocking(batch);
        let took = started.elapsed();
        let failure = result
            .err()
            .map(|err| delivery::describe_failure(&err, took, self.timeout));
        let mut state = self.queue.lock();
        self.pending.fetch_sub(n, Ordering::AcqRel);
        if let Some(why) = &failure {
            state.shutdown.lose(n, why.clone());
        }
        // After shutdown gave up waiting, its report already counted these spans.
        let abandoned = state.shutdown.abandoned;
        drop(state);
        let why = failure?;
        if abandoned {
            return Some(took);
        }
        // Rate-limited on stdout, never exported (see `subscriber`); counted on /metrics.
        tracing::warn!(spans = n, took = ?took, "span export failed: {why}; {n} span(s) lost");
        Some(took)
    }

    /// Drops (and counts) `n` spans that shutdown has no time left to export.
    fn give_up(&self, n: usize, last_failure: Option<Duration>) {
        let mut state = self.queue.lock();
        self.pending.fetch_sub(n, Ordering::AcqRel);
        let Some(warning) = state.shutdown.give_up(Signal::Traces, n, last_failure) else {
            return;
        };
        drop(state);
        self.counters
            .dropped
            .add(n as u64, &delivery::shutdown_drop_attributes());
        tracing::warn!(spans = n, "{warning}");
    }
}

impl SpanProcessor for CountingProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if !delivery::admit(&self.pending, self.limit) {
            self.counters.dropped.add(1, &[]);
            self.full.dropped(Signal::Traces, self.limit);
            return;
        }
        let mut state = self.queue.lock();
        if state.shutdown.began() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            // Keep the more telling reason (a collector that is down) if there is one.
            let cause = state
                .shutdown
                .cause
                .take()
                .unwrap_or_else(|| "a span ended after shutdown began".to_owned());
            state.shutdown.lose(1, cause);
            drop(state);
            self.counters
                .dropped
                .add(1, &delivery::shutdown_drop_attributes());
            return;
        }
        state.spans.push(span);
        if state.spans.len() == self.batch_size {
            self.queue.work.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let mut state = self.queue.lock();
        if state.shutdown.began() || state.stopped {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        state.flushes_asked += 1;
        let ticket = state.flushes_asked;
        self.queue.work.notify_one();
        let (state, done) = wait_until(&self.queue.progress, state, FORCE_FLUSH_TIMEOUT, |s| {
            s.flushes_done >= ticket || s.stopped
        });
        drop(state);
        if done {
            Ok(())
        } else {
            Err(OTelSdkError::Timeout(FORCE_FLUSH_TIMEOUT))
        }
    }

    /// Exports what is queued within `timeout` (see `delivery` for a collector that is down),
    /// then reports what was lost to the guard.
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let mut state = self.queue.lock();
        if state.shutdown.began() {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        state.shutdown.deadline = Some(Instant::now() + timeout);
        self.queue.work.notify_one();
        let (mut state, done) = wait_until(&self.queue.progress, state, timeout, |s| s.stopped);
        if done {
            state.shutdown.report(Signal::Traces, &self.counters.losses);
            return Ok(());
        }
        // The export in flight did not return in time: what it held and what is still queued
        // is lost too. The export thread no longer counts anything.
        let left = self.pending.load(Ordering::Acquire);
        state.shutdown.abandon(Signal::Traces, left, timeout);
        state.shutdown.report(Signal::Traces, &self.counters.losses);
        drop(state);
        self.counters
            .dropped
            .add(left as u64, &delivery::shutdown_drop_attributes());
        Err(OTelSdkError::Timeout(timeout))
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.exporter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_resource(resource);
    }
}

impl Drop for CountingProcessor {
    /// Lets the export thread finish if the provider was never shut down.
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        if !state.shutdown.began() {
            state.shutdown.deadline = Some(Instant::now() + Duration::from_secs(1));
            self.queue.work.notify_one();
        }
    }
}

#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    counters: ExportCounters,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        crate::otlp::count_export(&self.counters.exported, n, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// `OTEL_TRACES_EXPORTER=console`: one readable line per span on stdout.
#[derive(Debug)]
struct ConsoleExporter;

impl SpanExporter for ConsoleExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut out = String::new();
        for span in batch {
            let duration = span
                .end_time
                .duration_since(span.start_time)
                .unwrap_or_default();
            let _ = write!(
                out,
                "span trace_id={} span_id={} parent_id={} kind={:?} name={:?} duration_ms={:.3} status={:?}",
                span.span_context.trace_id(),
                span.span_context.span_id(),
                span.parent_span_id,
                span.span_kind,
                span.name,
                duration.as_secs_f64() * 1000.0,
                span.status,
            );
            for kv in &span.attributes {
                match &kv.value {
                    opentelemetry::Value::String(v) => write!(out, " {}={:?}", kv.key, v.as_str()),
                    other => write!(out, " {}={other}", kv.key),
                }
                .ok();
            }
            out.push('\n');
        }
        print!("{out}");
        Ok(())
    }
}
