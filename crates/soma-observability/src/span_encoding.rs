//! A batch of [`SpanData`] as the bytes of an OTLP `ExportTraceServiceRequest`, written
//! straight from the spans.
//!
//! The OTLP exporters of `opentelemetry-otlp` first convert every span into the generated
//! protobuf structs (`opentelemetry-proto`: a `String` or `Vec` per name, id, key and value),
//! then let prost encode them (prost computes the length of every nested message again at each
//! level it is nested in), then drop the structs. This module writes the protobuf wire format
//! directly into one reusable buffer: a size pass records the length of each nested message
//! once, and a write pass copies each string once, from the span into the buffer. No heap
//! allocation per span.
//!
//! The bytes mean exactly what `opentelemetry_proto::transform::trace::tonic::
//! group_spans_by_resource_and_scope` builds: one `ResourceSpans` for the resource, one
//! `ScopeSpans` per instrumentation scope (in the order the scopes first appear in the batch),
//! and each field mapped as that transform maps it (ids, trace state, the `flags` field with the
//! trace flags and the `HAS_IS_REMOTE` / `IS_REMOTE` bits, kind, times in unix nanoseconds,
//! attributes of every value type, events, links, status, dropped counts, schema URLs). A test
//! decodes them with prost and compares them to that transform's output.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use opentelemetry_sdk::Resource;

// Wire types.
const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

/// `SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK` and `..._IS_REMOTE_MASK`.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// Writes batches of spans as OTLP `ExportTraceServiceRequest` bytes (see the
/// [module docs](self)). Keeps its scratch space between batches, and the resource, encoded
/// once.
#[derive(Debug, Default)]
pub(crate) struct SpanEncoder {
    /// The `resource` field of `ResourceSpans` (key, length, `Resource`), encoded once.
    resource: Vec<u8>,
    resource_schema_url: String,
    /// The lengths of the nested messages, from the size pass, in the order the write pass
    /// needs them.
    sizes: Vec<usize>,
    /// Per instrumentation scope of the batch: the index of its first span.
    scopes: Vec<usize>,
    /// Per span: the index of its scope in `scopes`.
    span_scope: Vec<u32>,
    /// Span indices, grouped by scope.
    order: Vec<u32>,
}

impl SpanEncoder {
    /// An encoder for spans of `resource`.
    pub(crate) fn new(resource: &Resource) -> Self {
        let mut encoder = Self::default();
        encoder.set_resource(resource);
        encoder
    }

    /// The resource every following batch is sent with.
    pub(crate) fn set_resource(&mut self, resource: &Resource) {
        let content: usize = resource
            .iter()
            .map(|(key, value)| message_field(kv_size(key.as_str(), value)))
            .sum();
        let out = &mut self.resource;
        out.clear();
        out.reserve(message_field(content));
        put_key(out, 1, LEN);
        put_varint(out, content as u64);
        for (key, value) in resource {
            put_kv(out, 1, key.as_str(), value);
        }
        if out.len() != message_field(content) {
            // Cannot happen (the sizes come from the same attributes); sent without resource
            // attributes rather than malformed.
            out.clear();
        }
        resource
            .schema_url()
            .unwrap_or_default()
            .clone_into(&mut self.resource_schema_url);
    }

