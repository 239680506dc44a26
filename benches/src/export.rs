//! The span exporter's CPU work without the network: a batch of typical server spans
//! (`SpanData`, as the SDK hands them to the exporter) turned into OTLP protobuf bytes the way
//! `opentelemetry-otlp` 0.33 does it:
//!
//! 1. gRPC only: the batch is cloned for each attempt (`TonicTracesClient::export` keeps the
//!    batch in an `Arc` for retries and converts `(*batch).clone()`) — [`clone_batch`];
//! 2. conversion: `opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope`
//!    (every key and string value copied into the protobuf message types) — [`convert`];
//! 3. encoding: prost's `encode_to_vec` (what the HTTP/protobuf exporter sends; tonic's codec
//!    does the same writes into its own buffer) — [`encode`].
//!
//! That is the "before". The "after" is the crate's own exporter (`span_export`), whose CPU work
//! per batch before sending is [`direct_export`]: the batch written as OTLP bytes by
//! `span_encoding` into the exporter's reused buffer, which is the body of every attempt (no
//! copy), and the batch dropped (the SDK hands it over by value; no per-attempt copy).
//!
//! Sending (HTTP/2, the receiver) is not included. See `benches/benches/export.rs` and
//! `bench-driver export` / `bench-driver export-direct`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use opentelemetry_sdk::Resource;
use prost::Message;
use soma_observability::__span_export_bench::BatchEncoder;

/// Spans per batch: the SDK's and our exporter's default `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
pub const BATCH: usize = 1024;

/// The resource an exporter of ours is given: `service.name` and the SDK's `telemetry.sdk.*`.
pub fn sdk_resource() -> Resource {
    Resource::builder().with_service_name("bench").build()
}

/// [`sdk_resource`] as `opentelemetry-otlp` keeps it.
pub fn resource() -> ResourceAttributesWithSchema {
    ResourceAttributesWithSchema::from(&sdk_resource())
}

/// The crate's span exporter's encoder, for [`sdk_resource`].
pub fn encoder() -> BatchEncoder {
    BatchEncoder::new(&sdk_resource())
}

/// A server span as our HTTP layer records it for `GET /users/{n}?page=2&limit=50` from a
/// browser, with a remote parent: 12 attributes, of which 6 string values the request owns
/// (path, query, user agent, client and server address) and 4 integers; no event, no link.
pub fn server_span(n: u64, scope: &InstrumentationScope) -> SpanData {
    let route: Arc<str> = Arc::from("/users/{id}");
    let start =
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000) + Duration::from_nanos(n);
    let attributes = vec![
        KeyValue::new("http.request.method", "GET"),
        KeyValue::new("url.path", format!("/users/{n}")),
        KeyValue::new("url.scheme", "http"),
        KeyValue::new("http.route", Value::String(StringValue::from(route))),
        KeyValue::new("http.response.status_code", 200_i64),
        KeyValue::new("network.protocol.version", "1.1"),
        KeyValue::new("server.address", "api.example.com".to_owned()),
        KeyValue::new("server.port", 8080_i64),
        KeyValue::new("client.address", "10.1.2.3".to_owned()),
        KeyValue::new("client.port", 52_344_i64),
        KeyValue::new(
            "user_agent.original",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/131.0.0.0 Safari/537.36"
                .to_owned(),
        ),
        KeyValue::new("url.query", "page=2&limit=50".to_owned()),
    ];
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(u128::from(n) << 64 | 0x5eed_u128),
            SpanId::from(n | 1 << 63),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::from(n | 1 << 62),
        parent_span_is_remote: true,
        span_kind: SpanKind::Server,
        name: Cow::Owned("GET /users/{id}".to_owned()),
        start_time: start,
        end_time: start + Duration::from_micros(850),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope.clone(),
    }
}

/// The instrumentation scope of our server spans.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("soma-observability")
        .with_version("0.1.0")
        .build()
}

/// A batch of `n` server spans.
pub fn batch(n: usize) -> Vec<SpanData> {
    let scope = scope();
    (0..n as u64).map(|i| server_span(i, &scope)).collect()
}

/// Step 1 (gRPC only): the exporter's per-attempt copy of the batch.
#[inline(never)]
pub fn clone_batch(batch: &[SpanData]) -> Vec<SpanData> {
    batch.to_vec()
}

/// Step 2: `SpanData` → OTLP protobuf messages, as `opentelemetry-otlp` calls it.
#[inline(never)]
pub fn convert(
    batch: Vec<SpanData>,
    resource: &ResourceAttributesWithSchema,
) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(batch, resource),
    }
}

/// Step 3: the messages → protobuf bytes.
#[inline(never)]
pub fn encode(request: &ExportTraceServiceRequest) -> Vec<u8> {
    request.encode_to_vec()
}

/// Steps 2 and 3, and dropping the messages (the HTTP/protobuf exporter's work per batch);
/// returns the body's length.
#[inline(never)]
pub fn convert_and_encode(batch: Vec<SpanData>, resource: &ResourceAttributesWithSchema) -> usize {
    let request = convert(batch, resource);
    encode(&request).len()
}

/// After: the crate's exporter's CPU work on a batch before sending (encode into the reused
/// buffer, hand it out as the body, drop the batch); returns the body's length.
#[inline(never)]
pub fn direct_export(encoder: &mut BatchEncoder, batch: Vec<SpanData>) -> usize {
    let len = direct_encode(encoder, &batch);
    drop_batch(batch);
    len
}

/// The encoding of [`direct_export`]: into the exporter's buffer, handed out as the body and
/// taken back once sent.
#[inline(never)]
pub fn direct_encode(encoder: &mut BatchEncoder, batch: &[SpanData]) -> usize {
    let Ok(body) = encoder.body(batch, false) else {
        return 0;
    };
    let len = std::hint::black_box(&body).len();
    encoder.recycle(body);
    len
}

/// The drop of [`direct_export`]: what the SDK's `SpanData` costs to free, with any exporter.
#[inline(never)]
pub fn drop_batch(batch: Vec<SpanData>) {
    drop(batch);
}
