//! The OTLP span exporter (`OTEL_TRACES_EXPORTER=otlp`): each batch encoded once, by
//! [`span_encoding`](crate::span_encoding), and those bytes sent over HTTP/protobuf or gRPC,
//! with `opentelemetry-otlp`'s retries.
//!
//! It replaces `opentelemetry_otlp::SpanExporter` for spans only (logs and the metrics push
//! still use `opentelemetry-otlp`), and keeps what that exporter does, with the same variables:
//!
//! - **HTTP/protobuf**: `POST` to the traces endpoint ([`OtlpConfig::endpoint`], `/v1/traces`
//!   already appended to a generic endpoint), `content-type: application/x-protobuf`, the OTLP
//!   headers, a gzip body with `content-encoding: gzip` when compression is gzip, through the
//!   blocking reqwest client [`tls`](crate::tls) builds (TLS, the export timeout per request).
//! - **gRPC**: the unary call `/opentelemetry.proto.collector.trace.v1.TraceService/Export` on a
//!   lazily connected tonic channel (TLS as [`tls`](crate::tls) configures it, the export
//!   timeout per request), the OTLP headers as metadata, gzip when configured. The connection
//!   runs on the export runtime ([`ExportRuntime`]).
//! - **Retries**, as `RetryPolicy::recommended()` of opentelemetry-otlp 0.33 does them: up to 3
//!   retries, exponential backoff from 100 ms to 1.6 s with up to 100 ms of jitter, all within
//!   the export timeout. Retried: HTTP 429, 502, 503, 504 and transport failures; gRPC
//!   `UNAVAILABLE`, `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `DATA_LOSS`,
//!   and `RESOURCE_EXHAUSTED` when the server says when to retry. A server's `Retry-After`
//!   (HTTP 429/503) or `RetryInfo` (gRPC) delay is honoured (at most 30 s). Everything else
//!   fails at once. The bytes of a batch are encoded once and reused for every attempt.
//! - **Throttling**: when the collector still asks to wait (`Retry-After`, `RetryInfo`) once the
//!   retries are spent, or asks for longer than the export timeout, the exporter pauses for the
//!   time it asked, at most [`MAX_PAUSE`]: batches are dropped without a request meanwhile, and
//!   counted on `otel_sdk_span_dropped_total{error_type="throttled"}` (said once per pause).
//! - **Size**: one request carries at most `SOMA_BSP_MAX_EXPORT_BATCH_BYTES` (3 MiB by default,
//!   under the 4 MiB a collector's gRPC receiver accepts): a larger batch is split in halves until
//!   each part fits, and a span that does not fit on its own is dropped and counted on
//!   `otel_sdk_span_dropped_total{error_type="too_large"}`.
//! - **Answers** are read up to [`MAX_RESPONSE_BYTES`] (an `ExportTraceServiceResponse` is a count
//!   and a message); the rest of a larger answer is never read.
//! - **Partial success** (the collector rejected some spans): logged as a warning, not retried.
//! - **Failures** read as `opentelemetry-otlp`'s do (`HTTP export failed with status code: 503`,
//!   `HTTP export failed: network error` with its cause, `gRPC code: Unavailable` with the
//!   transport's error chain), so the export warning and the counters
//!   (see [`delivery`](crate::delivery)) say the same as before.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use crate::config::{Compression, OtlpConfig, Protocol};
use crate::error::{ConfigError, SetupError, Signal};
use crate::otlp::ExportRuntime;
use crate::span_encoding::SpanEncoder;
use crate::tls::MAX_RESPONSE_BYTES;

/// The `User-Agent` (gRPC: `user-agent` metadata) of every export.
const USER_AGENT: &str = concat!(
    "soma-observability/",
    env!("CARGO_PKG_VERSION"),
    " (OTLP exporter)"
);

/// opentelemetry-otlp's limit on an HTTP request body.
const MAX_HTTP_BODY: usize = 64 * 1024 * 1024;

/// The longest pause a collector's throttling can impose (see the [module docs](self)).
pub(crate) const MAX_PAUSE: Duration = Duration::from_secs(60);

