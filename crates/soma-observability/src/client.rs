//! An instrumented outgoing HTTP client around `reqwest`.
//!
//! Every request sent through an [`HttpClient`], whichever way it is written
//! (`client.get(url).send()`, `client.send(client.post(url))`, `client.execute(request)`),
//! starts a `CLIENT` span (a child of the current context, so of the server span inside a
//! handler), injects the context into the outgoing headers with the propagator (`traceparent`,
//! `tracestate`, `baggage`), and records `http.client.request.duration` (Prometheus
//! `http_client_request_duration_seconds`) with `http.request.method`, `server.address`,
//! `server.port`, `url.scheme`, `http.response.status_code` and, on failure, `error.type`.
//! Service-to-service calls made with it form one trace. There is no way to send a request
//! through it that skips this: its builder is the crate's [`RequestBuilder`], not reqwest's.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use opentelemetry::global;
use opentelemetry::metrics::{Histogram, Meter, MeterProvider as _};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::noop::NoopTracer;
use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::HeaderInjector;
use opentelemetry_sdk::trace::SdkTracer;
use opentelemetry_semantic_conventions::attribute as semconv;
use opentelemetry_semantic_conventions::metric::HTTP_CLIENT_REQUEST_DURATION;

use crate::error::ConfigError;
use crate::http::headers::HeaderCaptures;
use crate::http::{method_attribute, redact_query, HeaderCapture};
use crate::propagation::SharedPropagator;
use crate::SCOPE;

/// A `reqwest` client that propagates trace context and records client metrics.
///
/// It can be made at any time: before [`setup_observability`](crate::setup_observability) (in
/// the app state handed to `.with_state(..)`, which comes first), it binds to what setup
/// installs, as [`get_meter`](crate::get_meter)'s instruments do, and records from setup on.
/// On the explicit path, where [`build`](crate::ObservabilityBuilder::build) sets no globals,
/// take one from [`ObservabilityParts::http_client`](crate::ObservabilityParts::http_client), or
/// make the parts the thread's default first
/// ([`ObservabilityParts::set_default`](crate::ObservabilityParts::set_default)).
///
/// Requests are written as with reqwest, and are instrumented whichever way they are sent:
///
/// ```no_run
/// # async fn demo() -> Result<(), reqwest::Error> {
/// let client = soma_observability::HttpClient::new(reqwest::Client::new());
/// let response = client.get("http://policy-engine:8001/v1/evaluate").send().await?;
/// let response = client
///     .post("http://slm-service:8003/v1/generate")
///     .header("x-request-id", "42")
///     .body("{}")
///     .send()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: reqwest::Client,
    duration: Histogram<f64>,
    /// Captured request and response headers, and the value length limit; `None`: the lists
    /// setup installed, looked up at each request.
    headers: Option<(Arc<HeaderCaptures>, usize)>,
    /// Where spans and the propagator come from.
    tracing: ClientTracing,
}

/// Where an [`HttpClient`]'s spans and propagator come from.
#[derive(Clone, Debug)]
enum ClientTracing {
    /// The global tracer and propagator, looked up at each request (what `install` set).
    Global,
    /// The parts' own ([`ObservabilityParts::http_client`](crate::ObservabilityParts::http_client));
    /// no tracer when traces are off.
    Parts {
        tracer: Option<SdkTracer>,
        propagator: SharedPropagator,
    },
}

impl Default for HttpClient {
    /// [`HttpClient::new`] around a default `reqwest::Client`.
    fn default() -> Self {
        Self::new(reqwest::Client::new())
    }
}

impl HttpClient {
    /// Wraps `client` with the telemetry of this thread's default parts, if any
    /// ([`ObservabilityParts::set_default`](crate::ObservabilityParts::set_default)), otherwise
    /// with what [`setup_observability`](crate::setup_observability) installs: its meter (also
    /// when the client is made before setup), tracer, propagator and header lists.
    pub fn new(client: reqwest::Client) -> Self {
        if let Some(current) = crate::current::get() {
            return Self::with_telemetry(
                client,
                &current.meters.meter(SCOPE),
                current.client_headers.clone(),
                current
                    .tracer_provider
                    .as_ref()
                    .map(|provider| provider.tracer(SCOPE)),
                current.propagator.clone(),
            );
        }
        Self {
            inner: client,
            duration: duration_histogram(&crate::deferred::meter(SCOPE)),
            headers: None,
            tracing: ClientTracing::Global,
        }
    }

