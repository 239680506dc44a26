//! The layer and the service.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use axum::http::{Request, Response};
use opentelemetry::metrics::{Histogram, Meter, UpDownCounter};
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry_sdk::trace::SdkTracer;
use opentelemetry_semantic_conventions::metric as semconv;
use tower::{Layer, Service};

use super::attributes::{Route, RouteInterner, SchemeRule};
use super::body::ResponseBody;
use super::future::ResponseFuture;
use super::series::InFlight;
use super::state::RequestState;
use crate::metrics::BYTES_BUCKETS;

/// Records HTTP server metrics and spans for every request (see the [module docs](super)).
///
/// Get one from [`ObservabilityParts::http_layer`](crate::ObservabilityParts::http_layer), or let
/// [`setup_observability`](crate::setup_observability) apply it.
#[derive(Clone)]
pub struct HttpTelemetryLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HttpTelemetryLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTelemetryLayer")
            .field("metrics", &self.shared.metrics.is_some())
            .field("traces", &self.shared.tracing.is_some())
            .field("excluded_paths", &self.shared.excluded_paths)
            .finish_non_exhaustive()
    }
}

/// What every request of one layer shares.
pub(crate) struct Shared {
    pub(crate) metrics: Option<HttpInstruments>,
    pub(crate) tracing: Option<HttpTracing>,
    pub(crate) excluded_paths: Vec<String>,
    pub(crate) routes: RouteInterner,
    pub(crate) attribute_value_length_limit: usize,
    /// The headers recorded on server spans.
    pub(crate) headers: Arc<super::headers::HeaderCaptures>,
    /// How `url.scheme` is decided.
    pub(crate) scheme: SchemeRule,
    /// Whether a panicking handler becomes a 500 (and a panicking body an aborted response)
    /// instead of unwinding into the server.
    pub(crate) catch_panic: bool,
}

pub(crate) struct HttpInstruments {
    pub(crate) duration: Histogram<f64>,
    pub(crate) active_requests: UpDownCounter<i64>,
    pub(crate) request_body_size: Histogram<u64>,
    pub(crate) response_body_size: Histogram<u64>,
    /// The in-flight gauge's bound series (see the `series` module).
    pub(crate) in_flight: InFlight,
    /// How many histogram series are bound.
    pub(crate) bound_series: AtomicUsize,
}

impl HttpInstruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        Self {
            duration: meter
                .f64_histogram(semconv::HTTP_SERVER_REQUEST_DURATION)
                .with_unit("s")
                .with_description("Duration of HTTP server requests, response body included.")
                .build(),
            active_requests: meter
                .i64_up_down_counter(semconv::HTTP_SERVER_ACTIVE_REQUESTS)
                .with_unit("{request}")
                .with_description("Number of HTTP server requests in flight.")
                .build(),
            request_body_size: meter
                .u64_histogram(semconv::HTTP_SERVER_REQUEST_BODY_SIZE)
                .with_unit("By")
                .with_boundaries(BYTES_BUCKETS.to_vec())
                .with_description("Size of HTTP server request bodies.")
                .build(),
            response_body_size: meter
                .u64_histogram(semconv::HTTP_SERVER_RESPONSE_BODY_SIZE)
                .with_unit("By")
                .with_boundaries(BYTES_BUCKETS.to_vec())
                .with_description("Size of HTTP server response bodies.")
                .build(),
            in_flight: InFlight::default(),
            bound_series: AtomicUsize::new(0),
        }
    }
}

pub(crate) struct HttpTracing {
    pub(crate) tracer: SdkTracer,
    pub(crate) propagator: TextMapCompositePropagator,
    /// The configured sampler: only to guess its decision (see `state::likely_sampled`).
    pub(crate) sampler: crate::config::Sampler,
}

impl HttpTelemetryLayer {
    pub(crate) fn new(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }
}

impl<S> Layer<S> for HttpTelemetryLayer {
    type Service = HttpTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpTelemetry {
            inner,
            shared: Arc::clone(&self.shared),
            last_route: Arc::default(),
        }
    }
}

/// The service produced by [`HttpTelemetryLayer`].
#[derive(Clone)]
pub struct HttpTelemetry<S> {
    inner: S,
    shared: Arc<Shared>,
    /// The route this service last served. `Router::layer` wraps each route's handler in its
    /// own service, so this is almost always the request's route: found by comparing one
    /// string instead of hashing it into the interner.
    last_route: Arc<OnceLock<Arc<Route>>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for HttpTelemetry<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTelemetry")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> HttpTelemetry<S> {
    /// A reference to the wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the wrapped service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> HttpTelemetry<S> {
    /// The shared entry of the matched route template (`None`: no route matched).
    fn route(&self, matched: Option<&str>) -> Arc<Route> {
        if let (Some(matched), Some(last)) = (matched, self.last_route.get()) {
            if last.value().is_some_and(|value| value.as_str() == matched) {
                return Arc::clone(last);
            }
        }
        let route = self.shared.routes.route(matched);
        if matched.is_some() && route.cached {
            let _ = self.last_route.set(Arc::clone(&route));
        }
        route
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpTelemetry<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: http_body::Body,
    ResBody: http_body::Body,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let path = req.uri().path();
        if self.shared.excluded_paths.iter().any(|p| p == path) {
            return ResponseFuture::untracked(self.inner.call(req), self.shared.catch_panic);
        }
        let route = self.route(
            req.extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str),
        );
        let state = RequestState::start(Arc::clone(&self.shared), &req, route);
        let future = {
            let _attached = state.attach_context();
            self.inner.call(req)
        };
        ResponseFuture::tracked(future, state, self.shared.catch_panic)
    }
}