/// The `error.type` of spans dropped while the collector asked for a pause.
const THROTTLED: &str = "throttled";
/// The `error.type` of spans larger on their own than an export request may be.
const TOO_LARGE: &str = "too_large";

/// The OTLP span exporter (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct OtlpSpanExporter {
    /// The encoder and its output buffer, reused from batch to batch.
    encoding: Mutex<(SpanEncoder, Vec<u8>)>,
    transport: Transport,
    compression: Compression,
    /// The export timeout: per attempt (set on the client) and for all attempts together.
    timeout: Duration,
    /// `SOMA_BSP_MAX_EXPORT_BATCH_BYTES`: the most one request carries, before gzip.
    max_batch_bytes: usize,
    /// Counts the spans this exporter drops itself (throttled, too large).
    dropped: Option<opentelemetry::metrics::Counter<u64>>,
    /// Until when the collector asked for no export, and the failure that asked.
    paused_until: Mutex<Option<(Instant, String)>>,
    shut_down: AtomicBool,
}

#[derive(Debug)]
enum Transport {
    Http(Http),
    #[cfg(feature = "grpc")]
    Grpc(grpc::Grpc),
}

impl OtlpSpanExporter {
    /// The exporter `otlp` describes and, for gRPC, the runtime its connection runs on.
    ///
    /// # Errors
    ///
    /// [`SetupError::NoRuntime`] for gRPC outside a tokio runtime, [`SetupError::Config`] for
    /// headers that cannot be sent or TLS files that cannot be used, [`SetupError::Exporter`]
    /// for an endpoint that is not a valid URL or a client that cannot be built.
    pub(crate) fn build(
        otlp: &OtlpConfig,
        max_batch_bytes: usize,
    ) -> Result<(Self, Option<ExportRuntime>), SetupError> {
        let signal = Signal::Traces;
        crate::otlp::require_runtime_for_grpc(otlp, signal)?;
        let (transport, runtime) = match otlp.protocol {
            #[cfg(not(feature = "grpc"))]
            Protocol::Grpc => return Err(crate::features::grpc_disabled(signal).into()),
            #[cfg(feature = "grpc")]
            Protocol::Grpc => {
                let runtime = ExportRuntime::new("otel-trace-export");
                let _entered = runtime.as_ref().and_then(ExportRuntime::enter);
                let grpc = grpc::Grpc::new(otlp, signal)?;
                (Transport::Grpc(grpc), runtime)
            }
            Protocol::HttpProtobuf => (Transport::Http(Http::new(otlp, signal)?), None),
        };
        let exporter = Self {
            encoding: Mutex::new((
                SpanEncoder::new(&Resource::builder_empty().build()),
                Vec::new(),
            )),
            transport,
            compression: otlp.compression,
            timeout: otlp.timeout,
            max_batch_bytes,
            dropped: None,
            paused_until: Mutex::new(None),
            shut_down: AtomicBool::new(false),
        };
        Ok((exporter, runtime))
    }

    /// Counts the spans it drops itself on `dropped` (`otel.sdk.span.dropped`).
    pub(crate) fn with_dropped(mut self, dropped: opentelemetry::metrics::Counter<u64>) -> Self {
        self.dropped = Some(dropped);
        self
    }

    /// The batch as the bodies of requests of at most `max_batch_bytes` each, and how many of
    /// its spans are larger than that on their own (left out).
    fn bodies(&self, batch: &[SpanData]) -> Result<(Vec<Bytes>, usize), OTelSdkError> {
        let gzip =
            self.compression == Compression::Gzip && matches!(self.transport, Transport::Http(_));
        let mut encoding = self.encoding.lock().unwrap_or_else(PoisonError::into_inner);
        let (encoder, buffer) = &mut *encoding;
        let mut bodies = Vec::with_capacity(1);
        let mut too_large = 0;
        let mut parts = vec![batch];
        while let Some(part) = parts.pop() {
            encode_into(encoder, buffer, part)?;
            if buffer.len() <= self.max_batch_bytes {
                bodies.push(finish_body(buffer, gzip)?);
            } else if part.len() == 1 {
                too_large += 1;
            } else {
                let (first, second) = part.split_at(part.len() / 2);
                parts.push(second);
                parts.push(first);
            }
        }
        Ok((bodies, too_large))
    }

