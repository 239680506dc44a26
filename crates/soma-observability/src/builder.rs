//! The explicit path: [`Observability::builder`] → [`ObservabilityBuilder`] →
//! [`ObservabilityParts`](crate::ObservabilityParts) (no globals) or an installed router and guard.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::resource::{ResourceDetector as _, TelemetryResourceDetector};
use opentelemetry_sdk::Resource;

use crate::config::{ObservabilityConfig, ProtoHeader};
use crate::error::{ConfigError, SetupError};
use crate::guard::ObservabilityGuard;
use crate::http::{HttpTelemetryLayer, Shared};
use crate::parts::{MetricsEndpoint, ObservabilityParts};
use crate::SCOPE;

/// Paths that are neither measured nor traced unless changed with
/// [`ObservabilityBuilder::with_excluded_paths`].
pub const DEFAULT_EXCLUDED_PATHS: &[&str] = &["/metrics", "/healthz", "/readyz"];

/// Where `testing` keeps spans and log records; nothing without the feature.
#[cfg(feature = "testing")]
use crate::capture::Capture;

/// Where `testing` keeps spans and log records; nothing without the feature.
#[cfg(not(feature = "testing"))]
#[derive(Debug)]
enum Capture {}

#[cfg(not(feature = "testing"))]
impl Capture {
    fn providers(&self, _: crate::config::Sampler, _: &Resource) -> Providers {
        match *self {}
    }
}

/// The tracer and logger providers, when their signals are on.
type Providers = (
    Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    Option<opentelemetry_sdk::logs::SdkLoggerProvider>,
);

/// Entry point of the explicit setup path.
#[derive(Debug)]
pub struct Observability(());

impl Observability {
    /// Starts configuring telemetry for the service `service_name`.
    pub fn builder(service_name: impl Into<String>) -> ObservabilityBuilder {
        ObservabilityBuilder {
            service_name: service_name.into(),
            config: None,
            histogram_buckets: HashMap::new(),
            excluded_paths: DEFAULT_EXCLUDED_PATHS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            runtime_metrics: None,
            capture_headers: None,
            tls_listener: None,
            trusted_proto_header: None,
            catch_panic: true,
            exemplar_filter: None,
            route_template: None,
            capture: None,
        }
    }
}

/// The default bound on [`ObservabilityGuard::shutdown`]: well inside Kubernetes' default 30 s
/// grace period, with time left to drain requests.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Configures the telemetry pipelines (see [`Observability::builder`]).
///
/// ```
/// use soma_observability::{Observability, ObservabilityConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ObservabilityConfig::from_lookup(|name| match name {
///     "OTEL_TRACES_EXPORTER" | "OTEL_LOGS_EXPORTER" => Some("none".to_owned()),
///     _ => None,
/// })?;
/// let parts = Observability::builder("checkout")
///     .with_config(config)
///     .with_histogram_buckets("checkout.payment.duration", &[0.1, 0.5, 1.0, 5.0])?
///     .with_excluded_paths(["/metrics", "/livez"])
///     .build()?;
/// let app: axum::Router = parts.instrument(axum::Router::new())?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use]
pub struct ObservabilityBuilder {
    service_name: String,
    config: Option<ObservabilityConfig>,
    histogram_buckets: HashMap<String, Vec<f64>>,
    excluded_paths: Vec<String>,
    shutdown_timeout: Duration,
    runtime_metrics: Option<bool>,
    capture_headers: Option<crate::http::HeaderCapture>,
    tls_listener: Option<bool>,
    /// `None`: the configuration's; `Some(None)`: no header is trusted.
    #[allow(clippy::option_option)]
    trusted_proto_header: Option<Option<ProtoHeader>>,
    catch_panic: bool,
    exemplar_filter: Option<crate::config::ExemplarFilter>,
    route_template: Option<crate::http::RouteTemplate>,
    /// Spans and log records kept in memory instead of exported (`testing`).
    capture: Option<Capture>,
}

