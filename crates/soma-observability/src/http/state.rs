//! One request's measurements, recorded exactly once: when the state is dropped.
//!
//! Every request that reached the layer is recorded, however it ends: with its status when the
//! response body reached its end, with `error.type` `cancelled` when no response was produced
//! (the client went away, or a layer outside this one answered instead, e.g. a timeout), and
//! with its status and `error.type` `aborted` when the body stopped before its end.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, Tracer,
};
use opentelemetry::{Context, ContextGuard, KeyValue, StringValue};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use opentelemetry_semantic_conventions::attribute as semconv;

use super::attributes::{self, Labels};
use super::instruments::Measurements;
use super::panic::{report_panic, PanicSite, PANIC_ERROR_TYPE};
use super::routes::Route;
use super::series;
use super::shared::{HttpTracing, Shared};
use crate::config::{ParentBasedRoot, Sampler};

/// `error.type` of a request dropped before a response was produced.
pub(crate) const CANCELLED_ERROR_TYPE: &str = "cancelled";
/// `error.type` of a response whose body stopped before its end.
pub(crate) const ABORTED_ERROR_TYPE: &str = "aborted";

/// How the request ended.
#[derive(Clone, Copy)]
enum Outcome {
    /// No response yet; if the state is dropped like this, the request was cancelled.
    Pending,
    /// The response started, but its body was dropped (or failed) before its end.
    Aborted(u16),
    /// The inner service produced a response with this status.
    Responded(u16),
    /// The inner service failed; the value is its error type.
    Failed(&'static str),
    /// The handler or the response body panicked; the status is the one already sent, if any
    /// (500 when the panic was caught before a response existed).
    Panicked(Option<u16>),
}

pub(crate) struct RequestState {
    shared: Arc<Shared>,
    start: Instant,
    labels: Labels,
    route: Arc<Route>,
    request_body_size: Option<u64>,
    response_body_size: u64,
    outcome: Outcome,
    /// Whether the response body reached its end (or the response has none).
    body_ended: bool,
    /// The response body's length, when the response says it (`Content-Length`, or an exact
    /// size): the server stops polling a body once that much is written.
    expected_body: Option<u64>,
    /// The context holding the server span, when tracing is on.
    context: Option<Context>,
    /// What the panic said, when [`Outcome::Panicked`].
    panic_message: Option<String>,
}

impl RequestState {
    pub(crate) fn start<B: http_body::Body>(
        shared: Arc<Shared>,
        req: &Request<B>,
        route: Arc<Route>,
    ) -> Self {
        let start = Instant::now();
        let labels = Labels::of(req, shared.scheme);
        if let Some(metrics) = &shared.metrics {
            metrics.in_flight(labels, 1);
        }
        let context = shared
            .tracing
            .as_ref()
            .map(|tracing| start_span(&shared, tracing, req, labels, &route));
        Self {
            request_body_size: http_body::Body::size_hint(req.body()).exact(),
            shared,
            start,
            labels,
            route,
            response_body_size: 0,
            outcome: Outcome::Pending,
            body_ended: false,
            expected_body: None,
            context,
            panic_message: None,
        }
    }

    /// Makes the server span current on this thread until the guard drops.
    pub(crate) fn attach_context(&self) -> Option<ContextGuard> {
        self.context.as_ref().map(|cx| cx.clone().attach())
    }

    /// Notes the response status and tells the caller which trace the request joined.
    pub(crate) fn responded<B>(&mut self, response: &mut Response<B>) {
        let status = response.status().as_u16();
        self.outcome = Outcome::Responded(status);
        // Responses that carry no body whatever the service wrote (RFC 9110, 6.4.1).
        if matches!(status, 100..=199 | 204 | 304) || self.labels.method() == "HEAD" {
            self.body_ended = true;
        }

        if let Some(cx) = &self.context {
            let span = cx.span();
            if span.is_recording() {
                let limit = self.shared.attribute_value_length_limit;
                let headers = &self.shared.headers.server_response;
                headers.record(response.headers(), limit, |kv| span.set_attribute(kv));
            }
            let sc = span.span_context();
            if let Some(value) = sc.is_valid().then(|| traceresponse(sc)).flatten() {
                response.headers_mut().insert(TRACERESPONSE, value);
            }
        }
    }