    /// How long the collector's pause still lasts, and the failure that asked for it.
    fn paused(&self) -> Option<(Duration, String)> {
        let paused = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (until, why) = paused.as_ref()?;
        let left = until.checked_duration_since(Instant::now())?;
        Some((left, why.clone()))
    }

    /// Starts the pause a failure's server delay asks for (see the [module docs](self)).
    fn pause_if_asked(&self, failure: &Failure) {
        let Retry::After(asked) = failure.retry else {
            return;
        };
        let pause = asked.min(MAX_PAUSE);
        *self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now() + pause, failure.message.clone()));
        tracing::warn!(
            asked = ?asked,
            pause = ?pause,
            "the collector asked to wait before the next span export ({}): spans are dropped \
             for {pause:?} and counted on otel_sdk_span_dropped_total{{error_type=\"throttled\"}}",
            failure.message
        );
    }

    /// Counts `n` spans this exporter dropped itself, for `reason`.
    fn drop_spans(&self, n: usize, reason: &'static str) {
        if let (Some(dropped), Ok(n @ 1..)) = (&self.dropped, u64::try_from(n)) {
            dropped.add(n, &[opentelemetry::KeyValue::new("error.type", reason)]);
        }
    }

    /// Sends `body`, retrying as the [module docs](self) say; the collector's answer.
    async fn send(&self, body: &Bytes) -> Result<Bytes, Failure> {
        match &self.transport {
            Transport::Http(http) => {
                let gzip = self.compression == Compression::Gzip;
                if body.len() > MAX_HTTP_BODY {
                    let representation = if gzip { "compressed" } else { "uncompressed" };
                    return Err(Failure {
                        retry: Retry::Never,
                        message: too_large(representation, body.len()),
                    });
                }
                with_retries(self.timeout, || async { http.send(body.clone(), gzip) }).await
            }
            #[cfg(feature = "grpc")]
            Transport::Grpc(grpc) => with_retries(self.timeout, || grpc.send(body.clone())).await,
        }
    }
}

/// `batch` encoded into `buffer`, which becomes the body of every attempt (gzipped: a new
/// buffer, for HTTP).
fn encode_body(
    encoder: &mut SpanEncoder,
    buffer: &mut Vec<u8>,
    batch: &[SpanData],
    gzip: bool,
) -> Result<Bytes, OTelSdkError> {
    encode_into(encoder, buffer, batch)?;
    finish_body(buffer, gzip)
}

/// `batch` encoded into `buffer` (replacing what it held).
fn encode_into(
    encoder: &mut SpanEncoder,
    buffer: &mut Vec<u8>,
    batch: &[SpanData],
) -> Result<(), OTelSdkError> {
    encoder
        .encode(batch, buffer)
        .map_err(|bug| OTelSdkError::InternalFailure(bug.to_string()))
}

/// The encoded `buffer` as a request body: itself, or gzipped.
fn finish_body(buffer: &mut Vec<u8>, gzip: bool) -> Result<Bytes, OTelSdkError> {
    if !gzip {
        // The buffer itself, not a copy: it comes back with `recycle` once sent.
        return Ok(Bytes::from(std::mem::take(buffer)));
    }
    if buffer.len() > MAX_HTTP_BODY {
        return Err(OTelSdkError::InternalFailure(too_large(
            "uncompressed",
            buffer.len(),
        )));
    }
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(buffer.len() / 4),
        flate2::Compression::default(),
    );
    gz.write_all(buffer)
        .and_then(|()| gz.finish())
        .map(Bytes::from)
        .map_err(|err| OTelSdkError::InternalFailure(format!("gzip failed: {err}")))
}

/// The exporter's CPU work on a batch before it is sent, for the benchmarks (`soma-benches`);
/// not part of the API.
#[doc(hidden)]
pub mod bench {
    use bytes::Bytes;
    use opentelemetry_sdk::error::OTelSdkError;
    use opentelemetry_sdk::trace::SpanData;
    use opentelemetry_sdk::Resource;

