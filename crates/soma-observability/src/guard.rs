//! [`ObservabilityGuard`]: flushes and shuts telemetry down, within a deadline.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::delivery::Losses;
use crate::error::{ShutdownError, Undelivered};

/// Keeps telemetry running; hold it in `main` until the server has drained.
///
/// [`shutdown`](Self::shutdown) flushes pending spans and logs and shuts the tracer and logger
/// providers down (side by side, each with the whole deadline), then the meter provider, within
/// the configured deadline. It runs the SDK's blocking shutdown on separate threads, so it works
/// on multi-thread and current-thread tokio runtimes alike, and it is safe to call twice.
/// Dropping the guard without calling it makes the same bounded, best-effort shutdown and never
/// panics.
///
/// With a collector that is down, hung or refusing, shutdown still returns on time: it stops
/// trying once another attempt could not finish before the deadline, logs what was lost (one
/// WARN line with `spans_lost` and `log_records_lost`) and returns `Ok`: a graceful stop during
/// a collector outage is still a graceful stop, and `main` exits 0. The loss is then also
/// available from [`undelivered`](Self::undelivered).
#[must_use = "dropping the guard shuts telemetry down; hold it until the server has stopped"]
pub struct ObservabilityGuard {
    providers: Option<Providers>,
    timeout: Duration,
    /// What the last shutdown could not deliver.
    undelivered: Option<Undelivered>,
}

struct Providers {
    meter: SdkMeterProvider,
    tracer: Option<SdkTracerProvider>,
    logger: Option<SdkLoggerProvider>,
    /// What the span and log processors could not deliver during shutdown.
    losses: Arc<Losses>,
    /// The OTLP metrics push, whose final push runs within the deadline.
    push: Option<crate::metrics_push::MetricsPush>,
}

impl std::fmt::Debug for ObservabilityGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservabilityGuard")
            .field("active", &self.providers.is_some())
            .field("timeout", &self.timeout)
            .field("undelivered", &self.undelivered)
            .finish()
    }
}

impl ObservabilityGuard {
    pub(crate) fn new(
        meter: SdkMeterProvider,
        tracer: Option<SdkTracerProvider>,
        logger: Option<SdkLoggerProvider>,
        losses: Arc<Losses>,
        timeout: Duration,
    ) -> Self {
        Self {
            providers: Some(Providers {
                meter,
                tracer,
                logger,
                losses,
                push: None,
            }),
            timeout,
            undelivered: None,
        }
    }

    /// Makes `push`'s final push part of the shutdown.
    pub(crate) fn with_metrics_push(
        mut self,
        push: Option<crate::metrics_push::MetricsPush>,
    ) -> Self {
        if let Some(providers) = &mut self.providers {
            providers.push = push;
        }
        self
    }

    /// Flushes and shuts down traces, logs and metrics, in that order, within the deadline.
    /// A second call returns `Ok(())` at once.
    ///
    /// Spans, log records or a final metrics push that could not be delivered (the collector
    /// was down, hung or refusing) are not an error: they are logged as one WARN event
    /// (`spans_lost`, `log_records_lost` and why) and kept in [`undelivered`](Self::undelivered).
    ///
    /// # Errors
    ///
    /// [`ShutdownError::Providers`] with every provider's other errors, and
    /// [`ShutdownError::Timeout`] if the shutdown threads did not report back within the
    /// deadline at all.
    pub async fn shutdown(&mut self) -> Result<(), ShutdownError> {
        let Some(providers) = self.providers.take() else {
            return Ok(());
        };
        let timeout = self.timeout;
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn_shutdown(providers, timeout, move |result| {
            let _ = tx.send(result);
        });
        let waited = tokio::time::timeout(timeout + Duration::from_millis(200), rx).await;
        let Ok(Ok(outcome)) = waited else {
            return Err(ShutdownError::Timeout(timeout));
        };
        self.undelivered = outcome.undelivered;
        outcome.error.map_or(Ok(()), Err)
    }

    /// What the shutdown could not deliver (`None` before it, or when everything arrived).
    ///
    /// ```no_run
    /// # async fn demo(mut guard: soma_observability::ObservabilityGuard) -> Result<(), soma_observability::ShutdownError> {
    /// guard.shutdown().await?;
    /// if let Some(lost) = guard.undelivered() {
    ///     eprintln!("{} spans and {} log records lost", lost.spans, lost.log_records);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn undelivered(&self) -> Option<&Undelivered> {
        self.undelivered.as_ref()
    }
}

