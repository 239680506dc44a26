//! OTLP metrics push (`OTEL_METRICS_EXPORTER=otlp`): a reader of the meter provider that
//! collects and exports every instrument from a thread of its own, every export interval, and
//! once more at shutdown. What is pushed and what is not: see the
//! [configuration docs](crate::config#otlp-metrics-push).
//!
//! The SDK's `PeriodicReader` is not used: its shutdown waits a fixed 5 s whatever the deadline,
//! it counts nothing, and it cannot bound an export. This reader instead
//! - bounds every push by `OTEL_METRIC_EXPORT_TIMEOUT` (and at shutdown by what is left of the
//!   guard's deadline): a push still running then is abandoned (a gRPC request is cancelled) and
//!   counted as failed;
//! - counts every push's data points as `otel.sdk.exporter.metric_data_point.exported`, with
//!   `error.type` when it failed, and warns (rate-limited, never exported as a log);
//! - keeps nothing between pushes but the SDK's aggregates, so a collector that is down costs
//!   no memory beyond them and requests nothing (they only record into the aggregates).

// Without `otlp` no push is ever built: the reader below is compiled but never used.
#![cfg_attr(not(feature = "otlp"), allow(dead_code, unused_imports))]

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use opentelemetry::metrics::{Counter, Meter};
use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};

use crate::config::{ExporterKind, MetricsTemporality, ObservabilityConfig};
use crate::error::SetupError;
#[cfg(feature = "otlp")]
use crate::error::Signal;
use crate::otlp::ExportRuntime;

/// The metrics push of one meter provider: the reader to register, and the handle the guard
/// uses for the final push.
#[derive(Clone, Debug)]
pub(crate) struct MetricsPush(Arc<Inner>);

/// Builds the push when `config` asks for it (`None` otherwise). Its thread starts with
/// [`MetricsPush::start`], once the meter provider that reads through it exists.
pub(crate) fn build(config: &ObservabilityConfig) -> Result<Option<MetricsPush>, SetupError> {
    if config.metrics.exporter != ExporterKind::Otlp {
        return Ok(None);
    }
    #[cfg(not(feature = "otlp"))]
    {
        Err(crate::features::otlp_disabled(crate::error::Signal::Metrics).into())
    }
    #[cfg(feature = "otlp")]
    {
        let temporality = sdk_temporality(config.metrics_temporality);
        let (exporter, runtime) = crate::otlp::build_exporter!(
            opentelemetry_otlp::MetricExporter::builder().with_temporality(temporality),
            &config.metrics,
            Signal::Metrics,
            Some("otel-metric-export")
        )?;
        Ok(Some(MetricsPush::new(
            exporter,
            runtime,
            Settings {
                temporality,
                interval: config.metrics.schedule_delay,
                export_timeout: config.metric_export_timeout,
                request_timeout: config.metrics.timeout,
            },
        )))
    }
}

fn sdk_temporality(temporality: MetricsTemporality) -> Temporality {
    match temporality {
        MetricsTemporality::Delta => Temporality::Delta,
        MetricsTemporality::LowMemory => Temporality::LowMemory,
        _ => Temporality::Cumulative,
    }
}

/// What the push thread is configured with.
#[derive(Clone, Copy, Debug)]
struct Settings {
    temporality: Temporality,
    interval: Duration,
    /// `OTEL_METRIC_EXPORT_TIMEOUT`: the bound on one push, retries included.
    export_timeout: Duration,
    /// The exporter's own per-request timeout, to tell a hung collector from a refusing one.
    request_timeout: Duration,
}

/// Starts the push thread, given the shared state and the export counter.
type StartThread = Box<dyn FnOnce(Arc<Inner>, Counter<u64>) + Send>;