    use crate::span_encoding::SpanEncoder;

    /// What the span exporter keeps from batch to batch to encode them.
    #[derive(Debug)]
    pub struct BatchEncoder {
        encoder: SpanEncoder,
        buffer: Vec<u8>,
    }

    impl BatchEncoder {
        /// An encoder for spans of `resource`.
        pub fn new(resource: &Resource) -> Self {
            Self {
                encoder: SpanEncoder::new(resource),
                buffer: Vec::new(),
            }
        }

        /// The body the exporter sends for `batch` (gzipped: as over HTTP with gzip).
        ///
        /// # Errors
        ///
        /// As the exporter's: a gzip failure or a body over the HTTP limit.
        pub fn body(&mut self, batch: &[SpanData], gzip: bool) -> Result<Bytes, OTelSdkError> {
            super::encode_body(&mut self.encoder, &mut self.buffer, batch, gzip)
        }

        /// Gives the buffer of a sent `body` back, as the exporter does after the export.
        pub fn recycle(&mut self, body: Bytes) {
            super::recycle(&mut self.buffer, body);
        }
    }
}

/// Takes the body's buffer back for the next batch, if nothing else holds it any more (the
/// HTTP client may still, for a moment: then the next batch allocates one).
fn recycle(buffer: &mut Vec<u8>, body: Bytes) {
    if buffer.capacity() == 0 {
        if let Ok(body) = body.try_into_mut() {
            *buffer = body.into();
        }
    }
}

fn too_large(representation: &str, len: usize) -> String {
    format!(
        "OTLP HTTP {representation} request body is {len} bytes, exceeding the limit of \
         {MAX_HTTP_BODY} bytes; the spans are dropped: reduce OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
    )
}

impl SpanExporter for OtlpSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if self.shut_down.load(Ordering::Acquire) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        if let Some((left, why)) = self.paused() {
            self.drop_spans(batch.len(), THROTTLED);
            return Err(OTelSdkError::InternalFailure(format!(
                "{why}; the collector asked for a pause ({left:?} left): dropped without another \
                 attempt"
            )));
        }
        let (bodies, too_large) = self.bodies(&batch)?;
        drop(batch);
        if too_large > 0 {
            self.drop_spans(too_large, TOO_LARGE);
            tracing::warn!(
                spans = too_large,
                limit = self.max_batch_bytes,
                "{too_large} span(s) larger than SOMA_BSP_MAX_EXPORT_BATCH_BYTES on their own \
                 dropped; counted on otel_sdk_span_dropped_total{{error_type=\"too_large\"}}"
            );
        }
        for body in bodies {
            let result = self.send(&body).await;
            let mut encoding = self.encoding.lock().unwrap_or_else(PoisonError::into_inner);
            recycle(&mut encoding.1, body);
            drop(encoding);
            match result {
                Ok(response) => warn_on_partial_success(&response),
                Err(failure) => {
                    self.pause_if_asked(&failure);
                    return Err(OTelSdkError::InternalFailure(failure.message));
                }
            }
        }
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            Err(OTelSdkError::AlreadyShutdown)
        } else {
            Ok(())
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.encoding
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .set_resource(resource);
    }
}

// ---- retries ----

/// Whether (and when) a failed attempt may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    Never,
    /// With exponential backoff.
    Backoff,
    /// Not before the server's delay.
    After(Duration),
}

/// A failed attempt: what the export error will say, and whether to try again.
#[derive(Debug)]
struct Failure {
    retry: Retry,
    message: String,
}

/// `RetryPolicy::recommended()` of opentelemetry-otlp 0.33.
const MAX_RETRIES: u32 = 3;
const INITIAL_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_millis(1600);
const MAX_JITTER_MS: u64 = 100;
/// The longest a server's delay may hold the export thread.
const MAX_THROTTLE: Duration = Duration::from_secs(30);
/// Server delays are capped here when read (as opentelemetry-otlp does), then at
/// [`MAX_THROTTLE`].
const MAX_SERVER_DELAY: Duration = Duration::from_secs(600);

