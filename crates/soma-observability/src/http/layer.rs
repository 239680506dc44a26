//! The layer and the service.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use axum::http::{Request, Response};
use tower::{Layer, Service};

use super::body::ResponseBody;
use super::future::ResponseFuture;
use super::routes::Route;
use super::shared::Shared;
use super::state::RequestState;

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
        let matched = req
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let route = match (matched, &self.shared.route_template) {
            (None, Some(template)) => self.route(template.of(req.uri())),
            _ => self.route(matched),
        };
        let state = Box::new(RequestState::start(Arc::clone(&self.shared), &req, route));
        let future = {
            let _attached = state.attach_context();
            self.inner.call(req)
        };
        ResponseFuture::tracked(future, state, self.shared.catch_panic)
    }
}