struct Inner {
    reader: ManualReader,
    state: Mutex<State>,
    /// Wakes the push thread: a flush or the shutdown was asked for.
    work: Condvar,
    /// Wakes flushers and shutdown: the push thread finished a push.
    progress: Condvar,
    /// The exporter and its runtime, until the thread takes them.
    pending: Mutex<Option<StartThread>>,
    settings: Settings,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsPush")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct State {
    flushes_asked: u64,
    flushes_done: u64,
    /// The outcome of the last push, for flushers.
    last_error: Option<String>,
    /// Set by shutdown: its deadline.
    shutdown: Option<Instant>,
    /// The final push's outcome, once the thread has stopped.
    stopped: Option<Result<(), String>>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MetricsPush {
    fn new<E: PushMetricExporter>(
        exporter: E,
        runtime: Option<ExportRuntime>,
        settings: Settings,
    ) -> Self {
        let start: Box<dyn FnOnce(Arc<Inner>, Counter<u64>) + Send> = Box::new(
            move |inner, exported| {
                let thread = PushThread {
                    inner: Arc::clone(&inner),
                    exporter,
                    exported,
                    runtime,
                };
                if let Err(err) = std::thread::Builder::new()
                    .name("otel-metric-push".to_owned())
                    .spawn(move || thread.run())
                {
                    tracing::warn!(error = %err, "cannot start the metric push thread; metrics will not be pushed");
                    inner.lock().stopped = Some(Err(format!(
                        "the metric push thread could not start: {err}"
                    )));
                }
            },
        );
        Self(Arc::new(Inner {
            reader: ManualReader::builder()
                .with_temporality(settings.temporality)
                .build(),
            state: Mutex::default(),
            work: Condvar::new(),
            progress: Condvar::new(),
            pending: Mutex::new(Some(start)),
            settings,
        }))
    }

    /// The reader to register with the meter provider.
    pub(crate) fn reader(&self) -> PushReader {
        PushReader(self.clone())
    }

    /// Starts the push thread; `meter` (of the provider the reader is registered with) gets the
    /// export counter. Does nothing the second time.
    pub(crate) fn start(&self, meter: &Meter) {
        let start = self
            .0
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(start) = start {
            let exported = meter
                .u64_counter("otel.sdk.exporter.metric_data_point.exported")
                .with_unit("{data_point}")
                .with_description("Metric data points handed to the exporter, by outcome (error_type set when the export failed).")
                .build();
            start(Arc::clone(&self.0), exported);
        }
    }

    /// Makes the final push within `timeout`, then stops the thread. The first call's outcome
    /// is the push's; later calls return `Ok(())` at once.
    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<(), String> {
        let inner = &*self.0;
        let mut state = inner.lock();
        if state.shutdown.is_some() {
            return Ok(());
        }
        // The thread stops trying a margin before the deadline, and this call stops waiting
        // half a margin before it, so the guard still has time to report why.
        let now = Instant::now();
        let margin = crate::delivery::DEADLINE_MARGIN.min(timeout / 2);
        let end = now + timeout;
        state.shutdown = Some(end.checked_sub(margin).unwrap_or(end));
        let deadline = end.checked_sub(margin / 2).unwrap_or(end);
        inner.work.notify_all();
        let never_started = inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .is_some();
        if never_started {
            return Ok(());
        }
        let (state, done) =
            crate::delivery::wait_until(&inner.progress, state, deadline, |s| s.stopped.is_some());
        if done {
            state.stopped.clone().unwrap_or(Ok(()))
        } else {
            Err(format!(
                "the final metric push did not finish within the {timeout:.1?} deadline (the \
                 collector did not answer in time)"
            ))
        }
    }

    /// Pushes now and waits for the outcome (at most the export timeout).
    fn force_flush(&self) -> OTelSdkResult {
        let inner = &*self.0;
        let mut state = inner.lock();
        if state.shutdown.is_some() {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        state.flushes_asked += 1;
        let ticket = state.flushes_asked;
        inner.work.notify_all();
        let timeout = inner.settings.export_timeout + crate::delivery::DEADLINE_MARGIN;
        let (state, done) =
            crate::delivery::wait_until(&inner.progress, state, Instant::now() + timeout, |s| {
                s.flushes_done >= ticket || s.stopped.is_some()
            });
        match (done, &state.last_error) {
            (false, _) => Err(OTelSdkError::Timeout(timeout)),
            (true, Some(err)) => Err(OTelSdkError::InternalFailure(err.clone())),
            (true, None) => Ok(()),
        }
    }
}

/// The [`MetricReader`] of the push: the meter provider collects through its inner
/// [`ManualReader`] (with the push's temporality); the push thread reads it.
#[derive(Clone, Debug)]
pub(crate) struct PushReader(MetricsPush);

impl MetricReader for PushReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0 .0.reader.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0 .0.reader.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    /// The meter provider's shutdown (which always passes 5 s): the final push, unless the
    /// guard already made it within its own deadline.
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let pushed = self.0.shutdown(timeout);
        let stopped = self.0 .0.reader.shutdown_with_timeout(timeout);
        pushed.map_err(OTelSdkError::InternalFailure).and(stopped)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0 .0.reader.temporality(kind)
    }
}

/// What the push thread owns.
struct PushThread<E> {
    inner: Arc<Inner>,
    exporter: E,
    exported: Counter<u64>,
    /// Declared last: the gRPC connection's runtime outlives the exporter (only held).
    #[allow(dead_code)]
    runtime: Option<ExportRuntime>,
}

impl<E: PushMetricExporter> PushThread<E> {
    fn run(self) {
        // What this thread logs (export warnings) is printed but never exported.
        let _suppressed = Context::enter_telemetry_suppressed_scope();
        let inner = &*self.inner;
        let settings = inner.settings;
        let mut rm = ResourceMetrics::default();
        let mut next = Instant::now() + settings.interval;
        loop {
            let state = inner.lock();
            let (state, _) = crate::delivery::wait_until(&inner.work, state, next, |s| {
                s.flushes_asked > s.flushes_done || s.shutdown.is_some()
            });
            let ticket = state.flushes_asked;
            let shutdown = state.shutdown;
            drop(state);
            let now = Instant::now();
            let deadline = shutdown.map_or(now + settings.export_timeout, |d| {
                d.min(now + settings.export_timeout)
            });
            let result = self.push(&mut rm, deadline);
            if let Some(deadline) = shutdown {
                let left = deadline.saturating_duration_since(Instant::now());
                if let Err(err) = self.exporter.shutdown_with_timeout(left) {
                    tracing::debug!(error = %err, "metric exporter shutdown failed");
                }
                let mut state = inner.lock();
                state.stopped = Some(result);
                inner.progress.notify_all();
                return;
            }
            let mut state = inner.lock();
            state.flushes_done = ticket;
            state.last_error = result.err();
            inner.progress.notify_all();
            drop(state);
            if Instant::now() >= next {
                next = Instant::now() + settings.interval;
            }
        }
    }

