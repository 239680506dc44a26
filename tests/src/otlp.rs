//! A real OTLP receiver for tests: the official protobuf service definitions
//! (`opentelemetry-proto`'s tonic server for gRPC, its prost types behind an HTTP endpoint), on
//! 127.0.0.1, scriptable to refuse, hang or fail. [`FakeOtlp::start_counting`] is the
//! benchmarks' receiver: it only counts, so a long load run does not grow its memory.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// What the receiver does with an export request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Store it and answer success.
    Accept,
    /// Never answer.
    Hang,
    /// Answer with this HTTP status (HTTP; 429 and 503 with `Retry-After: 1`) or, for gRPC,
    /// `UNAVAILABLE` (503), `RESOURCE_EXHAUSTED` with a 1 s `RetryInfo` (429) or `INTERNAL`.
    Fail(u16),
    /// Fail the next `times` requests as [`Behaviour::Fail`] does, then accept.
    FailThenAccept {
        /// The status to fail with.
        status: u16,
        /// How many requests fail.
        times: usize,
    },
}

#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    logs: Vec<ExportLogsServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    /// Requests that arrived compressed (gzip), any signal.
    compressed: usize,
    /// Every request body as it arrived (re-encoded for gRPC), to search for secrets.
    raw: Vec<Vec<u8>>,
    attempts: usize,
    /// The headers (gRPC: metadata) of every request that got past the scripted behaviour,
    /// any signal, names lowercase.
    headers: Vec<Vec<(String, String)>>,
    /// Spans, log records and export requests (any signal) received, stored or not.
    spans: u64,
    log_records: u64,
    exports: u64,
}

/// An in-process OTLP receiver built on the official protobuf definitions.
#[derive(Clone)]
pub struct FakeOtlp {
    received: Arc<Mutex<Received>>,
    behaviour: Arc<Mutex<Behaviour>>,
    /// `false`: requests are counted, not kept ([`FakeOtlp::start_counting`]).
    keep: bool,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
}

#[derive(Clone)]
struct Grpc(FakeOtlp);

