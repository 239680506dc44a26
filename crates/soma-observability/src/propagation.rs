//! Context propagation with strict W3C `traceparent` validation and size limits.
//!
//! The SDK's `TraceContextPropagator` never panics, but it accepts some `traceparent` forms the
//! W3C Trace Context specification says to ignore (a short span id is zero-padded, for
//! example). [`StrictTraceContext`] checks the header against the specification first: an
//! invalid `traceparent` is ignored (and with it `tracestate`), so the request starts a fresh
//! trace. A `tracestate` longer than [`MAX_TRACESTATE_LEN`] bytes is dropped.
//!
//! `baggage` is read by the SDK (a header over 8 192 bytes is ignored, at most 64 members are
//! kept, values are percent-decoded) and written by [`BoundedBaggage`]: every byte outside the
//! W3C `baggage-octet` set is percent-encoded, `%` included (the SDK leaves `%` as is, so each
//! hop decoded `%25` sequences one level further), and the header stays within the W3C limits,
//! [`MAX_BAGGAGE_MEMBERS`] members and [`MAX_BAGGAGE_BYTES`] bytes: members that do not fit are
//! left out (said once). The SDK re-encoded an 8 000-quote value as a 24 KB header on every
//! downstream call; now no outgoing `baggage` is larger than an incoming one may be.

use std::sync::Arc;

use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

use crate::config::Propagator;

/// The longest `tracestate` kept (the W3C limit: 32 members of at most 256 bytes, 512 bytes
/// recommended for propagation).
pub(crate) const MAX_TRACESTATE_LEN: usize = 512;

/// The most `baggage` members written (the W3C limit, and what the SDK keeps when reading).
pub(crate) const MAX_BAGGAGE_MEMBERS: usize = 64;
/// The longest `baggage` header written (the W3C limit, and what the SDK accepts).
pub(crate) const MAX_BAGGAGE_BYTES: usize = 8192;

const BAGGAGE: &str = "baggage";
const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// W3C Trace Context with strict parsing (see the module docs); a drop-in replacement for the
/// SDK's `TraceContextPropagator`.
#[derive(Debug, Default)]
pub(crate) struct StrictTraceContext {
    inner: TraceContextPropagator,
}

impl TextMapPropagator for StrictTraceContext {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        self.inner.inject_context(cx, injector);
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match extractor.get(TRACEPARENT) {
            Some(value) if is_valid_traceparent(value) => self
                .inner
                .extract_with_context(cx, &LimitedTraceState(extractor)),
            _ => cx.clone(),
        }
    }

    fn fields(&self) -> opentelemetry::propagation::text_map_propagator::FieldIter<'_> {
        self.inner.fields()
    }
}

/// Hides a `tracestate` that is over the size limit.
struct LimitedTraceState<'a>(&'a dyn Extractor);

impl Extractor for LimitedTraceState<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = self.0.get(key)?;
        (key != TRACESTATE || value.len() <= MAX_TRACESTATE_LEN).then_some(value)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys()
    }
}

/// `version-traceid-parentid-flags`, lowercase hex, non-zero ids, version `ff` forbidden; a
/// future version may append fields after a `-`, version `00` may not.
pub(crate) fn is_valid_traceparent(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.len() < 55 {
        return false;
    }
    let hex = |range: std::ops::Range<usize>| {
        bytes[range]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    };
    let zeros = |range: std::ops::Range<usize>| bytes[range].iter().all(|b| *b == b'0');
    let version_ok = hex(0..2) && &bytes[0..2] != b"ff";
    let layout_ok = bytes[2] == b'-' && bytes[35] == b'-' && bytes[52] == b'-';
    let length_ok = if &bytes[0..2] == b"00" {
        bytes.len() == 55
    } else {
        bytes.len() == 55 || bytes[55] == b'-'
    };
    version_ok
        && layout_ok
        && length_ok
        && hex(3..35)
        && hex(36..52)
        && hex(53..55)
        && !zeros(3..35)
        && !zeros(36..52)
}

/// W3C Baggage: the SDK's extraction, and a bounded, lossless injection (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct BoundedBaggage {
    inner: BaggagePropagator,
}

