//! HTTP server telemetry: semantic-convention metrics and one server span per request.
//!
//! [`HttpTelemetryLayer`] is a tower layer, shaped like tower-http's: the layer produces an
//! [`HttpTelemetry`] service, whose [`ResponseFuture`] yields a response with a
//! [`ResponseBody`]. All measurements of a request are recorded in one place, when the response
//! body ends or is dropped, so a duration covers the whole response, body included, and a request
//! the client abandoned still decrements the in-flight gauge.
//!
//! # Metrics emitted
//!
//! | OpenTelemetry name | Prometheus name | Kind, unit | Attributes (labels) |
//! |---|---|---|---|
//! | `http.server.request.duration` | `http_server_request_duration_seconds_{bucket,sum,count}` | histogram, s | method, route, status, scheme, protocol version, `error.type` on failure |
//! | `http.server.active_requests` | `http_server_active_requests` | up-down counter (gauge) | method, scheme |
//! | `http.server.request.body.size` | `http_server_request_body_size_bytes_*` | histogram, By | as the duration (recorded when the size is known up front) |
//! | `http.server.response.body.size` | `http_server_response_body_size_bytes_*` | histogram, By | as the duration |
//!
//! Labels are bounded by construction: `http_request_method` is one of the nine standard methods
//! or `_OTHER`; `http_route` is the axum route template (`/users/{id}`, nested routers included)
//! and is absent when no route matched, so every unmatched path shares one series;
//! `http_response_status_code` is a number; nothing from the host, the query, headers or bodies
//! becomes a label. `error_type` is the status code for 5xx responses, `panic` when the handler
//! or the response body panicked (see [Panics](#panics)), or the inner service's error type when
//! it failed before producing a response.
//!
//! # Spans
//!
//! When tracing is enabled each request gets a `SERVER` span named `{method} {route}` (`{method}`
//! when no route matched, `HTTP` for `_OTHER` methods), a child of the caller's context when the
//! request carries a valid `traceparent`. `traceparent` is checked strictly against W3C Trace
//! Context (the SDK alone accepts some forms it says to ignore, such as a short span id): an
//! invalid one is ignored, `tracestate` with it, and the request starts a fresh trace; a
//! `tracestate` over 512 bytes is dropped; `baggage` is bounded both ways (64 members, 8192
//! bytes, read and written; see `propagation.rs`). Handler code runs inside that context, so its `tracing` spans and logs join the
//! trace. The response carries a `traceresponse` header (`00-{trace_id}-{span_id}-{flags}`) so
//! the caller can find the trace. Header values are never
//! recorded except `User-Agent` and the headers listed for capture (see [`headers`]), and
//! sensitive query parameters are redacted in `url.query`.
//! A parameter's name is judged as the application reads it (decoded as axum's `Query` decodes
//! it, again while that changes it), normalised, and compared with secret words by the one rule
//! captured headers use too (`http/sensitive.rs`). The redacted pair keeps the name as sent:
//! `to%6Ben=REDACTED`.
//!
//! # Panics
//!
//! A panic is an error in every signal, wherever it happens, and never looks like a client that
//! went away:
//!
//! - a panicking handler is answered with an empty `500 Internal Server Error` (as tower-http's
//!   `CatchPanicLayer` would), counted with `http_response_status_code="500"` and
//!   `error_type="panic"`;
//! - a response body that panics while it streams ends with an error, so the server aborts the
//!   response (HTTP/1.1 closes the connection, HTTP/2 resets the stream) instead of ending it as
//!   if it were complete; it is counted with the status already sent and `error_type="panic"`;
//! - either way the server span gets status Error (described by the panic message),
//!   `error.type = "panic"` and an `exception` event (`exception.type = "panic"`,
//!   `exception.message`), and an ERROR `tracing` event with target `panic` is emitted in the
//!   request's trace, so it reaches OTLP logs with the request's trace id.
//!
//! [`with_catch_panic(false)`](crate::ObservabilityBuilder::with_catch_panic) keeps all of that
//! but lets the panic continue into the server afterwards (hyper drops the connection), for
//! services that handle panics in a layer of their own.
//!
//! # Requests that do not complete
//!
//! Every request that reached the layer is recorded exactly once. One whose response future is
//! dropped before a response (the client went away, or a layer outside this one answered
//! instead, such as a `TimeoutLayer` added after setup) gets `error.type = "cancelled"` and no
//! status code; one whose response body is dropped or fails before its end (a client that leaves
//! a stream) keeps its status and gets `error.type = "aborted"`. Their spans have status Error
//! and the event "request cancelled before a response was produced" or "response body stopped
//! before its end"; neither is a panic, and neither logs an error. HEAD, 204 and 304 responses
//! have no body to send and are complete; a body is complete once its `Content-Length` (or its
//! exact size) is written, where the server stops polling it.
//!
//! # `url.scheme`
//!
//! The scheme is the connection's, never the request line's: `http` on a plain listener even
//! for an absolute-form `GET https://host/ HTTP/1.1` or an HTTP/2 `:scheme: https`; `https`
//! when the listener terminates TLS
//! ([`with_tls_listener`](crate::ObservabilityBuilder::with_tls_listener)) or when a proxy the
//! user trusts says so in the header named by
//! [`with_trusted_proto_header`](crate::ObservabilityBuilder::with_trusted_proto_header) (or
//! `SOMA_TRUSTED_PROTO_HEADER`).
//!
//! # Layer placement
//!
//! Add the layer with `Router::layer` *after* the application's routes, so it sees the matched
//! route template, and mount `/metrics` after that, so scrapes are not measured.
//! [`setup_observability`](crate::setup_observability) does both. Paths in the excluded list
//! (by default `/metrics`, `/healthz`, `/readyz`) are neither measured nor traced.
//!
//! A team's own layers added before setup run inside this one (it records their answers: a
//! timeout's 408, an auth layer's 401); layers added to the router setup returns run outside it
//! (it records their requests as `cancelled` when they answer instead of the service, and never
//! sees what they reject on their own). Request-id layers belong outside, so the captured
//! headers and the span see the id. A service that is not an axum router uses
//! [`install_service`](crate::ObservabilityBuilder::install_service) and names its routes with
//! [`with_route_template`](crate::ObservabilityBuilder::with_route_template).