    /// Notes that the handler or the response body panicked (see [`PanicSite`]) and reports
    /// it as an ERROR event in the request's trace. A status already noted (the response whose
    /// body panicked, or the 500 that replaces a caught handler panic) is kept.
    pub(crate) fn panicked(&mut self, message: &str, site: PanicSite) {
        let status = match self.outcome {
            Outcome::Responded(status) => Some(status),
            _ => None,
        };
        self.outcome = Outcome::Panicked(status);
        let message = attributes::truncate(message, self.shared.attribute_value_length_limit);
        {
            let _attached = self.attach_context();
            report_panic(message, site);
        }
        self.panic_message = Some(message.to_owned());
    }

    pub(crate) fn failed<E>(&mut self) {
        self.outcome = Outcome::Failed(std::any::type_name::<E>());
    }

    /// Notes that the response body reached its end.
    pub(crate) fn body_ended(&mut self) {
        self.body_ended = true;
    }

    /// Notes how long `response`'s body is, when it says: its exact size, else its
    /// `Content-Length` header (looked up only for bodies of unknown size, such as streams).
    pub(crate) fn expect_body<B: http_body::Body>(&mut self, response: &Response<B>) {
        self.expected_body = http_body::Body::size_hint(response.body())
            .exact()
            .or_else(|| {
                let length = response.headers().get(axum::http::header::CONTENT_LENGTH)?;
                length.to_str().ok()?.parse().ok()
            });
    }

    pub(crate) fn add_response_bytes(&mut self, n: usize) {
        self.response_body_size = self.response_body_size.saturating_add(n as u64);
        if self
            .expected_body
            .is_some_and(|expected| self.response_body_size >= expected)
        {
            self.body_ended = true;
        }
    }
}

impl Drop for RequestState {
    fn drop(&mut self) {
        if let Outcome::Responded(status) = self.outcome {
            if !self.body_ended {
                self.outcome = Outcome::Aborted(status);
            }
        }
        if let Some(metrics) = &self.shared.metrics {
            // A sampled request's server span is the exemplar of its measurements; otherwise
            // the span current where the request ends, as for any histogram
            // (`crate::exemplars`).
            let server_span = self.context.as_ref().map(|cx| cx.span());
            let sampled = server_span
                .as_ref()
                .map(opentelemetry::trace::SpanRef::span_context)
                .filter(|sc| sc.is_sampled());
            let current = match sampled {
                None if metrics.keeps_exemplars() => crate::exemplars::current_span(),
                _ => None,
            };
            let span = sampled.or(current.as_ref());
            let measurements = Measurements {
                duration: self.start.elapsed().as_secs_f64(),
                request_body_size: self.request_body_size,
                response_body_size: self.response_body_size,
            };
            metrics.in_flight(self.labels, -1);
            let unbound = |status: Option<u16>, error: &'static str| {
                metrics.record_unbound(
                    &series::attributes(
                        self.labels,
                        status,
                        self.route.value(),
                        Some(StringValue::from(error)),
                    ),
                    &measurements,
                    span,
                );
            };
            match self.outcome {
                Outcome::Pending => unbound(None, CANCELLED_ERROR_TYPE),
                Outcome::Aborted(status) => unbound(Some(status), ABORTED_ERROR_TYPE),
                Outcome::Responded(status) => {
                    metrics.record_response(&self.route, self.labels, status, &measurements, span);
                }
                Outcome::Failed(error) => unbound(None, error),
                Outcome::Panicked(status) => unbound(status, PANIC_ERROR_TYPE),
            }
        }
        if let Some(cx) = self.context.take() {
            let span = cx.span();
            if span.is_recording() {
                record_outcome(&span, self.outcome, self.panic_message.take());
            }
            span.end();
        }
    }
}

/// The server span's status, status code, `error.type`, and its cancellation or exception
/// event.
fn record_outcome(
    span: &opentelemetry::trace::SpanRef<'_>,
    outcome: Outcome,
    panic_message: Option<String>,
) {
    let (status, error_type) = match outcome {
        Outcome::Pending => (None, Some(StringValue::from(CANCELLED_ERROR_TYPE))),
        Outcome::Aborted(status) => (Some(status), Some(StringValue::from(ABORTED_ERROR_TYPE))),
        Outcome::Responded(status) => (Some(status), (status >= 500).then(|| status_str(status))),
        Outcome::Failed(error) => (None, Some(StringValue::from(error))),
        Outcome::Panicked(status) => (status, Some(StringValue::from(PANIC_ERROR_TYPE))),
    };
    if let Some(status) = status {
        span.set_attribute(KeyValue::new(
            semconv::HTTP_RESPONSE_STATUS_CODE,
            i64::from(status),
        ));
    }
    if let Some(message) = panic_message {
        // The description says what went wrong; `error.type` says it was a panic.
        span.set_status(Status::error(message.clone()));
        span.add_event(
            "exception",
            vec![
                KeyValue::new(semconv::EXCEPTION_TYPE, PANIC_ERROR_TYPE),
                KeyValue::new(semconv::EXCEPTION_MESSAGE, message),
            ],
        );
    } else if let Some(description) = outcome_description(outcome) {
        span.set_status(Status::error(description));
        span.add_event(description, Vec::new());
    } else if let Some(error) = &error_type {
        span.set_status(Status::error(error.to_string()));
    }
    if let Some(error) = error_type {
        span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error));
    }
}