/// Runs `attempt` until it succeeds, fails for good, runs out of retries or would end after
/// `deadline` (from now), as opentelemetry-otlp's `retry_with_backoff` does. Waits between
/// attempts on this thread (the export thread).
async fn with_retries<F, Fut>(deadline: Duration, mut attempt: F) -> Result<Bytes, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Bytes, Failure>>,
{
    let start = Instant::now();
    let mut retries = 0;
    let mut delay = INITIAL_DELAY;
    let mut cap = MAX_DELAY;
    loop {
        let failure = match attempt().await {
            Ok(response) => return Ok(response),
            Err(failure) => failure,
        };
        if start.elapsed() >= deadline || retries >= MAX_RETRIES {
            return Err(failure);
        }
        match failure.retry {
            Retry::Never => return Err(failure),
            Retry::Backoff => {}
            Retry::After(server) => {
                let server = server.min(MAX_THROTTLE);
                if server > cap {
                    cap = MAX_THROTTLE;
                }
                delay = delay.max(server);
            }
        }
        retries += 1;
        let pause = (delay + jitter()).min(cap);
        if pause >= deadline.saturating_sub(start.elapsed()) {
            return Err(failure);
        }
        tracing::debug!(retry = retries, delay = ?pause, "span export failed ({}); retrying", failure.message);
        std::thread::sleep(pause);
        delay = delay.saturating_mul(2).min(cap);
    }
}

fn jitter() -> Duration {
    use std::hash::BuildHasher as _;
    let random = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    Duration::from_millis(random % (MAX_JITTER_MS + 1))
}

// ---- HTTP/protobuf ----

#[derive(Debug)]
struct Http {
    client: reqwest::blocking::Client,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
}

impl Http {
    fn new(otlp: &OtlpConfig, signal: Signal) -> Result<Self, SetupError> {
        use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};

        let url = reqwest::Url::parse(&otlp.endpoint).map_err(|err| SetupError::Exporter {
            signal,
            source: opentelemetry_otlp::ExporterBuildError::InvalidConfiguration(format!(
                "invalid endpoint '{}': {err}",
                otlp.endpoint
            )),
        })?;
        let mut headers = HeaderMap::new();
        headers.insert(USER_AGENT, HeaderValue::from_static(self::USER_AGENT));
        for (key, value) in &otlp.headers {
            let invalid = || ConfigError::InvalidValue {
                setting: "OTLP headers",
                reason: format!("{key:?} is not a valid HTTP header name/value pair"),
            };
            let name = HeaderName::from_bytes(key.as_bytes()).map_err(|_| invalid())?;
            let value = HeaderValue::from_str(value).map_err(|_| invalid())?;
            headers.insert(name, value);
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        let client = crate::tls::http_client(otlp.tls(), otlp.timeout, signal)?;
        Ok(Self {
            client,
            url,
            headers,
        })
    }

    /// One attempt. Keeps the cause of a transport failure for the warning, as
    /// [`tls`](crate::tls)'s client does for the other signals.
    fn send(&self, body: Bytes, gzip: bool) -> Result<Bytes, Failure> {
        let mut request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone());
        if gzip {
            request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        let response = request.body(body).send();
        crate::tls::record_transport_failure(
            response.as_ref().err().map(|err| crate::tls::chain(err)),
        );
        let response = response.map_err(|_| Failure {
            retry: Retry::Backoff,
            message: "HTTP export failed: network error".to_owned(),
        })?;
        let status = response.status();
        if !status.is_success() {
            let code = status.as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|secs| Duration::from_secs(secs).min(MAX_SERVER_DELAY));
            let retry = match (code, retry_after) {
                (429 | 503, Some(delay)) => Retry::After(delay),
                (429 | 502 | 503 | 504, _) => Retry::Backoff,
                _ => Retry::Never,
            };
            return Err(Failure {
                retry,
                message: format!("HTTP export failed with status code: {code}"),
            });
        }
        // An unreadable (or oversized) answer to a successful export is not a failed export.
        Ok(read_answer(response))
    }
}