/// How a shutdown ended: what it could not deliver, and any other error.
struct Outcome {
    undelivered: Option<Undelivered>,
    error: Option<ShutdownError>,
}

impl Drop for ObservabilityGuard {
    fn drop(&mut self) {
        if let Some(providers) = self.providers.take() {
            let (tx, rx) = mpsc::channel();
            spawn_shutdown(providers, self.timeout, move |outcome| {
                let _ = tx.send(outcome);
            });
            let _ = rx.recv_timeout(self.timeout + Duration::from_millis(200));
        }
    }
}

/// Runs the blocking SDK shutdown on its own thread and reports the result.
fn spawn_shutdown(
    providers: Providers,
    timeout: Duration,
    report: impl FnOnce(Outcome) + Send + 'static,
) {
    let spawned = std::thread::Builder::new()
        .name("otel-shutdown".to_owned())
        .spawn(move || {
            let outcome = shutdown_blocking(&providers, timeout);
            if let Some(lost) = &outcome.undelivered {
                log_undelivered(lost);
            }
            report(outcome);
        });
    if let Err(err) = spawned {
        // Without a thread there is nothing to wait for; the providers drop with the closure.
        eprintln!("soma-observability: could not start the shutdown thread: {err}");
    }
}

/// The one WARN line of a shutdown that lost telemetry.
fn log_undelivered(lost: &Undelivered) {
    tracing::warn!(
        spans_lost = lost.spans,
        log_records_lost = lost.log_records,
        "stopped cleanly, but telemetry was lost at shutdown: {lost}"
    );
}

fn shutdown_blocking(providers: &Providers, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let mut errors = Vec::new();
    // Traces and logs go to their exporters independently: shut them down side by side, so a
    // collector that is down costs the deadline once, not once per signal.
    let (traces, logs) = std::thread::scope(|scope| {
        let traces = providers.tracer.as_ref().map(|tracer| {
            std::thread::Builder::new()
                .name("otel-shutdown-traces".to_owned())
                .spawn_scoped(scope, move || tracer.shutdown_with_timeout(remaining()))
                .map_err(|_| tracer)
        });
        let logs = providers
            .logger
            .as_ref()
            .map(|logger| logger.shutdown_with_timeout(remaining()));
        let traces = traces.map(|spawned| match spawned {
            Ok(thread) => thread.join().unwrap_or_else(|_| {
                Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                    "the trace shutdown thread panicked".to_owned(),
                ))
            }),
            // No thread: one after the other, with what is left.
            Err(provider) => provider.shutdown_with_timeout(remaining()),
        });
        (traces, logs)
    });
    let losses = &providers.losses;
    // A signal that lost items reports why in `losses`; its provider's error says the same.
    if let Some(Err(err)) = traces.filter(|_| losses.spans() == 0) {
        errors.push(format!("traces: {err}"));
    }
    if let Some(Err(err)) = logs.filter(|_| losses.log_records() == 0) {
        errors.push(format!("logs: {err}"));
    }
    // The final metric push, after traces and logs (it carries their export counts), with
    // what is left of the deadline (the meter provider's own shutdown always allows 5 s). A
    // push the collector did not take is lost telemetry, like spans.
    let mut push_failure = None;
    if let Some(push) = &providers.push {
        if let Err(err) = push.shutdown(remaining()) {
            push_failure = Some(format!("metrics: the final push failed: {err}"));
        }
    }
    if let Err(err) = providers.meter.shutdown_with_timeout(remaining()) {
        errors.push(format!("metrics: {err}"));
    }
    let mut undelivered =
        (losses.spans() > 0 || losses.log_records() > 0 || push_failure.is_some()).then(|| {
            let mut causes = losses.causes();
            causes.extend(push_failure);
            Undelivered {
                spans: losses.spans(),
                log_records: losses.log_records(),
                deadline: timeout,
                causes,
            }
        });
    let error = if errors.is_empty() {
        None
    } else if let Some(undelivered) = &mut undelivered {
        // Errors during an outage belong with the loss they explain.
        undelivered.causes.append(&mut errors);
        None
    } else if remaining().is_zero() {
        Some(ShutdownError::Timeout(timeout))
    } else {
        Some(ShutdownError::Providers(errors))
    };
    Outcome { undelivered, error }
}