/// What happened to a request that ended without its whole response: the span's status
/// description and event.
fn outcome_description(outcome: Outcome) -> Option<&'static str> {
    match outcome {
        Outcome::Pending => Some("request cancelled before a response was produced"),
        Outcome::Aborted(_) => Some("response body stopped before its end"),
        _ => None,
    }
}

const TRACERESPONSE: HeaderName = HeaderName::from_static("traceresponse");

/// `00-{trace_id}-{span_id}-{flags}`, written without `format!`, two hex digits per byte from
/// a table.
fn traceresponse(sc: &SpanContext) -> Option<HeaderValue> {
    fn hex(bytes: &[u8], out: &mut [u8]) {
        for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
        }
    }
    let mut value = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex(&sc.trace_id().to_bytes(), &mut value[3..35]);
    hex(&sc.span_id().to_bytes(), &mut value[36..52]);
    hex(&[sc.trace_flags().to_u8()], &mut value[53..55]);
    HeaderValue::from_bytes(&value).ok()
}

/// Every byte's two lowercase hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0xf]];
        byte += 1;
    }
    pairs
};

/// The status code as a string, for `error.type` (only ever needed for 5xx responses).
fn status_str(status: u16) -> StringValue {
    StringValue::from(status.to_string())
}

/// The most attributes a server span gets (request, response and error attributes).
const SPAN_ATTRIBUTES: usize = 14;

/// Starts the server span. The samplers this crate configures decide on the trace id and the
/// parent alone, so the span is started bare and gets its attributes only when it records: an
/// unsampled request builds, formats and copies nothing for its span.
fn start_span<B>(
    shared: &Shared,
    tracing: &HttpTracing,
    req: &Request<B>,
    labels: Labels,
    route: &Route,
) -> Context {
    let parent = extract_parent(tracing, req.headers());
    let expected = expected_decision(tracing.sampler, &parent);
    if expected == Expected::Dropped {
        return unsampled_span(&parent);
    }
    let builder = tracing
        .tracer
        .span_builder(route.span_name(labels))
        .with_kind(SpanKind::Server);
    if expected == Expected::Recorded {
        // The attributes go in with the builder: the SDK keeps the vector as the span's own
        // (and applies the attribute limit as `set_attribute` would), with room for every
        // attribute the span can get, so that it never grows.
        let mut attributes = Vec::with_capacity(SPAN_ATTRIBUTES);
        request_attributes(shared, req, labels, route, |kv| attributes.push(kv));
        let span = builder
            .with_attributes(attributes)
            .start_with_context(&tracing.tracer, &parent);
        return parent.with_span(span);
    }
    let mut span = builder.start_with_context(&tracing.tracer, &parent);
    if span.is_recording() {
        request_attributes(shared, req, labels, route, |kv| span.set_attribute(kv));
    }
    parent.with_span(span)
}

/// The context the request carries (on top of the current one): what the propagators extract.
/// A request without any header they read gets the current context as it is, without asking
/// each propagator.
fn extract_parent(tracing: &HttpTracing, headers: &HeaderMap) -> Context {
    if !headers.contains_key(TRACEPARENT) && !headers.contains_key(BAGGAGE) {
        // The W3C trace context reads `tracestate` only with a valid `traceparent`.
        return Context::current();
    }
    tracing.propagator.extract(&RequestHeaders(headers))
}

/// What the configured sampler will decide for a span started in `parent`, as far as the
/// samplers this crate configures can be read before they are asked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expected {
    /// Surely dropped (`always_off`; `parentbased_*` under an unsampled parent, or with an
    /// `always_off` root): no SDK span is started at all.
    Dropped,
    /// Likely recorded (ratios from 0.5 on): the attributes are built up front.
    Recorded,
    /// Anything else: the span starts bare and gets its attributes only if it records.
    Unknown,
}

