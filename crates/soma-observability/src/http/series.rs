//! Recording a request's measurements without hashing an attribute set per request.
//!
//! The SDK resolves the attributes of every `record(value, &attributes)` call with a hash-map
//! lookup (`SipHash` over every key and value): with six attributes and four instruments that is
//! most of the cost of a request. Here each series is bound once, the first time its
//! (route, method, scheme, version, status) is seen, and later requests find it with one lookup
//! keyed by a packed integer: the in-flight gauge's series sit in a fixed array indexed by
//! (method, scheme); the histograms' series in a small map on the interned route.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use opentelemetry::metrics::{BoundHistogram, BoundUpDownCounter};
use opentelemetry::{KeyValue, StringValue};
use opentelemetry_semantic_conventions::attribute as semconv;

use super::attributes::{Labels, Route, METHODS, SCHEMES};
use super::layer::HttpInstruments;

/// At most this many histogram series are bound (the SDK keeps 2000 attribute sets per
/// instrument); later ones are recorded the ordinary way.
const MAX_BOUND_SERIES: usize = 2000;

/// The in-flight gauge's series, one per (method, scheme), bound on first use.
pub(crate) struct InFlight {
    series: [OnceLock<BoundUpDownCounter<i64>>; METHODS.len() * SCHEMES.len()],
}

impl Default for InFlight {
    fn default() -> Self {
        Self {
            series: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

/// One bound series of the request histograms.
#[derive(Debug)]
pub(crate) struct Series {
    attributes: Box<[KeyValue]>,
    duration: BoundHistogram<f64>,
    response_body_size: BoundHistogram<u64>,
    /// Bound on first use: a route whose request sizes are never known has no such series.
    request_body_size: OnceLock<BoundHistogram<u64>>,
}

/// What one finished request recorded.
pub(crate) struct Measurements {
    pub(crate) duration: f64,
    pub(crate) request_body_size: Option<u64>,
    pub(crate) response_body_size: u64,
}

impl HttpInstruments {
    /// Adds `delta` to the in-flight gauge of (method, scheme).
    pub(crate) fn in_flight(&self, labels: Labels, delta: i64) {
        let Some(slot) = self.in_flight.series.get(labels.method_scheme()) else {
            return;
        };
        slot.get_or_init(|| {
            self.active_requests.bind(&[
                KeyValue::new(semconv::HTTP_REQUEST_METHOD, labels.method()),
                KeyValue::new(semconv::URL_SCHEME, labels.scheme()),
            ])
        })
        .add(delta);
    }

    /// Records a request that got a response with `status`.
    pub(crate) fn record_response(
        &self,
        route: &Route,
        labels: Labels,
        status: u16,
        measurements: &Measurements,
    ) {
        let key = labels.series_key(status);
        if let Some((first, series)) = route.first_series.get() {
            if *first == key {
                self.record_series(series, measurements);
                return;
            }
        }
        if let Ok(series) = route.series.read() {
            if let Some(series) = series.get(&key) {
                self.record_series(series, measurements);
                return;
            }
        }
        let error_type = (status >= 500).then(|| StringValue::from(status.to_string()));
        let attributes = attributes(labels, Some(status), route.value(), error_type);
        if !route.cached || !self.reserve_series() {
            self.record_unbound(&attributes, measurements);
            return;
        }
        let Ok(mut map) = route.series.write() else {
            self.record_unbound(&attributes, measurements);
            return;
        };
        let series = map.entry(key).or_insert_with(|| {
            Arc::new(Series {
                duration: self.duration.bind(&attributes),
                response_body_size: self.response_body_size.bind(&attributes),
                request_body_size: OnceLock::new(),
                attributes: attributes.into_boxed_slice(),
            })
        });
        route.first_series.get_or_init(|| (key, Arc::clone(series)));
        self.record_series(series, measurements);
    }

    /// Takes one of the [`MAX_BOUND_SERIES`] places, if one is left.
    fn reserve_series(&self) -> bool {
        self.bound_series
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_BOUND_SERIES).then_some(n + 1)
            })
            .is_ok()
    }

    fn record_series(&self, series: &Series, measurements: &Measurements) {
        series.duration.record(measurements.duration);
        series
            .response_body_size
            .record(measurements.response_body_size);
        if let Some(size) = measurements.request_body_size {
            series
                .request_body_size
                .get_or_init(|| self.request_body_size.bind(&series.attributes))
                .record(size);
        }
    }

    /// Records with attributes resolved by the SDK: for failures and past the bound limit.
    pub(crate) fn record_unbound(&self, attributes: &[KeyValue], measurements: &Measurements) {
        self.duration.record(measurements.duration, attributes);
        self.response_body_size
            .record(measurements.response_body_size, attributes);
        if let Some(size) = measurements.request_body_size {
            self.request_body_size.record(size, attributes);
        }
    }
}

/// The histograms' attributes, in a fixed order.
pub(crate) fn attributes(
    labels: Labels,
    status: Option<u16>,
    route: Option<&StringValue>,
    error_type: Option<StringValue>,
) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(6);
    attributes.push(KeyValue::new(semconv::HTTP_REQUEST_METHOD, labels.method()));
    attributes.push(KeyValue::new(semconv::URL_SCHEME, labels.scheme()));
    attributes.push(KeyValue::new(
        semconv::NETWORK_PROTOCOL_VERSION,
        labels.version(),
    ));
    if let Some(status) = status {
        attributes.push(KeyValue::new(
            semconv::HTTP_RESPONSE_STATUS_CODE,
            i64::from(status),
        ));
    }
    if let Some(route) = route {
        attributes.push(KeyValue::new(semconv::HTTP_ROUTE, route.clone()));
    }
    if let Some(error_type) = error_type {
        attributes.push(KeyValue::new(semconv::ERROR_TYPE, error_type));
    }
    attributes
}