/// At most [`MAX_RESPONSE_BYTES`] of a successful answer: nothing when it is longer (the rest is
/// never read) or cannot be read.
fn read_answer(response: reqwest::blocking::Response) -> Bytes {
    use std::io::Read as _;
    let mut answer = Vec::new();
    let read = response
        .take(MAX_RESPONSE_BYTES + 1)
        .read_to_end(&mut answer);
    match read {
        Ok(len) if len as u64 <= MAX_RESPONSE_BYTES => Bytes::from(answer),
        _ => Bytes::new(),
    }
}

// ---- gRPC ----

#[cfg(feature = "grpc")]
mod grpc {
    use bytes::{Buf as _, BufMut as _, Bytes};
    use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
    use tonic::transport::{Channel, Endpoint};
    use tonic::{Code, Status};

    use super::{Failure, Retry, MAX_SERVER_DELAY, USER_AGENT};
    use crate::config::{Compression, OtlpConfig};
    use crate::error::{SetupError, Signal};

    const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

    #[derive(Debug)]
    pub(super) struct Grpc {
        client: tonic::client::Grpc<Channel>,
        metadata: tonic::metadata::MetadataMap,
    }

    impl Grpc {
        /// Must run inside the runtime the connection is to run on.
        pub(super) fn new(otlp: &OtlpConfig, signal: Signal) -> Result<Self, SetupError> {
            let invalid = |reason: String| SetupError::Exporter {
                signal,
                source: opentelemetry_otlp::ExporterBuildError::InvalidConfiguration(reason),
            };
            let mut metadata = crate::otlp::metadata(&otlp.headers)?;
            if !metadata.contains_key("user-agent") {
                metadata.insert(
                    "user-agent",
                    tonic::metadata::MetadataValue::from_static(USER_AGENT),
                );
            }
            let mut endpoint = Endpoint::from_shared(otlp.endpoint.clone()).map_err(|err| {
                invalid(format!(
                    "invalid endpoint '{}': {}",
                    otlp.endpoint,
                    crate::tls::chain(&err)
                ))
            })?;
            if let Some(tls) = crate::tls::tonic_config(otlp.tls(), signal)? {
                endpoint = endpoint
                    .tls_config(tls)
                    .map_err(|err| invalid(crate::tls::chain(&err)))?;
            }
            let channel = endpoint.timeout(otlp.timeout).connect_lazy();
            // An `ExportTraceServiceResponse` is a count and a message: a larger answer is refused.
            let max_answer = usize::try_from(crate::tls::MAX_RESPONSE_BYTES).unwrap_or(usize::MAX);
            let mut client =
                tonic::client::Grpc::new(channel).max_decoding_message_size(max_answer);
            if otlp.compression == Compression::Gzip {
                client = client
                    .send_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Gzip);
            }
            Ok(Self { client, metadata })
        }