fn expected_decision(sampler: Sampler, parent: &Context) -> Expected {
    if parent.is_telemetry_suppressed() {
        return Expected::Unknown; // the SDK's tracer starts no span at all there
    }
    let ratio = |ratio: f64| {
        if ratio >= 0.5 {
            Expected::Recorded
        } else {
            Expected::Unknown
        }
    };
    match sampler {
        // As the SDK's `Sampler::ParentBased`: any active span is a parent, valid or not.
        Sampler::ParentBased(_) if parent.has_active_span() => {
            if parent.span().span_context().is_sampled() {
                Expected::Recorded
            } else {
                Expected::Dropped
            }
        }
        Sampler::AlwaysOff | Sampler::ParentBased(ParentBasedRoot::AlwaysOff) => Expected::Dropped,
        Sampler::AlwaysOn | Sampler::ParentBased(ParentBasedRoot::AlwaysOn) => Expected::Recorded,
        Sampler::TraceIdRatio(r) | Sampler::ParentBased(ParentBasedRoot::TraceIdRatio(r)) => {
            ratio(r)
        }
    }
}

/// The server span of a request the sampler drops, as the SDK's tracer makes it (the parent's
/// trace id and trace state, a new span id, no flags, not recording) without starting an SDK
/// span: nothing records it, nothing exports it, and its ids still propagate downstream and in
/// `traceresponse`.
fn unsampled_span(parent: &Context) -> Context {
    let ids = RandomIdGenerator::default();
    let span_context = {
        let parent_span = parent.span();
        let parent_context = parent_span.span_context();
        let trace_id = if parent_context.is_valid() {
            parent_context.trace_id()
        } else {
            ids.new_trace_id()
        };
        SpanContext::new(
            trace_id,
            ids.new_span_id(),
            TraceFlags::default(),
            false,
            parent_context.trace_state().clone(),
        )
    };
    parent.with_remote_span_context(span_context)
}

/// The server span's attributes known at the start: the labels, the route, what is copied
/// from the request, and the captured request headers, handed to `add` in that order.
fn request_attributes<B>(
    shared: &Shared,
    req: &Request<B>,
    labels: Labels,
    route: &Route,
    mut add: impl FnMut(KeyValue),
) {
    let limit = shared.attribute_value_length_limit;
    add(KeyValue::new(semconv::HTTP_REQUEST_METHOD, labels.method()));
    add(KeyValue::new(semconv::URL_SCHEME, labels.scheme()));
    add(KeyValue::new(
        semconv::NETWORK_PROTOCOL_VERSION,
        labels.version(),
    ));
    if let Some(route) = route.value() {
        add(KeyValue::new(semconv::HTTP_ROUTE, route.clone()));
    }
    if labels.method() == attributes::OTHER {
        add(KeyValue::new(
            semconv::HTTP_REQUEST_METHOD_ORIGINAL,
            attributes::truncate(req.method().as_str(), limit).to_owned(),
        ));
    }
    add(KeyValue::new(
        semconv::URL_PATH,
        attributes::truncate(req.uri().path(), limit).to_owned(),
    ));
    if let Some(query) = req.uri().query() {
        let redacted = attributes::redact_query(query, &shared.headers.sensitive_names);
        add(KeyValue::new(
            semconv::URL_QUERY,
            attributes::truncate(&redacted, limit).to_owned(),
        ));
    }
    if let Some(agent) = req
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        add(KeyValue::new(
            semconv::USER_AGENT_ORIGINAL,
            attributes::truncate(agent, limit).to_owned(),
        ));
    }
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<std::net::SocketAddr>>() {
        add(KeyValue::new(
            semconv::CLIENT_ADDRESS,
            addr.ip().to_string(),
        ));
        add(KeyValue::new(semconv::CLIENT_PORT, i64::from(addr.port())));
    }
    shared
        .headers
        .server_request
        .record(req.headers(), limit, add);
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// `opentelemetry_http::HeaderExtractor` with the propagation headers' names parsed once
/// rather than on every lookup.
struct RequestHeaders<'a>(&'a HeaderMap);

impl RequestHeaders<'_> {
    fn name(key: &str) -> Option<HeaderName> {
        match key {
            "traceparent" => Some(TRACEPARENT),
            "tracestate" => Some(TRACESTATE),
            "baggage" => Some(BAGGAGE),
            _ => None,
        }
    }
}

impl Extractor for RequestHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match Self::name(key) {
            Some(name) => self.0.get(name),
            None => self.0.get(key),
        }
        .and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values = match Self::name(key) {
            Some(name) => self.0.get_all(name),
            None => self.0.get_all(key),
        };
        let mut values = values.iter().peekable();
        values.peek()?;
        Some(values.filter_map(|value| value.to_str().ok()).collect())
    }
}
