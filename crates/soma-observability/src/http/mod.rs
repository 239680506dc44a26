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
//! becomes a label. `error_type` is the status code for 5xx responses, or the inner service's
//! error type when it failed before producing a response.
//!
//! # Spans
//!
//! When tracing is enabled each request gets a `SERVER` span named `{method} {route}` (`{method}`
//! when no route matched, `HTTP` for `_OTHER` methods), a child of the caller's context when the
//! request carries a valid `traceparent`. Handler code runs inside that context, so its `tracing`
//! spans and logs join the trace. The response carries a `traceresponse` header
//! (`00-{trace_id}-{span_id}-{flags}`) so the caller can find the trace. Header values are never
//! recorded except `User-Agent`, and sensitive query parameters are redacted in `url.query`.
//!
//! # Layer placement
//!
//! Add the layer with `Router::layer` *after* the application's routes, so it sees the matched
//! route template, and mount `/metrics` after that, so scrapes are not measured.
//! [`setup_observability`](crate::setup_observability) does both. Paths in the excluded list
//! (by default `/metrics`, `/healthz`, `/readyz`) are neither measured nor traced.

mod attributes;
mod body;
mod future;
mod layer;
mod series;
mod state;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use layer::{HttpTelemetry, HttpTelemetryLayer};

pub(crate) use attributes::RouteInterner;
#[cfg(feature = "client")] // used by HttpClient only
pub(crate) use attributes::{method as method_attribute, redact_query};
pub(crate) use layer::{HttpInstruments, HttpTracing, Shared};