impl ObservabilityBuilder {
    /// Turns exemplars on `/metrics` off (`false`) or back to the configuration's filter
    /// (`true`; `OTEL_METRICS_EXEMPLAR_FILTER`, `trace_based` by default). Code wins over the
    /// environment.
    pub fn with_exemplars(mut self, enabled: bool) -> Self {
        self.exemplar_filter = (!enabled).then_some(crate::config::ExemplarFilter::AlwaysOff);
        self
    }

    /// Chooses which histogram measurements become exemplars, whatever
    /// `OTEL_METRICS_EXEMPLAR_FILTER` says.
    pub fn with_exemplar_filter(mut self, filter: crate::config::ExemplarFilter) -> Self {
        self.exemplar_filter = Some(filter);
        self
    }

    /// Uses this configuration instead of reading the environment.
    pub fn with_config(mut self, config: ObservabilityConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Sets the bucket boundaries of the histogram named `instrument` (its OpenTelemetry name,
    /// e.g. `checkout.payment.duration`). They win over the default seconds buckets.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] if `buckets` is empty, not finite or not strictly increasing.
    pub fn with_histogram_buckets(
        mut self,
        instrument: impl Into<String>,
        buckets: &[f64],
    ) -> Result<Self, ConfigError> {
        crate::metrics::validate_buckets("with_histogram_buckets", buckets)?;
        self.histogram_buckets
            .insert(instrument.into(), buckets.to_vec());
        Ok(self)
    }

    /// Replaces the list of request paths that are neither measured nor traced (exact matches;
    /// by default [`DEFAULT_EXCLUDED_PATHS`]).
    pub fn with_excluded_paths<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.excluded_paths = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Bounds how long [`ObservabilityGuard::shutdown`] may take (default
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`]).
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Turns the tokio runtime metrics (`tokio_runtime_*` on `/metrics`, see
    /// [`runtime`](crate::runtime)) on or off; wins over `SOMA_RUNTIME_METRICS` (default on).
    /// They describe the runtime [`build`](Self::build) or [`install`](Self::install) runs on.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let config = soma_observability::ObservabilityConfig::from_lookup(|name| match name {
    /// #     "OTEL_TRACES_EXPORTER" | "OTEL_LOGS_EXPORTER" => Some("none".to_owned()),
    /// #     _ => None,
    /// # })?;
    /// let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    /// let parts = runtime.block_on(async {
    ///     soma_observability::Observability::builder("checkout")
    ///         .with_config(config)
    ///         .with_runtime_metrics(false)
    ///         .build()
    /// })?;
    /// assert!(!parts.render_metrics()?.contains("tokio_runtime_workers"));
    /// # Ok(()) }
    /// ```
    pub fn with_runtime_metrics(mut self, enabled: bool) -> Self {
        self.runtime_metrics = Some(enabled);
        self
    }

    /// Chooses the HTTP headers recorded as span attributes, on server spans and on
    /// [`HttpClient`](crate::HttpClient) spans (see [`http::headers`](crate::http::headers));
    /// replaces the `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*` lists. Credentials are
    /// redacted whatever the lists say.
    ///
    /// ```
    /// use soma_observability::{http::HeaderCapture, Observability};
    ///
    /// # fn main() -> Result<(), soma_observability::ConfigError> {
    /// let builder = Observability::builder("checkout").with_captured_headers(HeaderCapture {
    ///     server_request: vec!["X-Request-Id".into()],
    ///     client_response: vec!["Retry-After".into()],
    ///     ..HeaderCapture::default()
    /// })?;
    /// # let _ = builder; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] if a name is not a valid header name or a list holds more
    /// than [`MAX_CAPTURED_HEADERS`](crate::http::headers::MAX_CAPTURED_HEADERS) names.
    pub fn with_captured_headers(
        mut self,
        capture: crate::http::HeaderCapture,
    ) -> Result<Self, ConfigError> {
        crate::http::headers::HeaderCaptures::new(&capture, "with_captured_headers")?;
        self.capture_headers = Some(capture);
        Ok(self)
    }

    /// Says whether the listener that serves the instrumented router terminates TLS (default
    /// `false`). `url.scheme` (span attribute and metric label) is the listener's scheme: `http`
    /// on a plain listener whatever the request line claims (`GET https://host/ HTTP/1.1`, an
    /// HTTP/2 `:scheme: https`), `https` when this is `true`. Behind a TLS-terminating proxy,
    /// see [`with_trusted_proto_header`](Self::with_trusted_proto_header) instead.
    pub fn with_tls_listener(mut self, tls: bool) -> Self {
        self.tls_listener = Some(tls);
        self
    }

    /// Trusts `header`, set by your reverse proxy, to say which scheme the client used
    /// (`url.scheme`); `None` trusts no header. Wins over `SOMA_TRUSTED_PROTO_HEADER`.
    ///
    /// Only enable it when every request reaches the service through that proxy and the proxy
    /// overwrites the header (or appends to it: the last value counts), otherwise a client can
    /// choose the label. Without a usable header the listener's scheme applies (see
    /// [`with_tls_listener`](Self::with_tls_listener)).
    ///
    /// ```
    /// use soma_observability::{config::ProtoHeader, Observability};
    ///
    /// let builder = Observability::builder("gateway")
    ///     .with_trusted_proto_header(Some(ProtoHeader::XForwardedProto));
    /// # let _ = builder;
    /// ```
    pub fn with_trusted_proto_header(mut self, header: Option<ProtoHeader>) -> Self {
        self.trusted_proto_header = Some(header);
        self
    }

    /// Whether a panic in a handler is caught and answered with an empty `500 Internal Server
    /// Error` (default `true`), as tower-http's `CatchPanicLayer` does. A body that panics
    /// while streaming then ends with an error, which aborts the response.
    ///
    /// Either way the panic is recorded as an error in every signal: the request is counted
    /// with `error_type="panic"`, its server span gets status Error, `error.type = "panic"` and
    /// an `exception` event with the panic message, and an ERROR `tracing` event (target
    /// `panic`) is emitted in the request's trace. With `false` the panic then continues
    /// unwinding into the server, as without this crate: hyper drops the connection and the
    /// client gets no response. Opt out when a layer of your own inside this one handles panics.
    pub fn with_catch_panic(mut self, catch: bool) -> Self {
        self.catch_panic = catch;
        self
    }

    /// Keeps spans and log records in `capture` instead of exporting them.
    #[cfg(feature = "testing")]
    pub(crate) fn with_capture(mut self, capture: Capture) -> Self {
        self.capture = Some(capture);
        self
    }

    /// Names the route template (`http.route`, and the span name `GET /users/{id}`) of requests
    /// that no axum route matched: the requests of a service installed with
    /// [`install_service`](Self::install_service), or of a router's fallback. `template` gets
    /// the request's URI and returns a fixed template, or `None` (no `http.route`: all such
    /// requests share one series, as unmatched requests do). Never return the raw path: every
    /// distinct value is a new series.
    ///
    /// ```
    /// let builder = soma_observability::Observability::builder("users").with_route_template(|uri| {
    ///     match uri.path() {
    ///         "/users" => Some("/users"),
    ///         path if path.starts_with("/users/") => Some("/users/{id}"),
    ///         _ => None,
    ///     }
    /// });
    /// # let _ = builder;
    /// ```
    pub fn with_route_template(
        mut self,
        template: impl Fn(&http::Uri) -> Option<&'static str> + Send + Sync + 'static,
    ) -> Self {
        self.route_template = Some(crate::http::RouteTemplate(Arc::new(template)));
        self
    }

    /// Builds every part without touching process-global state: for tests, and for services
    /// that compose the pieces themselves.
    ///
    /// # Errors
    ///
    /// [`SetupError::Config`] if the environment holds an invalid `OTEL_*` value (when no
    /// configuration was given), [`SetupError::Exporter`] if an exporter cannot be built.
    pub fn build(mut self) -> Result<ObservabilityParts, SetupError> {
        let mut config = match self.config {
            Some(config) => config,
            None => ObservabilityConfig::from_env()?,
        };
        if let Some(tls) = self.tls_listener {
            config.tls_listener = tls;
        }
        if let Some(header) = self.trusted_proto_header {
            config.trusted_proto_header = header;
        }
        let resource = resource(&self.service_name, &config);
        let captured: Option<Providers> = self
            .capture
            .take()
            .map(|capture| capture.providers(config.sampler, &resource));
        let push = crate::metrics_push::build(&config)?;
        let mut metrics = crate::metrics::build(
            resource.clone(),
            self.histogram_buckets,
            config.metrics_enabled,
            push.as_ref().map(crate::metrics_push::MetricsPush::reader),
        );
        let exemplar_filter = self.exemplar_filter.unwrap_or(config.exemplar_filter);
        metrics.exposition.exemplars =
            Arc::new(crate::exemplars::ExemplarStore::new(exemplar_filter));
        if self.runtime_metrics.unwrap_or(config.runtime_metrics) {
            metrics.exposition.runtime = crate::runtime::RuntimeMetrics::current().map(Arc::new);
        }
        let meter = crate::metrics::SecondsBucketsProvider(
            metrics.provider.clone(),
            Arc::clone(&metrics.exposition.exemplars),
        )
        .meter(SCOPE);
        if let Some(push) = &push {
            push.start(&meter);
        }
        let losses = Arc::default();
        let (tracer_provider, logger_provider) = match captured {
            Some(captured) => captured,
            None => (
                crate::traces::build(&config, resource.clone(), &meter, &losses)?,
                crate::logs::build(&config, resource.clone(), &meter, &losses)?,
            ),
        };
        let startup_notes = startup_notes(&config, exemplar_filter, tracer_provider.is_some());
        let propagator = crate::propagation::build(&config.propagators);
        let tracing = tracer_provider
            .as_ref()
            .map(|provider| crate::http::HttpTracing {
                tracer: provider.tracer(SCOPE),
                propagator: propagator.clone(),
                sampler: config.sampler,
            });
        let headers = Arc::new(crate::http::headers::HeaderCaptures::new(
            self.capture_headers
                .as_ref()
                .unwrap_or(&config.capture_headers),
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*",
        )?);
        let layer = HttpTelemetryLayer::new(Shared {
            metrics: config.metrics_recorded().then(|| {
                crate::http::HttpInstruments::new(
                    &metrics.provider.meter(SCOPE),
                    &metrics.exposition.exemplars,
                    SCOPE,
                )
            }),
            tracing,
            excluded_paths: self.excluded_paths,
            routes: crate::http::RouteInterner::default(),
            attribute_value_length_limit: config.attribute_value_length_limit,
            headers: Arc::clone(&headers),
            scheme: crate::http::SchemeRule {
                tls_listener: config.tls_listener,
                trusted_header: config.trusted_proto_header,
            },
            catch_panic: self.catch_panic,
            route_template: self.route_template,
        });
        Ok(ObservabilityParts {
            layer,
            exposition: metrics.exposition,
            metrics_endpoint: metrics_endpoint(&config),
            meter_provider: metrics.provider,
            tracer_provider,
            logger_provider,
            propagator,
            shutdown_timeout: self.shutdown_timeout,
            client_headers: (headers, config.attribute_value_length_limit),
            losses,
            subscriber: crate::subscriber::SubscriberSettings::new(
                &config,
                &service_name(&resource),
            ),
            startup_notes,
            push,
        })
    }

    /// Builds the parts, installs them as the process's global providers, propagator and
    /// `tracing` subscriber, and instruments `router` (see [`setup_observability`](crate::setup_observability)).
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), plus [`SetupError::AlreadyInstalled`] on a second call in the
    /// same process and [`SetupError::SubscriberAlreadySet`] if another `tracing` subscriber is
    /// the global default.
    pub fn install<S>(
        self,
        router: Router<S>,
    ) -> Result<(Router<S>, ObservabilityGuard), SetupError>
    where
        S: Clone + Send + Sync + 'static,
    {
        crate::install::install(self.build()?, router)
    }

    /// [`install`](Self::install) for a service that is not an axum `Router` (a hyper or tower
    /// service of your own): the same globals, the same layer, `/metrics` served beside it, and
    /// instruments from [`get_meter`](crate::get_meter) bound, as with a router. Name its route
    /// templates with [`with_route_template`](Self::with_route_template).
    ///
    /// The result is an axum `Router` (a tower `Service`): serve it with `axum::serve`, or with
    /// hyper through `hyper_util::service::TowerToHyperService`.
    ///
    /// ```no_run
    /// use std::convert::Infallible;
    /// use axum::body::Body;
    /// use http::{Request, Response};
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let service = tower::service_fn(|request: Request<Body>| async move {
    ///     Ok::<_, Infallible>(Response::new(Body::from(format!("hello {}", request.uri().path()))))
    /// });
    /// let (app, mut guard) = soma_observability::Observability::builder("hello")
    ///     .with_route_template(|uri| uri.path().starts_with("/hello/").then_some("/hello/{name}"))
    ///     .install_service(service)?;
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:8000").await?;
    /// axum::serve(listener, app).await?;
    /// guard.shutdown().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`install`](Self::install).
    pub fn install_service<T>(self, service: T) -> Result<(Router, ObservabilityGuard), SetupError>
    where
        T: tower::Service<http::Request<axum::body::Body>, Error = std::convert::Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        T::Response: axum::response::IntoResponse + 'static,
        T::Future: Send + 'static,
    {
        self.install(Router::new().fallback_service(service))
    }
}

/// Where `/metrics` is served.
fn metrics_endpoint(config: &ObservabilityConfig) -> MetricsEndpoint {
    match (config.metrics_enabled, config.metrics_address) {
        (false, _) => MetricsEndpoint::Off,
        (true, None) => MetricsEndpoint::Router,
        (true, Some(address)) => MetricsEndpoint::Listener(address),
    }
}

/// The service's name as its resource says (`service.name`).
fn service_name(resource: &Resource) -> String {
    resource
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .map(|name| name.to_string())
        .unwrap_or_default()
}

/// What setup logs about consequences of the configuration a team would not see otherwise.
fn startup_notes(
    config: &ObservabilityConfig,
    exemplar_filter: crate::config::ExemplarFilter,
    traces: bool,
) -> Vec<&'static str> {
    let mut notes = Vec::new();
    if !traces
        && config.metrics_enabled
        && exemplar_filter != crate::config::ExemplarFilter::AlwaysOff
    {
        notes.push(EXEMPLARS_NEED_TRACES);
    }
    notes
}

/// Logged at setup when traces are off: why `/metrics` will carry no exemplar.
const EXEMPLARS_NEED_TRACES: &str = "/metrics will carry no exemplars: traces are off \
    (OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true), and an exemplar is the trace of a \
    measurement; export traces (OTEL_TRACES_EXPORTER=otlp, with OTEL_TRACES_SAMPLER to keep few) \
    to get them";

fn resource(service_name: &str, config: &ObservabilityConfig) -> Resource {
    let name = if service_name.is_empty() {
        config
            .service_name
            .clone()
            .unwrap_or_else(|| "unknown_service".to_owned())
    } else {
        service_name.to_owned()
    };
    Resource::builder_empty()
        .with_attributes(
            TelemetryResourceDetector
                .detect()
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_attributes(
            config
                .resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_service_name(name)
        .build()
}
