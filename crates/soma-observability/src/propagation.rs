//! Context propagation with strict W3C `traceparent` validation and size limits.
//!
//! The SDK's `TraceContextPropagator` never panics, but it accepts some `traceparent` forms the
//! W3C Trace Context specification says to ignore (a short span id is zero-padded, for
//! example). [`StrictTraceContext`] checks the header against the specification first: an
//! invalid `traceparent` is ignored (and with it `tracestate`), so the request starts a fresh
//! trace. A `tracestate` longer than [`MAX_TRACESTATE_LEN`] bytes is dropped; `baggage` is
//! limited by the SDK (at most 180 members and 8192 bytes).

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
                Propagator::Baggage => Box::new(BaggagePropagator::new()),
            }
        })
        .collect();
    SharedPropagator(Arc::new(TextMapCompositePropagator::new(propagators)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