        /// One attempt.
        pub(super) async fn send(&self, body: Bytes) -> Result<Bytes, Failure> {
            let mut client = self.client.clone();
            let result = async {
                client
                    .ready()
                    .await
                    .map_err(|err| Status::from_error(Box::new(err)))?;
                let mut request = tonic::Request::new(body);
                *request.metadata_mut() = self.metadata.clone();
                let path = http::uri::PathAndQuery::from_static(EXPORT);
                client.unary(request, path, PreEncoded).await
            }
            .await;
            result
                .map(tonic::Response::into_inner)
                .map_err(|status| failure(&status))
        }
    }

    /// What a failed call means, worded as opentelemetry-otlp's tonic exporter words it.
    fn failure(status: &Status) -> Failure {
        let code = status.code();
        let mut message = format!("gRPC span export failed with gRPC code: {code:?}");
        if !status.message().is_empty() {
            message.push_str(": ");
            message.push_str(status.message());
        }
        if let Some(source) = std::error::Error::source(status) {
            message.push_str(": ");
            message.push_str(&crate::tls::chain(source));
        }
        let delay = super::wire::retry_delay(status.details()).map(|d| d.min(MAX_SERVER_DELAY));
        let retry = match code {
            Code::ResourceExhausted => delay.map_or(Retry::Never, Retry::After),
            Code::Unavailable => match delay.filter(|d| !d.is_zero()) {
                Some(delay) => Retry::After(delay),
                None => Retry::Backoff,
            },
            Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::OutOfRange
            | Code::DataLoss => Retry::Backoff,
            _ => Retry::Never,
        };
        Failure { retry, message }
    }

    /// Sends bytes already encoded as an `ExportTraceServiceRequest`; hands back the
    /// response's bytes.
    #[derive(Clone, Copy, Debug, Default)]
    struct PreEncoded;

    impl Codec for PreEncoded {
        type Encode = Bytes;
        type Decode = Bytes;
        type Encoder = Self;
        type Decoder = Self;

        fn encoder(&mut self) -> Self {
            Self
        }

        fn decoder(&mut self) -> Self {
            Self
        }
    }

    impl Encoder for PreEncoded {
        type Item = Bytes;
        type Error = Status;

        fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put(item);
            Ok(())
        }
    }

    impl Decoder for PreEncoded {
        type Item = Bytes;
        type Error = Status;

        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
            Ok(Some(src.copy_to_bytes(src.remaining())))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn grpc_codes_are_retried_as_opentelemetry_otlp_retries_them() {
            let retry = |status: Status| failure(&status).retry;
            assert_eq!(retry(Status::unavailable("down")), Retry::Backoff);
            assert_eq!(retry(Status::deadline_exceeded("slow")), Retry::Backoff);
            assert_eq!(retry(Status::internal("bug")), Retry::Never);
            assert_eq!(retry(Status::invalid_argument("bad")), Retry::Never);
            assert_eq!(retry(Status::resource_exhausted("slow down")), Retry::Never);
            // google.rpc.Status with a RetryInfo of 2 s.
            let type_url = b"type.googleapis.com/google.rpc.RetryInfo";
            let mut any = vec![0x0a, 40];
            any.extend_from_slice(type_url);
            any.extend_from_slice(&[0x12, 4, 0x0a, 2, 0x08, 2]);
            let mut details = vec![0x1a, 48];
            details.extend_from_slice(&any);
            let throttled =
                Status::with_details(Code::ResourceExhausted, "slow down", details.into());
            assert_eq!(
                retry(throttled),
                Retry::After(std::time::Duration::from_secs(2))
            );
            let message = failure(&Status::unavailable("scripted outage")).message;
            assert_eq!(
                message,
                "gRPC span export failed with gRPC code: Unavailable: scripted outage"
            );
        }
    }
}

// ---- reading the little the exporter reads ----

/// Logs a partial success (`ExportTraceServiceResponse.partial_success`), as opentelemetry-otlp
/// does; a response that does not decode is ignored.
fn warn_on_partial_success(response: &[u8]) {
    let Some(partial) = wire::message_field(response, 1) else {
        return;
    };
    let rejected = wire::varint_field(partial, 1).unwrap_or(0);
    let message = wire::message_field(partial, 2)
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    if rejected > 0 || !message.is_empty() {
        tracing::warn!(
            rejected_spans = rejected,
            error_message = %message,
            "the collector accepted the span export partially: it rejected {rejected} span(s) ({message})"
        );
    }
}

/// Just enough protobuf decoding for the collector's answers.
mod wire {
    use std::time::Duration;