impl std::fmt::Debug for FakeOtlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOtlp")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.gate().await.map_err(grpc_status)?;
        self.0.note_grpc_encoding(&request);
        self.0
            .note_headers(&request.metadata().clone().into_headers());
        let request = request.into_inner();
        self.0.store_traces(request);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0.gate().await.map_err(grpc_status)?;
        self.0.note_grpc_encoding(&request);
        self.0.store_logs(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.gate().await.map_err(grpc_status)?;
        self.0.note_grpc_encoding(&request);
        self.0.store_metrics(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// The request body, gunzipped when it says `Content-Encoding: gzip`; and whether it did.
fn decode_body(headers: &HeaderMap, body: &Bytes) -> (Vec<u8>, bool) {
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    if !gzip {
        return (body.to_vec(), false);
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out).unwrap();
    (out, true)
}

fn failure(code: u16) -> axum::response::Response {
    let status = StatusCode::from_u16(code).unwrap();
    if code == 429 || code == 503 {
        (status, [("retry-after", "1")]).into_response()
    } else {
        status.into_response()
    }
}

/// 503: `UNAVAILABLE`; 429: `RESOURCE_EXHAUSTED` with a `google.rpc.RetryInfo` of 1 s (the
/// gRPC `Retry-After`); anything else `INTERNAL`.
fn grpc_status(code: u16) -> tonic::Status {
    match code {
        503 => tonic::Status::unavailable("scripted outage"),
        429 => {
            // google.rpc.Status { code: 8, message, details: [Any { type_url, value:
            // RetryInfo { retry_delay: Duration { seconds: 1 } } }] }, written by hand.
            let type_url = b"type.googleapis.com/google.rpc.RetryInfo";
            let retry_info = [0x0a, 2, 0x08, 1];
            let mut any = vec![0x0a, u8::try_from(type_url.len()).unwrap()];
            any.extend_from_slice(type_url);
            any.extend_from_slice(&[0x12, u8::try_from(retry_info.len()).unwrap()]);
            any.extend_from_slice(&retry_info);
            let mut status = vec![0x08, 8, 0x1a, u8::try_from(any.len()).unwrap()];
            status.extend_from_slice(&any);
            tonic::Status::with_details(
                tonic::Code::ResourceExhausted,
                "scripted throttling",
                status.into(),
            )
        }
        _ => tonic::Status::internal("scripted failure"),
    }
}

impl FakeOtlp {
    /// Starts gRPC and HTTP listeners on 127.0.0.1 ephemeral ports.
    pub async fn start() -> Self {
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let otlp = Self::with_addrs(
            grpc_listener.local_addr().unwrap(),
            http_listener.local_addr().unwrap(),
        );
        let grpc = Grpc(otlp.clone());
        tokio::spawn(async move {
            use tonic::codec::CompressionEncoding::Gzip;
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(grpc.clone()).accept_compressed(Gzip))
                .add_service(LogsServiceServer::new(grpc.clone()).accept_compressed(Gzip))
                .add_service(MetricsServiceServer::new(grpc).accept_compressed(Gzip))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(
                    grpc_listener,
                ))
                .await
                .unwrap();
        });
        let app = otlp.http_router();
        tokio::spawn(async move { axum::serve(http_listener, app).await.unwrap() });
        otlp
    }

    /// A receiver that serves nothing yet: its state, for a server started elsewhere (the TLS
    /// receiver, [`crate::tls`]) on these addresses.
    pub fn with_addrs(grpc_addr: SocketAddr, http_addr: SocketAddr) -> Self {
        Self {
            received: Arc::default(),
            behaviour: Arc::new(Mutex::new(Behaviour::Accept)),
            keep: true,
            grpc_addr,
            http_addr,
        }
    }

    /// The benchmarks' receiver: OTLP/gRPC on `grpc_addr` (port 0 for any) and OTLP/HTTP on an
    /// ephemeral port, on the current tokio runtime. Every export is decoded and counted
    /// ([`span_count`](Self::span_count), [`log_count`](Self::log_count),
    /// [`export_count`](Self::export_count)), and nothing is kept, so memory stays flat however
    /// long the run. Large HTTP/2 windows, as a real collector's (grpc-go's BDP estimation
    /// grows them to megabytes): a 1 024-span export is ~350 KB, more than the 64 KiB default.
    ///
    /// # Errors
    ///
    /// If an address cannot be bound.
    pub async fn start_counting(grpc_addr: SocketAddr) -> std::io::Result<Self> {
        let grpc_listener = tokio::net::TcpListener::bind(grpc_addr).await?;
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut otlp = Self::with_addrs(grpc_listener.local_addr()?, http_listener.local_addr()?);
        otlp.keep = false;
        let routes = otlp.grpc_routes();
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .initial_stream_window_size(Some(4 << 20))
                .initial_connection_window_size(Some(8 << 20))
                .add_routes(routes)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(
                    grpc_listener,
                ))
                .await;
            if let Err(err) = served {
                eprintln!("OTLP receiver stopped: {err}");
            }
        });
        let app = otlp.http_router();
        tokio::spawn(async move { axum::serve(http_listener, app).await });
        Ok(otlp)
    }

    /// Spans received so far (kept or only counted).
    pub fn span_count(&self) -> u64 {
        self.received.lock().unwrap().spans
    }

    /// Log records received so far (kept or only counted).
    pub fn log_count(&self) -> u64 {
        self.received.lock().unwrap().log_records
    }

    /// Export requests (batches, any signal) received so far (kept or only counted).
    pub fn export_count(&self) -> u64 {
        self.received.lock().unwrap().exports
    }

    /// The OTLP/gRPC trace, logs and metrics services (gzip accepted), storing into this
    /// receiver.
    pub fn grpc_routes(&self) -> tonic::service::Routes {
        use tonic::codec::CompressionEncoding::Gzip;
        let grpc = Grpc(self.clone());
        tonic::service::Routes::new(TraceServiceServer::new(grpc.clone()).accept_compressed(Gzip))
            .add_service(LogsServiceServer::new(grpc.clone()).accept_compressed(Gzip))
            .add_service(MetricsServiceServer::new(grpc).accept_compressed(Gzip))
    }

    /// The OTLP/HTTP endpoints (`/v1/traces`, `/v1/logs`, `/v1/metrics`), storing into this
    /// receiver.
    pub fn http_router(&self) -> Router {
        Router::new()
            .route(
                "/v1/traces",
                self.export_route::<ExportTraceServiceRequest, ExportTraceServiceResponse>(
                    Self::store_traces,
                ),
            )
            .route(
                "/v1/logs",
                self.export_route::<ExportLogsServiceRequest, ExportLogsServiceResponse>(
                    Self::store_logs,
                ),
            )
            .route(
                "/v1/metrics",
                self.export_route::<ExportMetricsServiceRequest, ExportMetricsServiceResponse>(
                    Self::store_metrics,
                ),
            )
    }

    /// One OTLP/HTTP endpoint: the scripted behaviour, gunzip, decode a `Req`, `store` it, and
    /// answer with an empty `Resp`.
    fn export_route<Req, Resp>(&self, store: fn(&Self, Req)) -> axum::routing::MethodRouter
    where
        Req: Message + Default + Send + 'static,
        Resp: Message + Default,
    {
        let otlp = self.clone();
        axum::routing::post(move |headers: HeaderMap, body: Bytes| async move {
            if let Err(code) = otlp.gate().await {
                return failure(code);
            }
            let (body, gzip) = decode_body(&headers, &body);
            otlp.note_compressed(gzip);
            otlp.note_headers(&headers);
            store(&otlp, Req::decode(&body[..]).unwrap());
            Resp::default().encode_to_vec().into_response()
        })
    }

    async fn gate(&self) -> Result<(), u16> {
        self.received.lock().unwrap().attempts += 1;
        let behaviour = {
            let mut behaviour = self.behaviour.lock().unwrap();
            let current = *behaviour;
            if let Behaviour::FailThenAccept { status, times } = current {
                *behaviour = if times <= 1 {
                    Behaviour::Accept
                } else {
                    Behaviour::FailThenAccept {
                        status,
                        times: times - 1,
                    }
                };
                if times == 0 {
                    return Ok(());
                }
                Behaviour::Fail(status)
            } else {
                current
            }
        };
        match behaviour {
            Behaviour::Accept | Behaviour::FailThenAccept { .. } => Ok(()),
            Behaviour::Hang => {
                std::future::pending::<()>().await;
                Ok(())
            }
            Behaviour::Fail(code) => Err(code),
        }
    }

    fn store_traces(&self, request: ExportTraceServiceRequest) {
        let spans: usize = request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        let mut received = self.received.lock().unwrap();
        received.spans += spans as u64;
        received.exports += 1;
        if self.keep {
            received.raw.push(request.encode_to_vec());
            received.traces.push(request);
        }
    }

    fn store_logs(&self, request: ExportLogsServiceRequest) {
        let log_records: usize = request
            .resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .map(|sl| sl.log_records.len())
            .sum();
        let mut received = self.received.lock().unwrap();
        received.log_records += log_records as u64;
        received.exports += 1;
        if self.keep {
            received.raw.push(request.encode_to_vec());
            received.logs.push(request);
        }
    }

    fn store_metrics(&self, request: ExportMetricsServiceRequest) {
        let mut received = self.received.lock().unwrap();
        received.exports += 1;
        if self.keep {
            received.raw.push(request.encode_to_vec());
            received.metrics.push(request);
        }
    }

    fn note_compressed(&self, compressed: bool) {
        if compressed {
            self.received.lock().unwrap().compressed += 1;
        }
    }

    fn note_headers(&self, headers: &HeaderMap) {
        if !self.keep {
            return;
        }
        let headers = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        self.received.lock().unwrap().headers.push(headers);
    }

    /// The headers (gRPC: metadata) of every request stored so far, any signal, names
    /// lowercase, in arrival order.
    pub fn request_headers(&self) -> Vec<Vec<(String, String)>> {
        self.received.lock().unwrap().headers.clone()
    }

    fn note_grpc_encoding<T>(&self, request: &tonic::Request<T>) {
        self.note_compressed(
            request
                .metadata()
                .get("grpc-encoding")
                .is_some_and(|v| v.as_bytes() == b"gzip"),
        );
    }

    /// How many export requests (any signal) were stored.
    pub fn requests(&self) -> usize {
        self.received.lock().unwrap().raw.len()
    }

    /// How many export requests (any signal) arrived gzip-compressed.
    pub fn compressed_requests(&self) -> usize {
        self.received.lock().unwrap().compressed
    }

    /// Every metrics export received so far, in arrival order: each one's metrics (over all
    /// its resources and scopes).
    pub fn metric_exports(&self) -> Vec<Vec<Metric>> {
        let received = self.received.lock().unwrap();
        received
            .metrics
            .iter()
            .map(|request| {
                request
                    .resource_metrics
                    .iter()
                    .flat_map(|rm| &rm.scope_metrics)
                    .flat_map(|sm| sm.metrics.clone())
                    .collect()
            })
            .collect()
    }

    /// The `service.name` of every metrics export's resources.
    pub fn metric_services(&self) -> Vec<String> {
        let received = self.received.lock().unwrap();
        received
            .metrics
            .iter()
            .flat_map(|request| &request.resource_metrics)
            .filter_map(|rm| string_attr(&rm.resource.as_ref()?.attributes, "service.name"))
            .collect()
    }

    /// Polls until `predicate` holds for the metrics exports received, or panics after
    /// `timeout`.
    pub async fn wait_for_metrics(
        &self,
        timeout: Duration,
        predicate: impl Fn(&[Vec<Metric>]) -> bool,
    ) -> Vec<Vec<Metric>> {
        let deadline = Instant::now() + timeout;
        loop {
            let exports = self.metric_exports();
            if predicate(&exports) {
                return exports;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for metrics; got {} exports: {:?}",
                exports.len(),
                exports
                    .iter()
                    .map(|e| e.iter().map(|m| m.name.clone()).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn attempts(&self) -> usize {
        self.received.lock().unwrap().attempts
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Every span received so far, with its resource's `service.name`.
    pub fn spans(&self) -> Vec<(String, Span)> {
        let received = self.received.lock().unwrap();
        let mut out = Vec::new();
        for request in &received.traces {
            for rs in &request.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| string_attr(&r.attributes, "service.name"))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        out.push((service.clone(), span.clone()));
                    }
                }
            }
        }
        out
    }

    pub fn logs(&self) -> Vec<LogRecord> {
        let received = self.received.lock().unwrap();
        received
            .logs
            .iter()
            .flat_map(|r| &r.resource_logs)
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| sl.log_records.clone())
            .collect()
    }

    pub fn raw_bytes(&self) -> Vec<u8> {
        self.received.lock().unwrap().raw.concat()
    }

    /// Polls until `predicate` holds for the spans received, or panics after `timeout`.
    pub async fn wait_for_spans(
        &self,
        timeout: Duration,
        predicate: impl Fn(&[(String, Span)]) -> bool,
    ) -> Vec<(String, Span)> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if predicate(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for spans; got {}: {:?}",
                spans.len(),
                spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_for_logs(
        &self,
        timeout: Duration,
        predicate: impl Fn(&[LogRecord]) -> bool,
    ) -> Vec<LogRecord> {
        let deadline = Instant::now() + timeout;
        loop {
            let logs = self.logs();
            if predicate(&logs) {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for logs; got {}",
                logs.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Lowercase hex, as trace and span ids are written in headers.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

pub fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            Value::IntValue(i) => Some(i.to_string()),
            Value::BoolValue(b) => Some(b.to_string()),
            Value::DoubleValue(d) => Some(d.to_string()),
            _ => None,
        }
    })
}

/// A collector that accepts connections and never answers (a hung collector), until
/// [`close`](Self::close) closes every connection and the port (a collector that went
/// down): the two ways a collector fails that a status code cannot script.
#[derive(Debug)]
pub struct BlackHole {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    /// Listens on a 127.0.0.1 ephemeral port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        if let Ok((socket, _)) = accepted {
                            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            held.push(socket);
                        }
                    }
                }
            }
            // Dropping them closes every held connection, as a collector that stops does.
            drop(held);
        });
        Self {
            addr,
            accepted,
            stop: Some(stop),
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Closes every held connection and the port; returns once they are closed.
    pub async fn close(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap();
    }
}