    /// Wraps `client` with telemetry that is not global (see
    /// [`ObservabilityParts::http_client`](crate::ObservabilityParts::http_client)).
    pub(crate) fn with_telemetry(
        client: reqwest::Client,
        meter: &Meter,
        headers: (Arc<HeaderCaptures>, usize),
        tracer: Option<SdkTracer>,
        propagator: SharedPropagator,
    ) -> Self {
        Self {
            inner: client,
            duration: duration_histogram(meter),
            headers: Some(headers),
            tracing: ClientTracing::Parts { tracer, propagator },
        }
    }

    /// Records these headers on this client's spans (`capture.client_request` and
    /// `capture.client_response`, see [`http::headers`](crate::http::headers)) instead of the
    /// `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_*` lists installed by setup.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] if a name is not a valid header name or a list is too long.
    pub fn with_captured_headers(mut self, capture: &HeaderCapture) -> Result<Self, ConfigError> {
        let captures = HeaderCaptures::new(capture, "HttpClient::with_captured_headers")?;
        let limit = self.headers().1;
        self.headers = Some((Arc::new(captures), limit));
        Ok(self)
    }

    /// Starts a request with `method` to `url`; send it with [`RequestBuilder::send`].
    pub fn request(&self, method: reqwest::Method, url: impl reqwest::IntoUrl) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            inner: self.inner.request(method, url),
        }
    }

    /// Starts a GET request; send it with [`RequestBuilder::send`].
    pub fn get(&self, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.request(reqwest::Method::GET, url)
    }

    /// Starts a POST request; send it with [`RequestBuilder::send`].
    pub fn post(&self, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.request(reqwest::Method::POST, url)
    }

    /// Starts a PUT request; send it with [`RequestBuilder::send`].
    pub fn put(&self, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.request(reqwest::Method::PUT, url)
    }

    /// Starts a PATCH request; send it with [`RequestBuilder::send`].
    pub fn patch(&self, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.request(reqwest::Method::PATCH, url)
    }

    /// Starts a DELETE request; send it with [`RequestBuilder::send`].
    pub fn delete(&self, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.request(reqwest::Method::DELETE, url)
    }

    /// Starts a HEAD request; send it with [`RequestBuilder::send`].
    pub fn head(&self, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.request(reqwest::Method::HEAD, url)
    }

    /// Sends `request` (from [`get`](Self::get), [`post`](Self::post), ...): the same as
    /// `request.send()`.
    ///
    /// # Errors
    ///
    /// The request could not be built or sent (as `reqwest` reports it). HTTP error statuses are
    /// not errors here.
    pub async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response, reqwest::Error> {
        self.execute(request.inner.build()?).await
    }

    /// Sends a request built beforehand, with trace context, a `CLIENT` span and its duration
    /// recorded, like every request of this client.
    ///
    /// # Errors
    ///
    /// The request could not be sent (as `reqwest` reports it). HTTP error statuses are not
    /// errors here.
    pub async fn execute(
        &self,
        mut request: reqwest::Request,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let method = method_attribute(request.method());
        let url = request.url();
        let scheme = if url.scheme() == "https" {
            "https"
        } else {
            "http"
        };
        let address = url.host_str().unwrap_or_default().to_owned();
        let port = i64::from(url.port_or_known_default().unwrap_or(80));
        let (captures, limit) = self.headers();
        let full = url_full(url, &captures.sensitive_names);

        let cx = self.start_span(
            SpanBuilder::from_name(if method == "_OTHER" {
                "HTTP".to_owned()
            } else {
                method.to_owned()
            })
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new(semconv::HTTP_REQUEST_METHOD, method),
                KeyValue::new(semconv::SERVER_ADDRESS, address.clone()),
                KeyValue::new(semconv::SERVER_PORT, port),
                KeyValue::new(semconv::URL_FULL, full),
            ]),
        );
        let mut injector = HeaderInjector(request.headers_mut());
        match &self.tracing {
            ClientTracing::Global => global::get_text_map_propagator(|propagator| {
                propagator.inject_context(&cx, &mut injector);
            }),
            ClientTracing::Parts { propagator, .. } => {
                propagator.inject_context(&cx, &mut injector);
            }
        }
        let headers = request.headers();
        captures
            .client_request
            .record(headers, limit, |kv| cx.span().set_attribute(kv));

        let start = Instant::now();
        let result = self.inner.execute(request).await;
        let elapsed = start.elapsed().as_secs_f64();
        let span = cx.span();
        let mut attrs = vec![
            KeyValue::new(semconv::HTTP_REQUEST_METHOD, method),
            KeyValue::new(semconv::SERVER_ADDRESS, address),
            KeyValue::new(semconv::SERVER_PORT, port),
            KeyValue::new(semconv::URL_SCHEME, scheme),
        ];
        match &result {
            Ok(response) => {
                let headers = response.headers();
                captures
                    .client_response
                    .record(headers, limit, |kv| span.set_attribute(kv));
                let status = response.status();
                attrs.push(KeyValue::new(
                    semconv::HTTP_RESPONSE_STATUS_CODE,
                    i64::from(status.as_u16()),
                ));
                span.set_attribute(KeyValue::new(
                    semconv::HTTP_RESPONSE_STATUS_CODE,
                    i64::from(status.as_u16()),
                ));
                if status.is_client_error() || status.is_server_error() {
                    attrs.push(KeyValue::new(
                        semconv::ERROR_TYPE,
                        status.as_str().to_owned(),
                    ));
                    span.set_status(Status::error(status.as_str().to_owned()));
                }
            }
            Err(err) => {
                let kind = if err.is_timeout() {
                    "timeout"
                } else if err.is_connect() {
                    "connect"
                } else {
                    "_OTHER"
                };
                attrs.push(KeyValue::new(semconv::ERROR_TYPE, kind));
                span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, kind));
                span.set_status(Status::error(err.to_string()));
            }
        }
        self.duration.record(elapsed, &attrs);
        span.end();
        result
    }

    /// The captured header lists and the length limit: this client's own, or those setup
    /// installed.
    fn headers(&self) -> (Arc<HeaderCaptures>, usize) {
        match &self.headers {
            Some(headers) => headers.clone(),
            None => installed_headers(),
        }
    }
}

