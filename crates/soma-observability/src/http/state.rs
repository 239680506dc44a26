//! One request's measurements, recorded exactly once: when the state is dropped.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath};
use axum::http::{HeaderValue, Request, Response};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, ContextGuard, KeyValue, StringValue};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_semantic_conventions::attribute as semconv;

use super::attributes::{self, Labels, Route};
use super::layer::Shared;
use super::series::{self, Measurements};

/// How the request ended.
#[derive(Clone, Copy)]
enum Outcome {
    /// No response yet; if the state is dropped like this, the request was cancelled.
    Pending,
    /// The inner service produced a response with this status.
    Responded(u16),
    /// The inner service failed; the value is its error type.
    Failed(&'static str),
}

pub(crate) struct RequestState {
    shared: Arc<Shared>,
    start: Instant,
    labels: Labels,
    route: Arc<Route>,
    request_body_size: Option<u64>,
    response_body_size: u64,
    outcome: Outcome,
    /// The context holding the server span, when tracing is on.
    context: Option<Context>,
}

impl RequestState {
    pub(crate) fn start<B: http_body::Body>(shared: Arc<Shared>, req: &Request<B>) -> Self {
        let start = Instant::now();
        let labels = Labels::of(req);
        let route = shared.routes.route(
            req.extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str),
        );
        if let Some(metrics) = &shared.metrics {
            metrics.in_flight(labels, 1);
        }
        let context = shared
            .tracing
            .as_ref()
            .map(|tracing| start_span(&shared, tracing, req, labels, route.value()));
        Self {
            request_body_size: http_body::Body::size_hint(req.body()).exact(),
            shared,
            start,
            labels,
            route,
            response_body_size: 0,
            outcome: Outcome::Pending,
            context,
        }
    }

    /// Makes the server span current on this thread until the guard drops.
    pub(crate) fn attach_context(&self) -> Option<ContextGuard> {
        self.context.as_ref().map(|cx| cx.clone().attach())
    }

    /// Notes the response status and tells the caller which trace the request joined.
    pub(crate) fn responded<B>(&mut self, response: &mut Response<B>) {
        self.outcome = Outcome::Responded(response.status().as_u16());
        if let Some(cx) = &self.context {
            let span = cx.span();
            let sc = span.span_context();
            if sc.is_valid() {
                let value = format!(
                    "00-{}-{}-{:02x}",
                    sc.trace_id(),
                    sc.span_id(),
                    sc.trace_flags().to_u8()
                );
                if let Ok(value) = HeaderValue::from_str(&value) {
                    response.headers_mut().insert("traceresponse", value);
                }
            }
        }
    }

    pub(crate) fn failed<E>(&mut self) {
        self.outcome = Outcome::Failed(std::any::type_name::<E>());
    }

    pub(crate) fn add_response_bytes(&mut self, n: usize) {
        self.response_body_size = self.response_body_size.saturating_add(n as u64);
    }
}

impl Drop for RequestState {
    fn drop(&mut self) {
        if let Some(metrics) = &self.shared.metrics {
            let measurements = Measurements {
                duration: self.start.elapsed().as_secs_f64(),
                request_body_size: self.request_body_size,
                response_body_size: self.response_body_size,
            };
            metrics.in_flight(self.labels, -1);
            match self.outcome {
                Outcome::Pending => {}
                Outcome::Responded(status) => {
                    metrics.record_response(&self.route, self.labels, status, &measurements);
                }
                Outcome::Failed(error) => metrics.record_unbound(
                    &series::attributes(
                        self.labels,
                        None,
                        self.route.value(),
                        Some(StringValue::from(error)),
                    ),
                    &measurements,
                ),
            }
        }
        if let Some(cx) = self.context.take() {
            let (status, error_type) = match self.outcome {
                Outcome::Pending => (None, None),
                Outcome::Responded(status) => {
                    (Some(status), (status >= 500).then(|| status_str(status)))
                }
                Outcome::Failed(error) => (None, Some(StringValue::from(error))),
            };
            let span = cx.span();
            if let Some(status) = status {
                span.set_attribute(KeyValue::new(
                    semconv::HTTP_RESPONSE_STATUS_CODE,
                    i64::from(status),
                ));
            }
            if let Some(error) = error_type {
                span.set_status(Status::error(error.to_string()));
                span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error));
            }
            if matches!(self.outcome, Outcome::Pending) {
                span.add_event(
                    "request cancelled before a response was produced",
                    Vec::new(),
                );
            }
            span.end();
        }
    }
}

/// The status code as a string, for `error.type` (only ever needed for 5xx responses).
fn status_str(status: u16) -> StringValue {
    StringValue::from(status.to_string())
}

fn start_span<B>(
    shared: &Shared,
    tracing: &super::layer::HttpTracing,
    req: &Request<B>,
    labels: Labels,
    route: Option<&StringValue>,
) -> Context {
    let (method, scheme, version) = (labels.method(), labels.scheme(), labels.version());
    let parent = tracing.propagator.extract(&HeaderExtractor(req.headers()));
    let limit = shared.attribute_value_length_limit;
    let name = match (method, route) {
        (attributes::OTHER, Some(route)) => format!("HTTP {}", route.as_str()),
        (attributes::OTHER, None) => "HTTP".to_owned(),
        (method, Some(route)) => format!("{method} {}", route.as_str()),
        (method, None) => method.to_owned(),
    };
    let mut attrs = Vec::with_capacity(10);
    attrs.push(KeyValue::new(semconv::HTTP_REQUEST_METHOD, method));
    if method == attributes::OTHER {
        attrs.push(KeyValue::new(
            semconv::HTTP_REQUEST_METHOD_ORIGINAL,
            attributes::truncate(req.method().as_str(), limit).to_owned(),
        ));
    }
    attrs.push(KeyValue::new(semconv::URL_SCHEME, scheme));
    attrs.push(KeyValue::new(semconv::NETWORK_PROTOCOL_VERSION, version));
    attrs.push(KeyValue::new(
        semconv::URL_PATH,
        attributes::truncate(req.uri().path(), limit).to_owned(),
    ));
    if let Some(query) = req.uri().query() {
        let redacted = attributes::redact_query(query);
        attrs.push(KeyValue::new(
            semconv::URL_QUERY,
            attributes::truncate(&redacted, limit).to_owned(),
        ));
    }
    if let Some(route) = route {
        attrs.push(KeyValue::new(semconv::HTTP_ROUTE, route.clone()));
    }
    if let Some(agent) = req
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        attrs.push(KeyValue::new(
            semconv::USER_AGENT_ORIGINAL,
            attributes::truncate(agent, limit).to_owned(),
        ));
    }
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<std::net::SocketAddr>>() {
        attrs.push(KeyValue::new(
            semconv::CLIENT_ADDRESS,
            addr.ip().to_string(),
        ));
        attrs.push(KeyValue::new(semconv::CLIENT_PORT, i64::from(addr.port())));
    }
    let span = tracing
        .tracer
        .span_builder(name)
        .with_kind(SpanKind::Server)
        .with_attributes(attrs)
        .start_with_context(&tracing.tracer, &parent);
    parent.with_span(span)
}
