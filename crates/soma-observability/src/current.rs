//! The telemetry current on this thread: [`ObservabilityParts::set_default`](crate::ObservabilityParts::set_default).
//!
//! [`get_meter`](crate::get_meter), [`get_tracer`](crate::get_tracer) and
//! `HttpClient::new` normally use what [`install`](crate::ObservabilityBuilder::install) made
//! global. While a thread has a default (set by a test, say), they use that thread's parts
//! instead, so tests of one binary, each on its own thread, each see their own telemetry and
//! run in parallel without any process-global state: the way
//! `tracing::subscriber::set_default` scopes a subscriber.

use std::cell::RefCell;
use std::sync::Arc;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::http::headers::HeaderCaptures;
use crate::metrics::SecondsBucketsProvider;
use crate::propagation::SharedPropagator;

/// What a thread default holds: the pieces of [`ObservabilityParts`](crate::ObservabilityParts)
/// that `get_meter`, `get_tracer` and `HttpClient::new` hand out.
#[derive(Clone, Debug)]
pub(crate) struct ThreadTelemetry {
    pub(crate) meters: SecondsBucketsProvider,
    pub(crate) tracer_provider: Option<SdkTracerProvider>,
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) propagator: SharedPropagator,
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) client_headers: (Arc<HeaderCaptures>, usize),
}

/// How many thread defaults are set in the process right now: while there are any (a test's
/// telemetry), an instrument that records on a thread without one records nowhere, and says so.
static ACTIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether some thread of the process has a default (see [`ACTIVE`]).
pub(crate) fn any_thread_has_one() -> bool {
    ACTIVE.load(std::sync::atomic::Ordering::Relaxed) > 0
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<ThreadTelemetry>>> = const { RefCell::new(None) };
}

/// The telemetry current on this thread, if a default is set.
#[cfg(feature = "client")] // HttpClient::new
pub(crate) fn get() -> Option<Arc<ThreadTelemetry>> {
    CURRENT.with(|current| current.borrow().clone())
}

/// A meter of this thread's default, if one is set.
pub(crate) fn meter(name: &'static str) -> Option<opentelemetry::metrics::Meter> {
    CURRENT.with(|current| {
        current
            .borrow()
            .as_ref()
            .map(|telemetry| telemetry.meters.meter(name))
    })
}

/// A tracer of this thread's default, if one is set (a no-op one when its traces are off).
pub(crate) fn tracer(name: &'static str) -> Option<opentelemetry::global::BoxedTracer> {
    use opentelemetry::trace::TracerProvider as _;
    CURRENT.with(|current| {
        current.borrow().as_ref().map(|telemetry| {
            opentelemetry::global::BoxedTracer::new(match &telemetry.tracer_provider {
                Some(provider) => Box::new(provider.tracer(name)),
                None => Box::new(opentelemetry::trace::noop::NoopTracer::new()),
            })
        })
    })
}

/// Makes `telemetry` this thread's default, and `subscriber` its `tracing` default, until the
/// guard drops, which restores the previous ones.
pub(crate) fn set(
    telemetry: ThreadTelemetry,
    subscriber: impl tracing::Subscriber + Send + Sync + 'static,
) -> DefaultGuard {
    let previous = CURRENT.with(|current| current.replace(Some(Arc::new(telemetry))));
    ACTIVE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    DefaultGuard {
        previous,
        _subscriber: tracing::subscriber::set_default(subscriber),
    }
}

/// Keeps parts the default telemetry of the thread that made it
/// ([`ObservabilityParts::set_default`](crate::ObservabilityParts::set_default)); dropping it
/// restores the thread's previous default.
#[must_use = "the parts stop being this thread's default when the guard drops"]
#[derive(Debug)]
pub struct DefaultGuard {
    previous: Option<Arc<ThreadTelemetry>>,
    /// The `tracing` default (also restored on drop, on this thread: neither guard is `Send`).
    _subscriber: tracing::subscriber::DefaultGuard,
}

impl Drop for DefaultGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
        ACTIVE.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