/// A request of an [`HttpClient`], built as with `reqwest::RequestBuilder`; [`send`](Self::send)
/// sends it instrumented.
///
/// It offers reqwest's common builder methods. For any other, [`map`](Self::map) hands over
/// reqwest's own builder and keeps the request instrumented:
///
/// ```no_run
/// # async fn demo(client: soma_observability::HttpClient) -> Result<(), reqwest::Error> {
/// let response = client
///     .get("http://identity-service:8002/v1/users")
///     .map(|request| request.version(reqwest::Version::HTTP_11))
///     .send()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a request does nothing until it is sent with `.send().await`"]
pub struct RequestBuilder {
    client: HttpClient,
    inner: reqwest::RequestBuilder,
}

impl RequestBuilder {
    /// Adds a header (`reqwest::RequestBuilder::header`).
    pub fn header<K, V>(self, key: K, value: V) -> Self
    where
        http::HeaderName: TryFrom<K>,
        <http::HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        http::HeaderValue: TryFrom<V>,
        <http::HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        self.map(|inner| inner.header(key, value))
    }

    /// Adds headers (`reqwest::RequestBuilder::headers`).
    pub fn headers(self, headers: http::HeaderMap) -> Self {
        self.map(|inner| inner.headers(headers))
    }

    /// HTTP basic authentication (`reqwest::RequestBuilder::basic_auth`).
    pub fn basic_auth<U: std::fmt::Display, P: std::fmt::Display>(
        self,
        username: U,
        password: Option<P>,
    ) -> Self {
        self.map(|inner| inner.basic_auth(username, password))
    }

    /// A bearer token (`reqwest::RequestBuilder::bearer_auth`).
    pub fn bearer_auth<T: std::fmt::Display>(self, token: T) -> Self {
        self.map(|inner| inner.bearer_auth(token))
    }

    /// The request body (`reqwest::RequestBuilder::body`).
    pub fn body<T: Into<reqwest::Body>>(self, body: T) -> Self {
        self.map(|inner| inner.body(body))
    }

    /// A JSON body, with `Content-Type: application/json` (`reqwest::RequestBuilder::json`).
    pub fn json<T: serde::Serialize + ?Sized>(self, json: &T) -> Self {
        self.map(|inner| inner.json(json))
    }

    /// Query parameters appended to the URL (`reqwest::RequestBuilder::query`).
    pub fn query<T: serde::Serialize + ?Sized>(self, query: &T) -> Self {
        self.map(|inner| inner.query(query))
    }

    /// A URL-encoded form body (`reqwest::RequestBuilder::form`).
    pub fn form<T: serde::Serialize + ?Sized>(self, form: &T) -> Self {
        self.map(|inner| inner.form(form))
    }

    /// A timeout for this request (`reqwest::RequestBuilder::timeout`); a request that runs out
    /// of it is recorded with `error.type = "timeout"`.
    pub fn timeout(self, timeout: std::time::Duration) -> Self {
        self.map(|inner| inner.timeout(timeout))
    }

    /// Applies any other `reqwest::RequestBuilder` method; the request stays instrumented.
    pub fn map(self, f: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder) -> Self {
        Self {
            client: self.client,
            inner: f(self.inner),
        }
    }

    /// A copy of this request, unless its body is a stream
    /// (`reqwest::RequestBuilder::try_clone`).
    pub fn try_clone(&self) -> Option<Self> {
        Some(Self {
            client: self.client.clone(),
            inner: self.inner.try_clone()?,
        })
    }

    /// Sends the request with trace context, a `CLIENT` span and its duration recorded (see
    /// [`HttpClient`]).
    ///
    /// # Errors
    ///
    /// The request could not be built or sent (as `reqwest` reports it). HTTP error statuses are
    /// not errors here.
    pub async fn send(self) -> Result<reqwest::Response, reqwest::Error> {
        let Self { client, inner } = self;
        client.execute(inner.build()?).await
    }
}