    /// Replaces the contents of `out` with the `ExportTraceServiceRequest` of `spans`.
    ///
    /// # Errors
    ///
    /// [`EncodingBug`] if the write pass did not write what the size pass measured (a bug;
    /// `out` must not be sent).
    pub(crate) fn encode(
        &mut self,
        spans: &[SpanData],
        out: &mut Vec<u8>,
    ) -> Result<(), EncodingBug> {
        self.group(spans);
        // Size pass: each nested message's length, once, in write order.
        self.sizes.clear();
        let sizes = &mut self.sizes;
        sizes.push(0);
        let mut resource_spans = self.resource.len() + str_field(&self.resource_schema_url);
        let mut next = 0;
        for &first in &self.scopes {
            let slot = sizes.len();
            sizes.push(0);
            let scope = &spans[first].instrumentation_scope;
            let mut scope_spans = message_field(scope_size(scope))
                + str_field(scope.schema_url().unwrap_or_default());
            let group = &self.order[next..];
            let scope_index = self.span_scope[first];
            for &i in group
                .iter()
                .take_while(|&&i| self.span_scope[i as usize] == scope_index)
            {
                scope_spans += message_field(span_size(sizes, &spans[i as usize]));
                next += 1;
            }
            sizes[slot] = scope_spans;
            resource_spans += message_field(scope_spans);
        }
        sizes[0] = resource_spans;

        // Write pass, into a buffer of exactly the size measured.
        let total = message_field(resource_spans);
        out.clear();
        out.reserve(total);
        let mut sizes = self.sizes.iter().copied();
        let mut size = || sizes.next().unwrap_or_default();
        put_key(out, 1, LEN);
        put_varint(out, size() as u64);
        out.extend_from_slice(&self.resource);
        let mut next = 0;
        for &first in &self.scopes {
            put_key(out, 2, LEN);
            put_varint(out, size() as u64);
            let scope = &spans[first].instrumentation_scope;
            put_key(out, 1, LEN);
            put_varint(out, scope_size(scope) as u64);
            put_scope(out, scope);
            let scope_index = self.span_scope[first];
            for &i in self.order[next..]
                .iter()
                .take_while(|&&i| self.span_scope[i as usize] == scope_index)
            {
                put_span(out, &mut size, &spans[i as usize]);
                next += 1;
            }
            put_str(out, 3, scope.schema_url().unwrap_or_default());
        }
        put_str(out, 3, &self.resource_schema_url);
        if out.len() == total {
            Ok(())
        } else {
            Err(EncodingBug {
                measured: total,
                written: out.len(),
            })
        }
    }

    /// Fills `scopes`, `span_scope` and `order`: spans grouped by scope, scopes in the order
    /// they first appear, spans in batch order within a scope.
    fn group(&mut self, spans: &[SpanData]) {
        self.scopes.clear();
        self.span_scope.clear();
        self.order.clear();
        let mut last: Option<usize> = None;
        for (i, span) in spans.iter().enumerate() {
            let scope = &span.instrumentation_scope;
            let same = |&s: &usize| same_scope(&spans[self.scopes[s]].instrumentation_scope, scope);
            let known = last
                .filter(same)
                .or_else(|| (0..self.scopes.len()).find(same));
            let index = if let Some(s) = known {
                s
            } else {
                self.scopes.push(i);
                self.scopes.len() - 1
            };
            last = Some(index);
            self.span_scope
                .push(u32::try_from(index).unwrap_or(u32::MAX));
        }
        let all = 0..u32::try_from(spans.len()).unwrap_or(u32::MAX);
        if self.scopes.len() <= 1 {
            self.order.extend(all);
            return;
        }
        // A counting sort by scope; stable.
        let mut starts = vec![0_usize; self.scopes.len() + 1];
        for &s in &self.span_scope {
            starts[s as usize + 1] += 1;
        }
        for s in 1..starts.len() {
            starts[s] += starts[s - 1];
        }
        self.order.resize(spans.len(), 0);
        for (i, &s) in all.zip(&self.span_scope) {
            let at = &mut starts[s as usize];
            self.order[*at] = i;
            *at += 1;
        }
    }
}

/// The write pass did not write what the size pass measured: a bug in this module.
#[derive(Debug, thiserror::Error)]
#[error(
    "the span encoder measured {measured} bytes but wrote {written}; the batch was not sent \
     (a bug in soma-observability's span_encoding: please report it)"
)]
pub(crate) struct EncodingBug {
    measured: usize,
    written: usize,
}

