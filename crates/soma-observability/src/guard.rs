//! [`ObservabilityGuard`]: flushes and shuts telemetry down, within a deadline.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::error::ShutdownError;

/// Keeps telemetry running; hold it in `main` until the server has drained.
///
/// [`shutdown`](Self::shutdown) flushes pending spans and logs and shuts the tracer, logger and
/// meter providers down, in that order, within the configured deadline. It runs the SDK's
/// blocking shutdown on a separate thread, so it works on multi-thread and current-thread tokio
/// runtimes alike, and it is safe to call twice. Dropping the guard without calling it makes the
/// same bounded, best-effort shutdown and never panics.
#[must_use = "dropping the guard shuts telemetry down; hold it until the server has stopped"]
pub struct ObservabilityGuard {
    providers: Option<Providers>,
    timeout: Duration,
}

struct Providers {
    meter: SdkMeterProvider,
    tracer: Option<SdkTracerProvider>,
    logger: Option<SdkLoggerProvider>,
}

impl std::fmt::Debug for ObservabilityGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservabilityGuard")
            .field("active", &self.providers.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ObservabilityGuard {
    pub(crate) fn new(
        meter: SdkMeterProvider,
        tracer: Option<SdkTracerProvider>,
        logger: Option<SdkLoggerProvider>,
        timeout: Duration,
    ) -> Self {
        Self {
            providers: Some(Providers {
                meter,
                tracer,
                logger,
            }),
            timeout,
        }
    }

    /// Flushes and shuts down traces, logs and metrics, in that order, within the deadline.
    /// A second call returns `Ok(())` at once.
    ///
    /// # Errors
    ///
    /// [`ShutdownError::Timeout`] if the deadline passed first (a hung collector), and
    /// [`ShutdownError::Providers`] with every provider's error otherwise. Note that the SDK
    /// reports success even when the last export failed; the collector's side is the proof.
    pub async fn shutdown(&mut self) -> Result<(), ShutdownError> {
        let Some(providers) = self.providers.take() else {
            return Ok(());
        };
        let timeout = self.timeout;
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn_shutdown(providers, timeout, move |result| {
            let _ = tx.send(result);
        });
        match tokio::time::timeout(timeout + Duration::from_millis(200), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err(ShutdownError::Timeout(timeout)),
        }
    }
}

impl Drop for ObservabilityGuard {
    fn drop(&mut self) {
        if let Some(providers) = self.providers.take() {
            let (tx, rx) = mpsc::channel();
            spawn_shutdown(providers, self.timeout, move |result| {
                let _ = tx.send(result);
            });
            let _ = rx.recv_timeout(self.timeout + Duration::from_millis(200));
        }
    }
}

/// Runs the blocking SDK shutdown on its own thread and reports the result.
fn spawn_shutdown(
    providers: Providers,
    timeout: Duration,
    report: impl FnOnce(Result<(), ShutdownError>) + Send + 'static,
) {
    let spawned = std::thread::Builder::new()
        .name("otel-shutdown".to_owned())
        .spawn(move || report(shutdown_blocking(&providers, timeout)));
    if let Err(err) = spawned {
        // Without a thread there is nothing to wait for; the providers drop with the closure.
        eprintln!("soma-observability: could not start the shutdown thread: {err}");
    }
}

fn shutdown_blocking(providers: &Providers, timeout: Duration) -> Result<(), ShutdownError> {
    let deadline = Instant::now() + timeout;
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let mut errors = Vec::new();
    if let Some(tracer) = &providers.tracer {
        if let Err(err) = tracer.shutdown_with_timeout(remaining()) {
            errors.push(format!("traces: {err}"));
        }
    }
    if let Some(logger) = &providers.logger {
        if let Err(err) = logger.shutdown_with_timeout(remaining()) {
            errors.push(format!("logs: {err}"));
        }
    }
    if let Err(err) = providers.meter.shutdown_with_timeout(remaining()) {
        errors.push(format!("metrics: {err}"));
    }
    if errors.is_empty() {
        Ok(())
    } else if remaining().is_zero() {
        Err(ShutdownError::Timeout(timeout))
    } else {
        Err(ShutdownError::Providers(errors))
    }
}