impl HttpClient {
    /// Starts the `CLIENT` span, a child of the current context, and returns its context.
    fn start_span(&self, builder: SpanBuilder) -> Context {
        match &self.tracing {
            ClientTracing::Global => {
                Context::current_with_span(builder.start(&global::tracer(SCOPE)))
            }
            ClientTracing::Parts {
                tracer: Some(tracer),
                ..
            } => Context::current_with_span(builder.start(tracer)),
            // As the global no-op tracer does: the current context still propagates.
            ClientTracing::Parts { tracer: None, .. } => {
                Context::current_with_span(builder.start(&NoopTracer::new()))
            }
        }
    }
}

/// `http.client.request.duration`.
fn duration_histogram(meter: &Meter) -> Histogram<f64> {
    meter
        .f64_histogram(HTTP_CLIENT_REQUEST_DURATION)
        .with_unit("s")
        .with_description("Duration of HTTP client requests, until the response headers arrived.")
        .build()
}

/// The client lists [`install`](crate::ObservabilityBuilder::install) configured, for
/// [`HttpClient::new`], with the attribute length limit.
static INSTALLED_HEADERS: RwLock<Option<(Arc<HeaderCaptures>, usize)>> = RwLock::new(None);

/// Makes `captures` (and the length `limit`) the lists of every [`HttpClient::new`] from now on.
pub(crate) fn install_headers(captures: Arc<HeaderCaptures>, limit: usize) {
    *INSTALLED_HEADERS
        .write()
        .unwrap_or_else(PoisonError::into_inner) = Some((captures, limit));
}

/// The client lists setup installed (defaults before it).
fn installed_headers() -> (Arc<HeaderCaptures>, usize) {
    INSTALLED_HEADERS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_else(|| {
            (
                Arc::default(),
                crate::config::DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT,
            )
        })
}

/// `url.full`: the URL without credentials or fragment, with sensitive query values redacted
/// (see the [`http`](crate::http) module docs for how parameter names are judged).
fn url_full(url: &reqwest::Url, extra: &[Box<[u8]>]) -> String {
    let mut full = url.clone();
    let _ = full.set_username("");
    let _ = full.set_password(None);
    // Never sent, but may hold secrets (`#access_token=` in OAuth redirects).
    full.set_fragment(None);
    if let Some(query) = url.query() {
        if let std::borrow::Cow::Owned(redacted) = redact_query(query, extra) {
            full.set_query(Some(&redacted));
        }
    }
    full.into()
}

#[cfg(test)]
mod tests {
    use super::url_full;

    #[test]
    fn url_full_redacts_encoded_names_credentials_and_fragments() {
        let table = [
            ("http://h/p?token=S", "http://h/p?token=REDACTED"),
            ("http://h/p?to%6Ben=S", "http://h/p?to%6Ben=REDACTED"),
            ("http://h/p?%74oken=S", "http://h/p?%74oken=REDACTED"),
            ("http://h/p?api%2Dkey=S", "http://h/p?api%2Dkey=REDACTED"),
            ("http://h/p?token%20=S", "http://h/p?token%20=REDACTED"),
            ("http://h/p?token[]=S", "http://h/p?token[]=REDACTED"),
            ("http://h/p?token+=S&q=1", "http://h/p?token+=REDACTED&q=1"),
            ("http://h/p?API_KEY=S", "http://h/p?API_KEY=REDACTED"),
            ("http://u:pw@h/p?q=1", "http://h/p?q=1"),
            ("http://h/cb?q=1#access_token=S", "http://h/cb?q=1"),
            ("https://h:8443/p?page=2", "https://h:8443/p?page=2"),
        ];
        for (url, expected) in table {
            let url = reqwest::Url::parse(url).unwrap();
            assert_eq!(url_full(&url, &[]), expected, "{url}");
        }
    }
}