/// `a == b`, faster for the usual case: the spans of one tracer share its scope's strings.
fn same_scope(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    fn same(a: &str, b: &str) -> bool {
        (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
    }
    let same_opt = |a: Option<&str>, b: Option<&str>| match (a, b) {
        (Some(a), Some(b)) => same(a, b),
        (None, None) => true,
        _ => false,
    };
    if !(same(a.name(), b.name())
        && same_opt(a.version(), b.version())
        && same_opt(a.schema_url(), b.schema_url()))
    {
        return false;
    }
    // Attributes in the same order are equal; in another order, the SDK's equality decides.
    a.attributes().eq(b.attributes()) || a == b
}

// ---- sizes ----

#[inline]
fn varint_len(value: u64) -> usize {
    // 1 byte per 7 bits, at least one; most values here are lengths under 128.
    if value < 0x80 {
        1
    } else {
        // prost's formula: ceil(bits / 7) without a division.
        ((((value | 1).leading_zeros() ^ 63) * 9 + 73) / 64) as usize
    }
}

/// A length-delimited field (one-byte key) holding `len` bytes.
#[inline]
fn message_field(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// A string field (one-byte key), omitted when empty as proto3 does.
#[inline]
fn str_field(value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        message_field(value.len())
    }
}

fn u32_field(value: u32) -> usize {
    if value == 0 {
        0
    } else {
        1 + varint_len(u64::from(value))
    }
}

/// A time as a fixed64 field: omitted when [`to_nanos`] is 0, that is at or before the epoch.
#[inline]
fn time_field(time: SystemTime) -> usize {
    if time > UNIX_EPOCH {
        9
    } else {
        0
    }
}

fn trace_state_len(state: &TraceState) -> usize {
    let mut len = 0;
    for (i, (key, value)) in state.into_iter().enumerate() {
        len += usize::from(i > 0) + key.len() + 1 + value.len();
    }
    len
}

fn trace_state_field(state: &TraceState) -> usize {
    let len = trace_state_len(state);
    if len == 0 {
        0
    } else {
        message_field(len)
    }
}

/// The content of a `KeyValue`.
#[inline]
fn kv_size(key: &str, value: &Value) -> usize {
    str_field(key) + message_field(any_value_size(value))
}

fn attributes_size(attributes: &[KeyValue]) -> usize {
    attributes
        .iter()
        .map(|kv| message_field(kv_size(kv.key.as_str(), &kv.value)))
        .sum()
}

/// The content of an `AnyValue`.
#[inline]
fn any_value_size(value: &Value) -> usize {
    match value {
        Value::Bool(_) => 2,
        Value::I64(v) => 1 + varint_len(u64::from_ne_bytes(v.to_ne_bytes())),
        Value::F64(_) => 9,
        Value::String(v) => message_field(v.as_str().len()),
        Value::Array(array) => message_field(array_size(array)),
        _ => 0,
    }
}

/// The content of an `ArrayValue`: one `AnyValue` message per element.
fn array_size(array: &Array) -> usize {
    match array {
        Array::Bool(values) => values.len() * message_field(2),
        Array::I64(values) => values
            .iter()
            .map(|v| message_field(1 + varint_len(u64::from_ne_bytes(v.to_ne_bytes()))))
            .sum(),
        Array::F64(values) => values.len() * message_field(9),
        Array::String(values) => values
            .iter()
            .map(|v| message_field(message_field(v.as_str().len())))
            .sum(),
        _ => 0,
    }
}

fn scope_size(scope: &InstrumentationScope) -> usize {
    str_field(scope.name())
        + str_field(scope.version().unwrap_or_default())
        + scope
            .attributes()
            .map(|kv| message_field(kv_size(kv.key.as_str(), &kv.value)))
            .sum::<usize>()
}

/// The content of a `Span`; records its length, then its events' and links', in `sizes`.
fn span_size(sizes: &mut Vec<usize>, span: &SpanData) -> usize {
    let slot = sizes.len();
    sizes.push(0);
    let context = &span.span_context;
    let mut len = 18 // trace_id
        + 10 // span_id
        + trace_state_field(context.trace_state())
        + if span.parent_span_id == SpanId::INVALID { 0 } else { 10 }
        + 6 // flags: a two-byte key (field 16) and a fixed32, never zero
        + str_field(&span.name)
        + 2 // kind: never SPAN_KIND_UNSPECIFIED
        + time_field(span.start_time)
        + time_field(span.end_time)
        + attributes_size(&span.attributes)
        + u32_field(span.dropped_attributes_count)
        + u32_field(span.events.dropped_count)
        + u32_field(span.links.dropped_count)
        + message_field(status_size(&span.status));
    len += events_size(sizes, &span.events);
    len += links_size(sizes, &span.links);
    sizes[slot] = len;
    len
}

fn events_size(sizes: &mut Vec<usize>, events: &SpanEvents) -> usize {
    let mut len = 0;
    for event in &events.events {
        let event = time_field(event.timestamp)
            + str_field(&event.name)
            + attributes_size(&event.attributes)
            + u32_field(event.dropped_attributes_count);
        sizes.push(event);
        len += message_field(event);
    }
    len
}

fn links_size(sizes: &mut Vec<usize>, links: &SpanLinks) -> usize {
    let mut len = 0;
    for link in &links.links {
        let link = 18
            + 10
            + trace_state_field(link.span_context.trace_state())
            + attributes_size(&link.attributes)
            + u32_field(link.dropped_attributes_count)
            + 5; // flags: fixed32, never zero
        sizes.push(link);
        len += message_field(link);
    }
    len
}

fn status_code(status: &Status) -> u64 {
    match status {
        Status::Unset => 0,
        Status::Ok => 1,
        Status::Error { .. } => 2,
    }
}

fn status_message(status: &Status) -> &str {
    match status {
        Status::Error { description } => description,
        _ => "",
    }
}

fn status_size(status: &Status) -> usize {
    let code = status_code(status);
    str_field(status_message(status)) + if code == 0 { 0 } else { 2 }
}

fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// As the transform does: nanoseconds since the epoch, 0 before it.
fn to_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The `flags` of a span or link, as the transform builds them.
fn flags(context: &SpanContext, remote: bool) -> u32 {
    u32::from(context.trace_flags().to_u8()) | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 }
}