// One concept per file; no two files import each other (see the crate docs' module list).
mod attributes; // bounded attribute values of a request: method, version, `url.query`, Labels
mod body; // ResponseBody: counts bytes, records when the body ends or is dropped
mod future; // ResponseFuture: notes the status, catches a panicking handler
mod hasher; // FastHasher: the hasher of the maps whose keys clients cannot choose
pub mod headers; // HeaderCapture: which headers become span attributes
mod instruments; // HttpInstruments: the server instruments and their bound series
mod layer; // HttpTelemetryLayer and the HttpTelemetry service
mod panic; // what a panicking handler or body reports
mod routes; // Route, RouteInterner: one shared entry per route template
mod scheme; // SchemeRule: `url.scheme` from the listener or a trusted proxy header
mod sensitive; // is_sensitive: the one rule for secret query parameter and header names
mod series; // Series: one bound series of the request histograms
mod shared; // Shared, HttpTracing: what every request of one layer shares
mod state; // RequestState: one request, recorded once when dropped; its server span

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use headers::HeaderCapture;
pub use layer::{HttpTelemetry, HttpTelemetryLayer};

#[cfg(feature = "client")] // used by HttpClient only
pub(crate) use attributes::{method as method_attribute, redact_query};
pub(crate) use instruments::HttpInstruments;
pub(crate) use routes::RouteInterner;
pub(crate) use scheme::SchemeRule;
pub(crate) use shared::{HttpTracing, RouteTemplate, Shared};