impl TextMapPropagator for BoundedBaggage {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        use opentelemetry::baggage::BaggageExt as _;
        let baggage = cx.baggage();
        let mut header = String::new();
        let mut members = 0;
        let mut left_out = 0;
        let mut member = String::new();
        for (name, (value, metadata)) in baggage {
            member.clear();
            encode_baggage(&mut member, name.as_str().trim(), "");
            member.push('=');
            encode_baggage(&mut member, value.as_str().trim(), "");
            let metadata = metadata.as_str().trim();
            if !metadata.is_empty() {
                member.push(';');
                encode_baggage(&mut member, metadata, ";=");
            }
            let separator = usize::from(!header.is_empty());
            if members == MAX_BAGGAGE_MEMBERS
                || header.len() + separator + member.len() > MAX_BAGGAGE_BYTES
            {
                left_out += 1;
                continue;
            }
            if separator == 1 {
                header.push(',');
            }
            header.push_str(&member);
            members += 1;
        }
        if left_out > 0 {
            crate::exposition::say_once(
                "baggage",
                "left out",
                &format!(
                    "{left_out} baggage member(s) left out of an outgoing request: the W3C limits \
                     are {MAX_BAGGAGE_MEMBERS} members and {MAX_BAGGAGE_BYTES} bytes (said once)"
                ),
            );
        }
        if !header.is_empty() {
            injector.set(BAGGAGE, header);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        self.inner.extract_with_context(cx, extractor)
    }

    fn fields(&self) -> opentelemetry::propagation::text_map_propagator::FieldIter<'_> {
        self.inner.fields()
    }
}

/// Appends `text` with every byte outside the W3C `baggage-octet` set (and `%`) as `%XX`; the
/// bytes in `keep` are written as they are.
fn encode_baggage(out: &mut String, text: &str, keep: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in text.as_bytes() {
        let octet = matches!(byte, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E);
        if (octet && byte != b'%') || keep.as_bytes().contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0F)]));
        }
    }
}

/// The composite propagator of the configured list, built once and shared (cloning is an `Arc`
/// clone): the layer extracts with it and `install` makes it the global propagator.
#[derive(Clone, Debug)]
pub(crate) struct SharedPropagator(Arc<TextMapCompositePropagator>);

impl TextMapPropagator for SharedPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        self.0.inject_context(cx, injector);
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        self.0.extract_with_context(cx, extractor)
    }

    fn fields(&self) -> opentelemetry::propagation::text_map_propagator::FieldIter<'_> {
        self.0.fields()
    }
}

/// The composite propagator for the configured list.
pub(crate) fn build(names: &[Propagator]) -> SharedPropagator {
    let propagators: Vec<Box<dyn TextMapPropagator + Send + Sync>> = names
        .iter()
        .map(|p| -> Box<dyn TextMapPropagator + Send + Sync> {
            match p {
                Propagator::TraceContext => Box::new(StrictTraceContext::default()),
                Propagator::Baggage => Box::new(BoundedBaggage::default()),
            }
        })
        .collect();
    SharedPropagator(Arc::new(TextMapCompositePropagator::new(propagators)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three hops: each service extracts the incoming headers and injects them downstream.
    fn hops(incoming: &str, n: usize) -> Vec<String> {
        use std::collections::HashMap;
        let propagator = build(&[Propagator::Baggage]);
        let mut headers = HashMap::from([(BAGGAGE.to_owned(), incoming.to_owned())]);
        let mut sent = Vec::new();
        for _ in 0..n {
            let cx = propagator.extract(&headers);
            let mut out = HashMap::new();
            propagator.inject_context(&cx, &mut out);
            sent.push(out.get(BAGGAGE).cloned().unwrap_or_default());
            headers = out;
        }
        sent
    }

    #[test]
    fn baggage_is_not_amplified_downstream() {
        // 8 000 quotes: a valid-size header that the SDK re-encoded as 24 KB.
        let incoming = format!("big={},user=alice", "\"".repeat(8000));
        for sent in hops(&incoming, 3) {
            assert!(sent.len() <= MAX_BAGGAGE_BYTES, "{} bytes sent", sent.len());
            assert!(sent.contains("user=alice"), "{sent}");
        }
    }

    #[test]
    fn percent_sequences_survive_every_hop() {
        for sent in hops("k=%2541%20b", 3) {
            assert_eq!(sent, "k=%2541%20b");
        }
    }

    #[test]
    fn traceparent_validation_follows_the_specification() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert!(is_valid_traceparent(&format!(
            "00-{id}-00f067aa0ba902b7-01"
        )));
        assert!(is_valid_traceparent(&format!(
            "01-{id}-00f067aa0ba902b7-01-future"
        )));
        for bad in [
            format!("00-{id}-00f067aa0ba902b-01"),
            format!("00-{id}-00f067aa0ba902b7-01-extra"),
            format!("ff-{id}-00f067aa0ba902b7-01"),
            format!("00-{}-00f067aa0ba902b7-01", id.to_uppercase()),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{id}-0000000000000000-01"),
            format!("01-{id}-00f067aa0ba902b7-01x"),
            "00-short".to_owned(),
        ] {
            assert!(!is_valid_traceparent(&bad), "{bad}");
        }
    }
}