    /// One field: its number and its value (a varint, or the bytes of a length-delimited
    /// field; fixed-width values are skipped).
    enum Value<'a> {
        Varint(u64),
        Bytes(&'a [u8]),
        Other,
    }

    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut value = 0_u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = buf.split_first()?;
            *buf = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }

    /// The fields of `buf`, until the end or the first malformed one.
    fn fields(mut buf: &[u8]) -> impl Iterator<Item = (u64, Value<'_>)> {
        std::iter::from_fn(move || {
            let key = varint(&mut buf)?;
            let value = match key & 7 {
                0 => Value::Varint(varint(&mut buf)?),
                1 => {
                    buf = buf.get(8..)?;
                    Value::Other
                }
                2 => {
                    let len = usize::try_from(varint(&mut buf)?).ok()?;
                    let (bytes, rest) = (buf.get(..len)?, buf.get(len..)?);
                    buf = rest;
                    Value::Bytes(bytes)
                }
                5 => {
                    buf = buf.get(4..)?;
                    Value::Other
                }
                _ => return None,
            };
            Some((key >> 3, value))
        })
    }

    /// The last occurrence of length-delimited field `field`.
    pub(super) fn message_field(buf: &[u8], field: u64) -> Option<&[u8]> {
        fields(buf)
            .filter_map(|(n, v)| match v {
                Value::Bytes(b) if n == field => Some(b),
                _ => None,
            })
            .last()
    }

    pub(super) fn varint_field(buf: &[u8], field: u64) -> Option<u64> {
        fields(buf)
            .filter_map(|(n, v)| match v {
                Value::Varint(x) if n == field => Some(x),
                _ => None,
            })
            .last()
    }

    /// The `google.rpc.RetryInfo.retry_delay` among the details of a gRPC status (the
    /// `google.rpc.Status` in `grpc-status-details-bin`).
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(super) fn retry_delay(details: &[u8]) -> Option<Duration> {
        const RETRY_INFO: &[u8] = b"type.googleapis.com/google.rpc.RetryInfo";
        fields(details)
            .filter_map(|(n, v)| match v {
                Value::Bytes(any) if n == 3 => Some(any),
                _ => None,
            })
            .find(|any| message_field(any, 1) == Some(RETRY_INFO))
            .map(|any| {
                let info = message_field(any, 2).unwrap_or_default();
                let delay = message_field(info, 1).unwrap_or_default();
                let seconds = varint_field(delay, 1).unwrap_or(0);
                let nanos = varint_field(delay, 2).unwrap_or(0);
                Duration::from_secs(seconds) + Duration::from_nanos(nanos.min(999_999_999))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(out: &mut Vec<u8>, key: u8, bytes: &[u8]) {
        out.push(key);
        out.push(u8::try_from(bytes.len()).unwrap());
        out.extend_from_slice(bytes);
    }

    #[test]
    fn a_retry_info_delay_is_read_from_the_status_details() {
        // google.protobuf.Duration { seconds: 2, nanos: 500_000_000 }
        let duration = [0x08, 2, 0x10, 0x80, 0xca, 0xb5, 0xee, 0x01];
        let mut info = Vec::new();
        field(&mut info, 0x0a, &duration);
        let mut any = Vec::new();
        field(&mut any, 0x0a, b"type.googleapis.com/google.rpc.RetryInfo");
        field(&mut any, 0x12, &info);
        let mut other = Vec::new();
        field(
            &mut other,
            0x0a,
            b"type.googleapis.com/google.rpc.DebugInfo",
        );
        let mut status = vec![0x08, 14];
        field(&mut status, 0x1a, &other);
        field(&mut status, 0x1a, &any);
        assert_eq!(
            wire::retry_delay(&status),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(wire::retry_delay(&status[..5]), None);
        assert_eq!(wire::retry_delay(b""), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn retries_stop_at_the_first_failure_that_is_not_retryable() {
        let mut attempts = 0;
        let result = with_retries(Duration::from_secs(10), || {
            attempts += 1;
            let retry = if attempts < 3 {
                Retry::Backoff
            } else {
                Retry::Never
            };
            async move {
                Err::<Bytes, _>(Failure {
                    retry,
                    message: "x".to_owned(),
                })
            }
        })
        .await;
        assert_eq!(result.unwrap_err().message, "x");
        assert_eq!(attempts, 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn at_most_three_retries_and_none_past_the_deadline() {
        let mut attempts = 0;
        let _ = with_retries(Duration::from_secs(10), || {
            attempts += 1;
            async {
                Err::<Bytes, _>(Failure {
                    retry: Retry::Backoff,
                    message: String::new(),
                })
            }
        })
        .await;
        assert_eq!(attempts, 4);
        // A server delay longer than what is left of the deadline: no retry.
        let mut attempts = 0;
        let started = Instant::now();
        let _ = with_retries(Duration::from_millis(500), || {
            attempts += 1;
            async {
                Err::<Bytes, _>(Failure {
                    retry: Retry::After(Duration::from_secs(1)),
                    message: String::new(),
                })
            }
        })
        .await;
        assert_eq!(attempts, 1);
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}