    /// Collects and exports once, within `deadline`; the error says why it failed.
    fn push(&self, rm: &mut ResourceMetrics, deadline: Instant) -> Result<(), String> {
        if let Err(err) = self.inner.reader.collect(rm) {
            return Err(format!("metrics could not be collected: {err}"));
        }
        let n = data_points(rm);
        if n == 0 {
            return Ok(());
        }
        let started = Instant::now();
        let result = crate::otlp::block_on(self.exporter.export(rm), Some(deadline))
            .unwrap_or_else(|| {
                Err(OTelSdkError::Timeout(
                    deadline.saturating_duration_since(started),
                ))
            });
        let took = started.elapsed();
        crate::otlp::count_export(&self.exported, n, &result);
        result.map_err(|err| {
            let why = match err {
                OTelSdkError::Timeout(after) => format!(
                    "the push was abandoned after {after:.1?} (OTEL_METRIC_EXPORT_TIMEOUT or the \
                     shutdown deadline): the collector did not answer in time"
                ),
                err => crate::delivery::describe_failure(&err, took, self.inner.settings.request_timeout),
            };
            // Rate-limited on stdout, never exported (see `subscriber`); counted on /metrics.
            tracing::warn!(data_points = n, took = ?took, "metric push failed: {why}; {n} data point(s) not delivered");
            why
        })
    }
}

/// How many data points `rm` holds.
fn data_points(rm: &ResourceMetrics) -> usize {
    fn points<T>(data: &MetricData<T>) -> usize {
        match data {
            MetricData::Gauge(d) => d.data_points().count(),
            MetricData::Sum(d) => d.data_points().count(),
            MetricData::Histogram(d) => d.data_points().count(),
            MetricData::ExponentialHistogram(d) => d.data_points().count(),
        }
    }
    rm.scope_metrics()
        .flat_map(opentelemetry_sdk::metrics::data::ScopeMetrics::metrics)
        .map(|metric| match metric.data() {
            AggregatedMetrics::F64(data) => points(data),
            AggregatedMetrics::U64(data) => points(data),
            AggregatedMetrics::I64(data) => points(data),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::SdkMeterProvider;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts exports; hangs when told to.
    #[derive(Clone, Default)]
    struct Exporter {
        exports: Arc<AtomicUsize>,
        hang: bool,
    }

    impl PushMetricExporter for Exporter {
        async fn export(&self, _metrics: &ResourceMetrics) -> OTelSdkResult {
            self.exports.fetch_add(1, Ordering::SeqCst);
            if self.hang {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
            Ok(())
        }
        fn temporality(&self) -> Temporality {
            Temporality::Cumulative
        }
    }

    fn provider(exporter: Exporter, interval: Duration) -> (SdkMeterProvider, MetricsPush) {
        let push = MetricsPush::new(
            exporter,
            None,
            Settings {
                temporality: Temporality::Cumulative,
                interval,
                export_timeout: Duration::from_secs(30),
                request_timeout: Duration::from_secs(10),
            },
        );
        let provider = SdkMeterProvider::builder()
            .with_reader(push.reader())
            .build();
        push.start(&provider.meter("test"));
        provider.meter("test").u64_counter("c").build().add(1, &[]);
        (provider, push)
    }

    #[test]
    fn a_hung_final_push_is_abandoned_at_the_deadline() {
        let exporter = Exporter {
            hang: true,
            ..Exporter::default()
        };
        let (_provider, push) = provider(exporter.clone(), Duration::from_secs(3600));
        let started = Instant::now();
        let err = push.shutdown(Duration::from_millis(300)).unwrap_err();
        let took = started.elapsed();
        assert!(took < Duration::from_millis(600), "{took:?}");
        assert!(err.contains("abandoned"), "{err}");
        assert_eq!(exporter.exports.load(Ordering::SeqCst), 1);
        // Idempotent.
        assert_eq!(push.shutdown(Duration::from_millis(300)), Ok(()));
    }

    #[test]
    fn flush_pushes_now_and_shutdown_once_more() {
        let exporter = Exporter::default();
        let (provider, _push) = provider(exporter.clone(), Duration::from_secs(3600));
        provider.force_flush().unwrap();
        assert_eq!(exporter.exports.load(Ordering::SeqCst), 1);
        provider.shutdown().unwrap();
        assert_eq!(exporter.exports.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_interval_pushes_without_being_asked() {
        let exporter = Exporter::default();
        let (_provider, _push) = provider(exporter.clone(), Duration::from_millis(20));
        let deadline = Instant::now() + Duration::from_secs(5);
        while exporter.exports.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "no periodic push");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
