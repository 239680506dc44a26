//! [`Shared`]: what every request of one layer shares (instruments, tracing, routes, rules).

use std::sync::Arc;

use opentelemetry_sdk::trace::SdkTracer;

use super::headers::HeaderCaptures;
use super::instruments::HttpInstruments;
use super::routes::RouteInterner;
use super::scheme::SchemeRule;
use crate::config::Sampler;
use crate::propagation::SharedPropagator;

/// What every request of one layer shares.
pub(crate) struct Shared {
    pub(crate) metrics: Option<HttpInstruments>,
    pub(crate) tracing: Option<HttpTracing>,
    pub(crate) excluded_paths: Vec<String>,
    pub(crate) routes: RouteInterner,
    pub(crate) attribute_value_length_limit: usize,
    /// The headers recorded on server spans.
    pub(crate) headers: Arc<HeaderCaptures>,
    /// How `url.scheme` is decided.
    pub(crate) scheme: SchemeRule,
    /// Whether a panicking handler becomes a 500 (and a panicking body an aborted response)
    /// instead of unwinding into the server.
    pub(crate) catch_panic: bool,
    /// The route template of a request no axum route matched, from the application.
    pub(crate) route_template: Option<RouteTemplate>,
}

/// The application's hook that names a request's route template when no axum route matched:
/// [`with_route_template`](crate::ObservabilityBuilder::with_route_template).
#[derive(Clone)]
pub(crate) struct RouteTemplate(pub(crate) Arc<RouteFn>);

/// The hook itself: a request's URI to its fixed template, if it has one.
pub(crate) type RouteFn = dyn Fn(&http::Uri) -> Option<&'static str> + Send + Sync;

impl RouteTemplate {
    /// The template of `uri`, or `None`; a hook that panics names no template (and says so once)
    /// instead of failing the request.
    pub(crate) fn of(&self, uri: &http::Uri) -> Option<&'static str> {
        let hook = &self.0;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(uri))).unwrap_or_else(|_| {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                tracing::error!(
                    "the with_route_template hook panicked; requests it panics on get no http.route"
                );
            });
            None
        })
    }
}

impl std::fmt::Debug for RouteTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteTemplate")
    }
}

/// How the layer traces: the tracer, the propagator of incoming contexts, the sampler.
pub(crate) struct HttpTracing {
    pub(crate) tracer: SdkTracer,
    pub(crate) propagator: SharedPropagator,
    /// The configured sampler: only to guess its decision (see `state::likely_sampled`).
    pub(crate) sampler: Sampler,
}
