//! [`ObservabilityParts`]: everything
//! [`ObservabilityBuilder::build`](crate::ObservabilityBuilder::build) made, installed nowhere:
//! the layer, the `/metrics` router, the providers, the subscriber.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::delivery::Losses;
use crate::endpoint;
use crate::error::SetupError;
use crate::guard::ObservabilityGuard;
use crate::http::headers::HeaderCaptures;
use crate::http::HttpTelemetryLayer;
use crate::propagation::SharedPropagator;
use crate::scrape::{self, Exposition};
use crate::subscriber::SubscriberSettings;

/// Everything [`ObservabilityBuilder::build`](crate::ObservabilityBuilder::build) made, not
/// installed anywhere.
#[derive(Debug)]
pub struct ObservabilityParts {
    pub(crate) layer: HttpTelemetryLayer,
    pub(crate) exposition: Exposition,
    /// Where `/metrics` is served, decided by `build`.
    pub(crate) metrics_endpoint: MetricsEndpoint,
    pub(crate) meter_provider: SdkMeterProvider,
    pub(crate) tracer_provider: Option<SdkTracerProvider>,
    pub(crate) logger_provider: Option<SdkLoggerProvider>,
    /// Built once from `OTEL_PROPAGATORS`: the layer extracts with it, and `install` makes it
    /// the global propagator.
    pub(crate) propagator: SharedPropagator,
    pub(crate) shutdown_timeout: Duration,
    /// The captured headers and the attribute value length limit; `install` makes the client
    /// lists [`HttpClient`](crate::HttpClient)'s default.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) client_headers: (Arc<HeaderCaptures>, usize),
    /// What the span and log processors could not deliver at shutdown, for the guard.
    pub(crate) losses: Arc<Losses>,
    /// What [`subscriber`](Self::subscriber) needs of the configuration.
    pub(crate) subscriber: SubscriberSettings,
    /// The OTLP metrics push, for the guard's final push.
    pub(crate) push: Option<crate::metrics_push::MetricsPush>,
    /// What `install` logs once the subscriber is set: consequences of the configuration a
    /// team would otherwise not see (no exemplars without traces, ...).
    pub(crate) startup_notes: Vec<&'static str>,
}

/// Where `/metrics` is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetricsEndpoint {
    /// Metrics are disabled (`OTEL_METRICS_EXPORTER=none`).
    Off,
    /// On the application's router ([`ObservabilityParts::instrument`] mounts it).
    Router,
    /// On a separate listener (`SOMA_METRICS_ADDR`).
    Listener(SocketAddr),
}

impl ObservabilityParts {
    /// The HTTP telemetry layer; apply it with `Router::layer` after the routes.
    pub fn http_layer(&self) -> HttpTelemetryLayer {
        self.layer.clone()
    }

