//! The tracer provider: sampler, batch processor and exporter. Touches no global state.
//!
//! # Nothing lost silently
//!
//! The SDK's batch processor drops spans when its queue is full and reports it only in a log
//! line. The batch processor here keeps the count of spans waiting for export and drops (and
//! counts) a span when the configured queue is full, so every drop shows up on `/metrics` as
//! `otel_sdk_span_dropped_total`. Export outcomes are counted as
//! `otel_sdk_exporter_span_exported_total` (with `error_type="export_failed"` for failed batches).
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
use opentelemetry::{Context, KeyValue};
#[cfg(feature = "grpc")]
use opentelemetry_otlp::WithTonicConfig;
#[cfg(feature = "otlp")]
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    Sampler as SdkSampler, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;

use crate::config::{
    ExporterKind, ObservabilityConfig, OtlpConfig, ParentBasedRoot, Protocol, Sampler,
};
use crate::error::{SetupError, Signal};

/// Builds the tracer provider, or `None` when traces are disabled.
pub(crate) fn build(
    config: &ObservabilityConfig,
    resource: Resource,
    meter: &Meter,
) -> Result<Option<SdkTracerProvider>, SetupError> {
    if !config.traces_enabled() {
        return Ok(None);
    }
    let counters = ExportCounters::new(meter);
    let builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(sampler(config.sampler));
    let provider = match config.traces.exporter {
        #[cfg(not(feature = "otlp"))]
        ExporterKind::Otlp => return Err(crate::features::otlp_disabled(Signal::Traces).into()),
        #[cfg(feature = "otlp")]
        ExporterKind::Otlp => {
            let (exporter, runtime) = otlp_exporter(&config.traces)?;
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

fn sampler(sampler: Sampler) -> SdkSampler {
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

/// Fails early, with a clear error, where the gRPC exporter would panic without a runtime.
pub(crate) fn require_runtime_for_grpc(
    otlp: &OtlpConfig,
    signal: Signal,
) -> Result<(), SetupError> {
    if crate::features::GRPC
        && otlp.exporter == ExporterKind::Otlp
        && otlp.protocol == Protocol::Grpc
        && tokio::runtime::Handle::try_current().is_err()
    {
        return Err(SetupError::NoRuntime { signal });
    }
    Ok(())
}

/// The OTLP span exporter, and for gRPC the runtime its connection runs on.
///
/// The gRPC exporter's connection (tonic's buffer worker and the HTTP/2 connection task) runs on
/// a one-thread runtime of its own rather than on the application's: on a busy server the
/// application's runtime has hundreds of request tasks ready, every hop of an export waited
/// behind them, and exports slowed until the queue overflowed (at 1 000 connections on two
/// cores, 8 000 spans/s were exported and 80 % were dropped). On its own thread the export gets
/// its fair share of the CPU from the operating system instead.
#[cfg(feature = "otlp")]
fn otlp_exporter(
    otlp: &OtlpConfig,
) -> Result<(opentelemetry_otlp::SpanExporter, Option<ExportRuntime>), SetupError> {
    require_runtime_for_grpc(otlp, Signal::Traces)?;
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let (built, runtime) = match otlp.protocol {
        #[cfg(not(feature = "grpc"))]
        Protocol::Grpc => return Err(crate::features::grpc_disabled(Signal::Traces).into()),
        #[cfg(feature = "grpc")]
        Protocol::Grpc => {
            let runtime = ExportRuntime::new();
            let _entered = runtime.as_ref().map(ExportRuntime::enter);
            let built = builder
                .with_tonic()
                .with_endpoint(otlp.endpoint.clone())
                .with_timeout(otlp.timeout)
                .with_metadata(crate::logs::metadata(&otlp.headers)?)
                .build();
            (built, runtime)
        }
        Protocol::HttpProtobuf => (
            builder
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(otlp.endpoint.clone())
                .with_timeout(otlp.timeout)
                .with_headers(otlp.headers.clone().into_iter().collect())
                .build(),
            None,
        ),
    };
    let exporter = built.map_err(|source| SetupError::Exporter {
        signal: Signal::Traces,
        source,
    })?;
    Ok((exporter, runtime))
}

/// A one-worker tokio runtime for the gRPC span exporter's connection (see [`otlp_exporter`]);
/// shut down in the background when the exporter goes away, from whatever thread that is.
#[derive(Debug)]
struct ExportRuntime(Option<tokio::runtime::Runtime>);

impl ExportRuntime {
    /// `None` (the exporter then uses the caller's runtime) if the thread cannot be started.
    fn new() -> Option<Self> {
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otel-trace-export")
            .enable_all()
            .build()
        {
            Ok(runtime) => Some(Self(Some(runtime))),
            Err(err) => {
                tracing::warn!(error = %err, "cannot start the trace export thread; exporting from the application's runtime");
                None
            }
        }
    }

    fn enter(&self) -> Option<tokio::runtime::EnterGuard<'_>> {
        self.0.as_ref().map(tokio::runtime::Runtime::enter)
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

#[derive(Clone, Debug)]
struct ExportCounters {
    exported: Counter<u64>,
    dropped: Counter<u64>,
}

impl ExportCounters {
    fn new(meter: &Meter) -> Self {
        Self {
            exported: meter
                .u64_counter("otel.sdk.exporter.span.exported")
                .with_unit("{span}")
                .with_description("Spans handed to the exporter, by outcome (error_type set when the export failed).")
                .build(),
            dropped: meter
                .u64_counter("otel.sdk.span.dropped")
                .with_unit("{span}")
                .with_description("Finished spans dropped because the export queue was full.")
                .build(),
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
    /// Set by shutdown, with the time the exporter's own shutdown may take.
    shutdown: Option<Duration>,
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
    mut state: MutexGuard<'a, QueueState>,
    timeout: Duration,
    done: impl Fn(&QueueState) -> bool,
) -> (MutexGuard<'a, QueueState>, bool) {
    let deadline = Instant::now() + timeout;
    while !done(&state) {
        let now = Instant::now();
        if now >= deadline {
            return (state, false);
        }
        state = condvar
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    (state, true)
}

/// [`SpanExporter`] made object-safe for the export thread.
trait DynExporter: Send + Sync + std::fmt::Debug {
    fn export_blocking(&self, batch: Vec<SpanData>) -> OTelSdkResult;
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult;
    fn set_resource(&mut self, resource: &Resource);
}

impl<E: SpanExporter> DynExporter for CountingExporter<E> {
    fn export_blocking(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        block_on(SpanExporter::export(self, batch))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        SpanExporter::shutdown_with_timeout(self, timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        SpanExporter::set_resource(self, resource);
    }
}

/// Runs `future` to completion on this thread (the exporters do their I/O elsewhere: the
/// gRPC one on its runtime, the HTTP one on reqwest's blocking client).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
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
            pending: Arc::clone(&pending),
            counters: counters.clone(),
        }));
        let queue = Arc::new(Queue::default());
        let batch_size = otlp.max_export_batch_size.max(1);
        let worker = {
            let queue = Arc::clone(&queue);
            let exporter = Arc::clone(&exporter);
            let delay = otlp.schedule_delay;
            move || export_loop(&queue, &*exporter, batch_size, delay)
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

/// The export thread: one round per full batch, schedule delay, flush or shutdown.
fn export_loop(
    queue: &Queue,
    exporter: &Mutex<dyn DynExporter>,
    batch_size: usize,
    delay: Duration,
) {
    loop {
        let state = queue.lock();
        let (mut state, _) = wait_until(&queue.work, state, delay, |s| {
            s.spans.len() >= batch_size || s.flushes_asked > s.flushes_done || s.shutdown.is_some()
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
        let shutdown = state.shutdown;
        drop(state);
        let exporter = exporter.lock().unwrap_or_else(PoisonError::into_inner);
        while !spans.is_empty() {
            let rest = if spans.len() > batch_size {
                spans.split_off(batch_size)
            } else {
                Vec::new()
            };
            if let Err(err) = exporter.export_blocking(spans) {
                // Rate-limited on stdout, never exported (see `logs`); counted on /metrics.
                tracing::warn!(error = %err, "span export failed; the spans are lost");
            }
            spans = rest;
        }
        let stop = shutdown.map(|timeout| exporter.shutdown_with_timeout(timeout));
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

impl SpanProcessor for CountingProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let admitted = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            self.counters.dropped.add(1, &[]);
            return;
        }
        let mut state = self.queue.lock();
        if state.shutdown.is_some() {
            drop(state);
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        state.spans.push(span);
        if state.spans.len() == self.batch_size {
            self.queue.work.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let mut state = self.queue.lock();
        if state.shutdown.is_some() || state.stopped {
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

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let mut state = self.queue.lock();
        if state.shutdown.is_some() {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        state.shutdown = Some(timeout);
        self.queue.work.notify_one();
        let (state, done) = wait_until(&self.queue.progress, state, timeout, |s| s.stopped);
        drop(state);
        if done {
            Ok(())
        } else {
            Err(OTelSdkError::Timeout(timeout))
        }
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
        if state.shutdown.is_none() {
            state.shutdown = Some(Duration::from_secs(1));
            self.queue.work.notify_one();
        }
    }
}

#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    pending: Arc<AtomicUsize>,
    counters: ExportCounters,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.pending.fetch_sub(n, Ordering::AcqRel);
        let failed = [KeyValue::new("error.type", "export_failed")];
        self.counters
            .exported
            .add(n as u64, if result.is_ok() { &[] } else { &failed });
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