// ---- writing ----

#[allow(clippy::cast_possible_truncation)] // 7 bits at a time, by design
#[inline]
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[inline]
fn put_key(out: &mut Vec<u8>, field: u64, wire: u64) {
    put_varint(out, (field << 3) | wire);
}

#[inline]
fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[inline]
fn put_str(out: &mut Vec<u8>, field: u64, value: &str) {
    if !value.is_empty() {
        put_bytes(out, field, value.as_bytes());
    }
}

#[inline]
fn put_u32(out: &mut Vec<u8>, field: u64, value: u32) {
    if value != 0 {
        put_key(out, field, VARINT);
        put_varint(out, u64::from(value));
    }
}

#[inline]
fn put_fixed64(out: &mut Vec<u8>, field: u64, value: u64) {
    if value != 0 {
        put_key(out, field, FIXED64);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

#[inline]
fn put_fixed32(out: &mut Vec<u8>, field: u64, value: u32) {
    put_key(out, field, FIXED32);
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_trace_state(out: &mut Vec<u8>, field: u64, state: &TraceState) {
    let len = trace_state_len(state);
    if len == 0 {
        return;
    }
    put_key(out, field, LEN);
    put_varint(out, len as u64);
    for (i, (key, value)) in state.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
    }
}

/// A `KeyValue` message as field `field`.
// Inlined into its callers: the call itself was ~20 % of an attribute's cost (callgrind).
#[allow(clippy::inline_always)]
#[inline(always)]
fn put_kv(out: &mut Vec<u8>, field: u64, key: &str, value: &Value) {
    let value_len = any_value_size(value);
    let kv_len = str_field(key) + message_field(value_len);
    // The common case, a short key and scalar or short string value: every length fits one
    // byte, and the fixed bytes go in two or three writes instead of one per byte.
    if field < 16 && kv_len < 0x80 && !key.is_empty() {
        #[allow(clippy::cast_possible_truncation)] // all < 0x80, checked above
        let (kv_len, key_len, value_len) = (kv_len as u8, key.len() as u8, value_len as u8);
        #[allow(clippy::cast_possible_truncation)] // field < 16
        out.extend_from_slice(&[((field << 3) | LEN) as u8, kv_len, 0x0a, key_len]);
        out.extend_from_slice(key.as_bytes());
        match value {
            Value::String(v) => {
                let v = v.as_str().as_bytes();
                #[allow(clippy::cast_possible_truncation)] // < value_len < 0x80
                out.extend_from_slice(&[0x12, value_len, 0x0a, v.len() as u8]);
                out.extend_from_slice(v);
            }
            Value::I64(v) => {
                out.extend_from_slice(&[0x12, value_len, 0x18]);
                put_varint(out, u64::from_ne_bytes(v.to_ne_bytes()));
            }
            Value::Bool(v) => out.extend_from_slice(&[0x12, 2, 0x10, u8::from(*v)]),
            other => {
                out.extend_from_slice(&[0x12, value_len]);
                put_any_value(out, other);
            }
        }
        return;
    }
    put_key(out, field, LEN);
    put_varint(out, kv_len as u64);
    put_str(out, 1, key);
    put_key(out, 2, LEN);
    put_varint(out, value_len as u64);
    put_any_value(out, value);
}

fn put_attributes(out: &mut Vec<u8>, field: u64, attributes: &[KeyValue]) {
    for kv in attributes {
        put_kv(out, field, kv.key.as_str(), &kv.value);
    }
}

/// The content of an `AnyValue` (its `value` oneof, always written, even when zero).
fn put_any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(v) => {
            put_key(out, 2, VARINT);
            out.push(u8::from(*v));
        }
        Value::I64(v) => {
            put_key(out, 3, VARINT);
            put_varint(out, u64::from_ne_bytes(v.to_ne_bytes()));
        }
        Value::F64(v) => {
            put_key(out, 4, FIXED64);
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        Value::String(v) => put_bytes(out, 1, v.as_str().as_bytes()),
        Value::Array(array) => {
            put_key(out, 5, LEN);
            put_varint(out, array_size(array) as u64);
            put_array(out, array);
        }
        _ => {}
    }
}

fn put_array(out: &mut Vec<u8>, array: &Array) {
    // Each element is an `AnyValue` message in field 1 of `ArrayValue`.
    match array {
        Array::Bool(values) => {
            for &v in values {
                out.extend_from_slice(&[0x0a, 2, 0x10, u8::from(v)]);
            }
        }
        Array::I64(values) => {
            for &v in values {
                let v = u64::from_ne_bytes(v.to_ne_bytes());
                out.push(0x0a);
                put_varint(out, (1 + varint_len(v)) as u64);
                put_key(out, 3, VARINT);
                put_varint(out, v);
            }
        }
        Array::F64(values) => {
            for &v in values {
                out.extend_from_slice(&[0x0a, 9, 0x21]);
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        Array::String(values) => {
            for v in values {
                out.push(0x0a);
                put_varint(out, message_field(v.as_str().len()) as u64);
                put_bytes(out, 1, v.as_str().as_bytes());
            }
        }
        _ => {}
    }
}

/// The content of an `InstrumentationScope`.
fn put_scope(out: &mut Vec<u8>, scope: &InstrumentationScope) {
    put_str(out, 1, scope.name());
    put_str(out, 2, scope.version().unwrap_or_default());
    for kv in scope.attributes() {
        put_kv(out, 3, kv.key.as_str(), &kv.value);
    }
}

/// A `Span` as field 2 of `ScopeSpans`; `size` yields the lengths the size pass recorded.
fn put_span(out: &mut Vec<u8>, size: &mut impl FnMut() -> usize, span: &SpanData) {
    let len = size();
    put_key(out, 2, LEN);
    put_varint(out, len as u64);
    let start = out.len();
    let context = &span.span_context;
    put_bytes(out, 1, &context.trace_id().to_bytes());
    put_bytes(out, 2, &context.span_id().to_bytes());
    put_trace_state(out, 3, context.trace_state());
    if span.parent_span_id != SpanId::INVALID {
        put_bytes(out, 4, &span.parent_span_id.to_bytes());
    }
    put_str(out, 5, &span.name);
    put_key(out, 6, VARINT);
    put_varint(out, kind(&span.span_kind));
    put_fixed64(out, 7, to_nanos(span.start_time));
    put_fixed64(out, 8, to_nanos(span.end_time));
    put_attributes(out, 9, &span.attributes);
    put_u32(out, 10, span.dropped_attributes_count);
    for event in &span.events.events {
        put_key(out, 11, LEN);
        put_varint(out, size() as u64);
        put_fixed64(out, 1, to_nanos(event.timestamp));
        put_str(out, 2, &event.name);
        put_attributes(out, 3, &event.attributes);
        put_u32(out, 4, event.dropped_attributes_count);
    }
    put_u32(out, 12, span.events.dropped_count);
    for link in &span.links.links {
        let context = &link.span_context;
        put_key(out, 13, LEN);
        put_varint(out, size() as u64);
        put_bytes(out, 1, &context.trace_id().to_bytes());
        put_bytes(out, 2, &context.span_id().to_bytes());
        put_trace_state(out, 3, context.trace_state());
        put_attributes(out, 4, &link.attributes);
        put_u32(out, 5, link.dropped_attributes_count);
        put_fixed32(out, 6, flags(context, context.is_remote()));
    }
    put_u32(out, 14, span.links.dropped_count);
    put_key(out, 15, LEN);
    put_varint(out, status_size(&span.status) as u64);
    put_str(out, 2, status_message(&span.status));
    let code = status_code(&span.status);
    if code != 0 {
        put_key(out, 3, VARINT);
        put_varint(out, code);
    }
    // Last, as prost writes fields in tag order.
    put_fixed32(out, 16, flags(context, span.parent_span_is_remote));
    debug_assert_eq!(
        out.len() - start,
        len,
        "span size pass and write pass disagree"
    );
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use opentelemetry::trace::{
        Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    use opentelemetry_sdk::Resource;
    use prost::Message;

    use super::*;

    /// Every value type, including the edge values of each.
    fn all_values() -> Vec<KeyValue> {
        vec![
            KeyValue::new("bool.true", true),
            KeyValue::new("bool.false", false),
            KeyValue::new("i64.zero", 0_i64),
            KeyValue::new("i64.negative", -42_i64),
            KeyValue::new("i64.max", i64::MAX),
            KeyValue::new("i64.min", i64::MIN),
            KeyValue::new("f64", 3.5_f64),
            KeyValue::new("f64.zero", 0.0_f64),
            KeyValue::new("f64.nan", f64::NAN),
            KeyValue::new("string", "value"),
            KeyValue::new("string.empty", ""),
            KeyValue::new("string.utf8", "héllo wörld ✓ 日本"),
            KeyValue::new("string.long", "x".repeat(300)),
            KeyValue::new("", "empty key"),
            KeyValue::new("array.bool", Value::Array(Array::Bool(vec![true, false]))),
            KeyValue::new("array.i64", Value::Array(Array::I64(vec![0, -1, 1 << 40]))),
            KeyValue::new("array.f64", Value::Array(Array::F64(vec![0.0, -2.25]))),
            KeyValue::new(
                "array.string",
                Value::Array(Array::String(vec![
                    StringValue::from(""),
                    StringValue::from("ünïcode"),
                    StringValue::from("y".repeat(200)),
                ])),
            ),
            KeyValue::new("array.empty", Value::Array(Array::I64(vec![]))),
        ]
    }

    fn context(
        trace: u128,
        span: u64,
        flags: TraceFlags,
        remote: bool,
        state: &str,
    ) -> SpanContext {
        let state: TraceState = if state.is_empty() {
            TraceState::default()
        } else {
            state.parse().unwrap()
        };
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            flags,
            remote,
            state,
        )
    }

    #[allow(clippy::too_many_lines)]
    fn batch() -> Vec<SpanData> {
        let http = InstrumentationScope::builder("http-server")
            .with_version("1.2.3")
            .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
            .with_attributes([KeyValue::new("scope.attr", true)])
            .build();
        let bare = InstrumentationScope::builder("bare").build();
        let epoch = UNIX_EPOCH;
        let kinds = [
            SpanKind::Server,
            SpanKind::Client,
            SpanKind::Internal,
            SpanKind::Producer,
            SpanKind::Consumer,
        ];
        let statuses = [
            Status::Unset,
            Status::Ok,
            Status::error("boom: ünïcode"),
            Status::error(""),
        ];
        let mut spans = Vec::new();
        for i in 0..12_u64 {
            let kind = kinds[(i % 5) as usize].clone();
            let status = statuses[(i % 4) as usize].clone();
            let (parent, parent_remote) = match i % 3 {
                0 => (SpanId::INVALID, false),
                1 => (SpanId::from(0x1111 + i), true),
                _ => (SpanId::from(0x2222 + i), false),
            };
            let events = if i % 2 == 0 {
                let mut events = SpanEvents::default();
                events.events = vec![
                    Event::new(
                        "exception",
                        epoch + Duration::from_nanos(1_500 + i),
                        all_values(),
                        3,
                    ),
                    Event::new("", epoch, vec![], 0),
                ];
                events.dropped_count = u32::try_from(i).unwrap();
                events
            } else {
                SpanEvents::default()
            };
            let links = if i % 3 == 1 {
                let mut links = SpanLinks::default();
                links.links = vec![
                    Link::new(
                        context(
                            0xaa00 + u128::from(i),
                            0xbb,
                            TraceFlags::SAMPLED,
                            true,
                            "k=v,k2=v2",
                        ),
                        vec![KeyValue::new("link.attr", "linked")],
                        5,
                    ),
                    Link::new(
                        context(0xcc, 0xdd, TraceFlags::default(), false, ""),
                        vec![],
                        0,
                    ),
                ];
                links.dropped_count = 6;
                links
            } else {
                SpanLinks::default()
            };
            spans.push(SpanData {
                span_context: context(
                    0x1122_3344_5566_7788_99aa_bbcc_ddee_ff00 + u128::from(i),
                    0x1020_3040_5060_7080 + i,
                    if i == 5 {
                        TraceFlags::default()
                    } else {
                        TraceFlags::SAMPLED
                    },
                    false,
                    if i == 4 { "vendor=span,other=x" } else { "" },
                ),
                parent_span_id: parent,
                parent_span_is_remote: parent_remote,
                span_kind: kind,
                name: if i == 7 {
                    Cow::Borrowed("")
                } else {
                    Cow::Owned(format!("GET /items/{{id}} ✓ {i}"))
                },
                start_time: epoch + Duration::from_nanos(1_700_000_000_000_000_000 + i),
                end_time: if i == 3 {
                    epoch // zero: omitted, as prost does
                } else {
                    epoch + Duration::from_nanos(1_700_000_000_123_456_789 + i)
                },
                attributes: if i == 6 { vec![] } else { all_values() },
                dropped_attributes_count: u32::try_from(i % 2).unwrap() * 7,
                events,
                links,
                status,
                // Interleaved: scopes are grouped in the order they first appear.
                instrumentation_scope: if i % 4 == 1 {
                    bare.clone()
                } else {
                    http.clone()
                },
            });
        }
        spans
    }

    fn resource() -> Resource {
        Resource::builder_empty()
            .with_schema_url(
                [
                    KeyValue::new("service.name", "gateway"),
                    KeyValue::new("service.version", "1.0 ✓"),
                    KeyValue::new("host.cores", 2_i64),
                ],
                "https://opentelemetry.io/schemas/1.30.0",
            )
            .build()
    }

    fn expected(spans: Vec<SpanData>, resource: &Resource) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans,
                &ResourceAttributesWithSchema::from(resource),
            ),
        }
    }

    /// NaN != NaN: compare the encodings of both messages' re-encoding, plus the messages with
    /// the NaN taken out.
    fn assert_same(bytes: &[u8], expected: &ExportTraceServiceRequest) {
        let decoded = ExportTraceServiceRequest::decode(bytes).unwrap();
        assert_eq!(decoded.encode_to_vec().len(), bytes.len());
        assert_eq!(decoded.encode_to_vec(), expected.encode_to_vec());
        let strip = |mut m: ExportTraceServiceRequest| {
            for rs in &mut m.resource_spans {
                for ss in &mut rs.scope_spans {
                    for span in &mut ss.spans {
                        span.attributes.retain(|kv| kv.key != "f64.nan");
                        for event in &mut span.events {
                            event.attributes.retain(|kv| kv.key != "f64.nan");
                        }
                    }
                }
            }
            m
        };
        assert_eq!(strip(decoded), strip(expected.clone()));
    }

    #[test]
    fn bytes_decode_to_what_the_opentelemetry_transform_builds() {
        let resource = resource();
        let spans = batch();
        let mut encoder = SpanEncoder::new(&resource);
        let mut out = Vec::new();
        encoder.encode(&spans, &mut out).unwrap();
        let expected = expected(spans, &resource);
        // The batch covers what it should.
        let rs = &expected.resource_spans[0];
        assert_eq!(rs.scope_spans.len(), 2);
        assert!(!rs.schema_url.is_empty());
        assert_same(&out, &expected);
        // And prost agrees byte for byte (same field order), NaN included.
        let theirs = expected.encode_to_vec();
        let first = out.iter().zip(&theirs).position(|(a, b)| a != b);
        assert_eq!(
            first,
            None,
            "{:?} vs {:?}",
            first.map(|i| &out[i.saturating_sub(8)..i + 8]),
            first.map(|i| &theirs[i.saturating_sub(8)..i + 8])
        );
    }

    #[test]
    fn the_encoder_is_reused_across_batches_and_resources() {
        let mut encoder = SpanEncoder::new(&Resource::builder_empty().build());
        let mut out = Vec::new();
        let spans = batch();
        encoder.encode(&spans[..3], &mut out).unwrap();
        assert_same(
            &out,
            &expected(spans[..3].to_vec(), &Resource::builder_empty().build()),
        );
        let resource = resource();
        encoder.set_resource(&resource);
        for n in [0, 1, 5, 12] {
            encoder.encode(&spans[..n], &mut out).unwrap();
            assert_same(&out, &expected(spans[..n].to_vec(), &resource));
        }
    }

    #[test]
    fn scopes_that_differ_only_in_attribute_order_are_one_scope_as_in_the_transform() {
        let a = InstrumentationScope::builder("lib")
            .with_attributes([KeyValue::new("a", 1_i64), KeyValue::new("b", 2_i64)])
            .build();
        let b = InstrumentationScope::builder(String::from("lib"))
            .with_attributes([KeyValue::new("b", 2_i64), KeyValue::new("a", 1_i64)])
            .build();
        let c = InstrumentationScope::builder("lib")
            .with_version("2")
            .build();
        let mut spans = batch();
        spans.truncate(3);
        spans[0].instrumentation_scope = a;
        spans[1].instrumentation_scope = b;
        spans[2].instrumentation_scope = c;
        let resource = resource();
        let mut out = Vec::new();
        SpanEncoder::new(&resource)
            .encode(&spans, &mut out)
            .unwrap();
        let expected = expected(spans, &resource);
        assert_eq!(expected.resource_spans[0].scope_spans.len(), 2);
        assert_same(&out, &expected);
    }

    #[test]
    fn varint_lengths_match_the_encoding() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "{value}");
        }
    }
}