    /// A router serving `GET /metrics`.
    pub fn metrics_router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        endpoint::router(self.exposition.clone())
    }

    /// A `prometheus` registry that `/metrics` renders after the OpenTelemetry and process
    /// metrics: register `prometheus` collectors there to add them (it starts empty).
    pub fn registry(&self) -> &prometheus::Registry {
        &self.exposition.registry
    }

    /// Renders the metrics as `/metrics` would.
    ///
    /// # Errors
    ///
    /// If a metric family cannot be encoded.
    pub fn render_metrics(&self) -> Result<String, prometheus::Error> {
        scrape::render(&self.exposition)
    }

    /// A meter whose instruments land in this part's `/metrics`, with the same default seconds
    /// buckets as [`get_meter`](crate::get_meter) after installation.
    pub fn meter(&self, name: &'static str) -> opentelemetry::metrics::Meter {
        self.seconds_buckets_provider().meter(name)
    }

    /// The provider behind [`meter`](Self::meter) and [`get_meter`](crate::get_meter).
    pub(crate) fn seconds_buckets_provider(&self) -> crate::metrics::SecondsBucketsProvider {
        crate::metrics::SecondsBucketsProvider(
            self.meter_provider.clone(),
            Arc::clone(&self.exposition.exemplars),
        )
    }

    /// The SDK meter provider itself (for flushing, or for meters without the default seconds
    /// buckets); prefer [`meter`](Self::meter).
    pub fn meter_provider(&self) -> &SdkMeterProvider {
        &self.meter_provider
    }

    /// The tracer provider, when traces are enabled.
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.tracer_provider.as_ref()
    }

    /// The logger provider, when logs are exported over OTLP.
    pub fn logger_provider(&self) -> Option<&SdkLoggerProvider> {
        self.logger_provider.as_ref()
    }

    /// The `tracing` subscriber (stdout, spans, OTLP logs) for this configuration; use it with
    /// `tracing::subscriber::set_default` or `with_default` to avoid the global one.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        crate::subscriber::subscriber(
            &self.subscriber,
            self.tracer_provider.as_ref(),
            self.logger_provider.as_ref(),
        )
    }

    /// An [`HttpClient`](crate::HttpClient) that records into these parts, with no global
    /// state: its `http.client.request.duration` lands in this `/metrics`, its spans go to
    /// [`tracer_provider`](Self::tracer_provider), it injects the context with the configured
    /// propagator and captures the configured client header lists. Use it on the
    /// [`build`](crate::ObservabilityBuilder::build) path, where
    /// [`HttpClient::new`](crate::HttpClient::new) (which uses the globals) records nothing.
    #[cfg(feature = "client")]
    pub fn http_client(&self, client: reqwest::Client) -> crate::HttpClient {
        crate::HttpClient::with_telemetry(
            client,
            &self.meter(crate::SCOPE),
            self.client_headers.clone(),
            self.tracer_provider.as_ref().map(|provider| {
                opentelemetry::trace::TracerProvider::tracer(provider, crate::SCOPE)
            }),
            self.propagator.clone(),
        )
    }

    /// Makes these parts this thread's telemetry until the guard drops, without touching any
    /// process-global state: on this thread, [`get_meter`](crate::get_meter) and
    /// [`get_tracer`](crate::get_tracer) return these parts' meters and tracers, `HttpClient::new`
    /// records into them, and `tracing` spans and events go to their subscriber. Instruments
    /// made meanwhile (an app state built inside the test) keep recording here after the guard
    /// drops.
    ///
    /// This is how a test sees what its own code records, with tests of one binary running in
    /// parallel (each on its own thread; `#[tokio::test]`'s default runtime runs the test on
    /// that thread; tasks spawned onto a multi-thread runtime's workers do not see the default).
    /// [`testing::TestTelemetry`](crate::testing) sets it up for you.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let config = soma_observability::ObservabilityConfig::from_lookup(|name| match name {
    /// #     "OTEL_TRACES_EXPORTER" | "OTEL_LOGS_EXPORTER" => Some("none".to_owned()),
    /// #     _ => None,
    /// # })?;
    /// let parts = soma_observability::Observability::builder("users").with_config(config).build()?;
    /// let _default = parts.set_default();
    /// // The application's own code, unchanged:
    /// let lookups = soma_observability::get_meter("users")
    ///     .u64_counter("users.lookups")
    ///     .with_description("User lookups.")
    ///     .build();
    /// lookups.add(1, &[]);
    /// assert!(parts.render_metrics()?.contains("users_lookups_total{otel_scope_name=\"users\"} 1"));
    /// # Ok(()) }
    /// ```
    pub fn set_default(&self) -> crate::DefaultGuard {
        crate::current::set(
            crate::current::ThreadTelemetry {
                meters: self.seconds_buckets_provider(),
                tracer_provider: self.tracer_provider.clone(),
                propagator: self.propagator.clone(),
                client_headers: self.client_headers.clone(),
            },
            self.subscriber(),
        )
    }

    /// Wraps `router` in the HTTP layer and mounts `/metrics` (not measured).
    ///
    /// # Errors
    ///
    /// [`SetupError::RouteConflict`] if `router` already serves `/metrics`.
    pub fn instrument<S>(&self, router: Router<S>) -> Result<Router<S>, SetupError>
    where
        S: Clone + Send + Sync + 'static,
    {
        let router = router.layer(self.http_layer());
        if self.metrics_endpoint != MetricsEndpoint::Router {
            return Ok(router);
        }
        // `metrics.merge(router)`, not the other way round: merging keeps the *other* router's
        // default fallback, and only `router`'s is wrapped in the layer (unmatched requests
        // must be measured too). axum panics on overlapping routes; that becomes an error.
        let metrics = self.metrics_router();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || metrics.merge(router)))
            .map_err(|_| SetupError::RouteConflict(endpoint::METRICS_PATH))
    }

    /// [`instrument`](Self::instrument) for a service that is not an axum `Router` (see
    /// [`install_service`](crate::ObservabilityBuilder::install_service)): the service behind
    /// the HTTP layer, with `/metrics` beside it.
    ///
    /// # Errors
    ///
    /// None in practice (the router made around `service` serves nothing else); the signature
    /// is [`instrument`](Self::instrument)'s.
    pub fn instrument_service<T>(&self, service: T) -> Result<Router, SetupError>
    where
        T: tower::Service<http::Request<axum::body::Body>, Error = std::convert::Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        T::Response: axum::response::IntoResponse + 'static,
        T::Future: Send + 'static,
    {
        self.instrument(Router::new().fallback_service(service))
    }

    /// When `SOMA_METRICS_ADDR` (or [`ObservabilityConfig::metrics_address`](crate::ObservabilityConfig::metrics_address)) is set, serves
    /// `/metrics` on that address from a background task and returns the bound address; the
    /// application's router then has no `/metrics` (see [`instrument`](Self::instrument)).
    /// Returns `Ok(None)` when no separate address is configured.
    ///
    /// # Errors
    ///
    /// [`SetupError::MetricsListener`] if the address cannot be bound or no tokio runtime runs.
    pub fn spawn_metrics_listener(&self) -> Result<Option<std::net::SocketAddr>, SetupError> {
        let MetricsEndpoint::Listener(address) = self.metrics_endpoint else {
            return Ok(None);
        };
        let fail = |source| SetupError::MetricsListener { address, source };
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| fail(std::io::Error::other(e.to_string())))?;
        let listener = std::net::TcpListener::bind(address).map_err(fail)?;
        listener.set_nonblocking(true).map_err(fail)?;
        let bound = listener.local_addr().map_err(fail)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(fail)?
        };
        let router: Router = self.metrics_router();
        runtime.spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                tracing::error!(error = %err, "the metrics listener stopped");
            }
        });
        tracing::info!(address = %bound, "serving /metrics on a separate listener");
        Ok(Some(bound))
    }

    /// A guard that flushes and shuts these providers down.
    pub fn into_guard(self) -> ObservabilityGuard {
        ObservabilityGuard::new(
            self.meter_provider,
            self.tracer_provider,
            self.logger_provider,
            self.losses,
            self.shutdown_timeout,
        )
        .with_metrics_push(self.push)
    }
}
