//! Recording a request's measurements without hashing an attribute set per request.
//!
//! The SDK resolves the attributes of every `record(value, &attributes)` call with a hash-map
//! lookup (`SipHash` over every key and value): with six attributes and four instruments that is
//! most of the cost of a request. Here each series is bound once, the first time its
//! (route, method, scheme, version, status) is seen, and later requests find it with one lookup
//! keyed by a packed integer: the in-flight gauge's series sit in a fixed array indexed by
//! (method, scheme); the histograms' series in a small map on the interned route.
//!
//! The histograms are the SDK's own, not the exemplar-keeping wrappers of
//! [`crate::metrics`]: the layer holds the request's server span and offers it to each bound
//! series' exemplars itself, instead of every record looking up the current context.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use opentelemetry::metrics::{BoundUpDownCounter, Histogram, Meter, UpDownCounter};
use opentelemetry::trace::SpanContext;
use opentelemetry::{KeyValue, StringValue};
use opentelemetry_semantic_conventions::attribute as semconv;
use opentelemetry_semantic_conventions::metric as semconv_metric;

use super::attributes::{Labels, METHODS};
use super::routes::Route;
use super::scheme::SCHEMES;
use super::series::{attributes, RequestBodySeries, Series};
use crate::exemplars::{ExemplarStore, HistogramExemplars};
use crate::metrics::{BYTES_BUCKETS, SECONDS_BUCKETS};

/// At most this many histogram series are bound (the SDK keeps 2000 attribute sets per
/// instrument); later ones are recorded the ordinary way.
const MAX_BOUND_SERIES: usize = 2000;

/// The HTTP server instruments of one layer, and the series it bound.
pub(crate) struct HttpInstruments {
    duration: Histogram<f64>,
    active_requests: UpDownCounter<i64>,
    request_body_size: Histogram<u64>,
    response_body_size: Histogram<u64>,
    /// The in-flight gauge's bound series.
    in_flight: InFlight,
    /// How many histogram series are bound.
    bound_series: AtomicUsize,
    /// Each histogram's exemplars (`None`: exemplars are off).
    exemplars: HttpExemplars,
}

/// The exemplars of the three request histograms.
struct HttpExemplars {
    duration: Option<HistogramExemplars>,
    request_body_size: Option<HistogramExemplars>,
    response_body_size: Option<HistogramExemplars>,
}

impl HttpInstruments {
    /// The instruments of `meter` (the SDK's, of the instrumentation scope `scope`), keeping
    /// exemplars in `exemplars`.
    pub(crate) fn new(meter: &Meter, exemplars: &Arc<ExemplarStore>, scope: &str) -> Self {
        let exemplars_of = |name: &str, bounds: &[f64]| {
            HistogramExemplars::new(exemplars, scope, name, Some(bounds))
        };
        Self {
            duration: meter
                .f64_histogram(semconv_metric::HTTP_SERVER_REQUEST_DURATION)
                .with_unit("s")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .with_description("Duration of HTTP server requests, response body included.")
                .build(),
            active_requests: meter
                .i64_up_down_counter(semconv_metric::HTTP_SERVER_ACTIVE_REQUESTS)
                .with_unit("{request}")
                .with_description("Number of HTTP server requests in flight.")
                .build(),
            request_body_size: meter
                .u64_histogram(semconv_metric::HTTP_SERVER_REQUEST_BODY_SIZE)
                .with_unit("By")
                .with_boundaries(BYTES_BUCKETS.to_vec())
                .with_description("Size of HTTP server request bodies.")
                .build(),
            response_body_size: meter
                .u64_histogram(semconv_metric::HTTP_SERVER_RESPONSE_BODY_SIZE)
                .with_unit("By")
                .with_boundaries(BYTES_BUCKETS.to_vec())
                .with_description("Size of HTTP server response bodies.")
                .build(),
            in_flight: InFlight::default(),
            bound_series: AtomicUsize::new(0),
            exemplars: HttpExemplars {
                duration: exemplars_of(
                    semconv_metric::HTTP_SERVER_REQUEST_DURATION,
                    SECONDS_BUCKETS,
                ),
                request_body_size: exemplars_of(
                    semconv_metric::HTTP_SERVER_REQUEST_BODY_SIZE,
                    BYTES_BUCKETS,
                ),
                response_body_size: exemplars_of(
                    semconv_metric::HTTP_SERVER_RESPONSE_BODY_SIZE,
                    BYTES_BUCKETS,
                ),
            },
        }
    }

    /// Whether measurements may become exemplars at all.
    pub(crate) fn keeps_exemplars(&self) -> bool {
        self.exemplars.duration.is_some()
    }

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

    /// Records a request that got a response with `status`; `span` is the span its
    /// measurements may become exemplars of.
    pub(crate) fn record_response(
        &self,
        route: &Route,
        labels: Labels,
        status: u16,
        measurements: &Measurements,
        span: Option<&SpanContext>,
    ) {
        let key = labels.series_key(status);
        if let Some((first, series)) = route.first_series.get() {
            if *first == key {
                self.record_series(series, measurements, span);
                return;
            }
        }
        if let Ok(series) = route.series.read() {
            if let Some(series) = series.get(&key) {
                self.record_series(series, measurements, span);
                return;
            }
        }
        let error_type = (status >= 500).then(|| StringValue::from(status.to_string()));
        let attributes = attributes(labels, Some(status), route.value(), error_type);
        if !route.cached || !self.reserve_series() {
            self.record_unbound(&attributes, measurements, span);
            return;
        }
        let Ok(mut map) = route.series.write() else {
            self.record_unbound(&attributes, measurements, span);
            return;
        };
        let series = map.entry(key).or_insert_with(|| {
            let exemplars = |exemplars: &Option<HistogramExemplars>| {
                exemplars.as_ref().and_then(|e| e.series(&attributes))
            };
            Arc::new(Series {
                duration: self.duration.bind(&attributes),
                duration_exemplars: exemplars(&self.exemplars.duration),
                response_body_size: self.response_body_size.bind(&attributes),
                response_body_size_exemplars: exemplars(&self.exemplars.response_body_size),
                request_body_size: OnceLock::new(),
                attributes: attributes.into_boxed_slice(),
            })
        });
        route.first_series.get_or_init(|| (key, Arc::clone(series)));
        self.record_series(series, measurements, span);
    }

    /// Takes one of the [`MAX_BOUND_SERIES`] places, if one is left.
    fn reserve_series(&self) -> bool {
        self.bound_series
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_BOUND_SERIES).then_some(n + 1)
            })
            .is_ok()
    }

    #[allow(clippy::cast_precision_loss)] // an exemplar's value is shown, not summed
    fn record_series(
        &self,
        series: &Series,
        measurements: &Measurements,
        span: Option<&SpanContext>,
    ) {
        series.duration.record(measurements.duration);
        series
            .response_body_size
            .record(measurements.response_body_size);
        let request_body_size = measurements.request_body_size.map(|size| {
            let bound = series.request_body_size.get_or_init(|| RequestBodySeries {
                histogram: self.request_body_size.bind(&series.attributes),
                exemplars: self
                    .exemplars
                    .request_body_size
                    .as_ref()
                    .and_then(|e| e.series(&series.attributes)),
            });
            bound.histogram.record(size);
            (bound, size)
        });
        let Some(filter) = self
            .exemplars
            .duration
            .as_ref()
            .map(HistogramExemplars::filter)
        else {
            return;
        };
        if !crate::exemplars::eligible(filter, span) {
            return;
        }
        let now = SystemTime::now();
        if let Some(exemplars) = &series.duration_exemplars {
            exemplars.offer_at(filter, measurements.duration, span, now);
        }
        if let Some(exemplars) = &series.response_body_size_exemplars {
            exemplars.offer_at(filter, measurements.response_body_size as f64, span, now);
        }
        if let Some((
            RequestBodySeries {
                exemplars: Some(exemplars),
                ..
            },
            size,
        )) = request_body_size
        {
            exemplars.offer_at(filter, size as f64, span, now);
        }
    }

    /// Records with attributes resolved by the SDK: for failures and past the bound limit.
    #[allow(clippy::cast_precision_loss)] // an exemplar's value is shown, not summed
    pub(crate) fn record_unbound(
        &self,
        attributes: &[KeyValue],
        measurements: &Measurements,
        span: Option<&SpanContext>,
    ) {
        self.duration.record(measurements.duration, attributes);
        self.response_body_size
            .record(measurements.response_body_size, attributes);
        if let Some(size) = measurements.request_body_size {
            self.request_body_size.record(size, attributes);
        }
        let offer = |exemplars: &Option<HistogramExemplars>, value: f64| {
            if let Some(exemplars) = exemplars {
                exemplars.offer(attributes, value, span);
            }
        };
        offer(&self.exemplars.duration, measurements.duration);
        offer(
            &self.exemplars.response_body_size,
            measurements.response_body_size as f64,
        );
        if let Some(size) = measurements.request_body_size {
            offer(&self.exemplars.request_body_size, size as f64);
        }
    }
}

/// The in-flight gauge's series, one per (method, scheme), bound on first use.
struct InFlight {
    series: [OnceLock<BoundUpDownCounter<i64>>; METHODS.len() * SCHEMES.len()],
}

impl Default for InFlight {
    fn default() -> Self {
        Self {
            series: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

/// What one finished request recorded.
pub(crate) struct Measurements {
    pub(crate) duration: f64,
    pub(crate) request_body_size: Option<u64>,
    pub(crate) response_body_size: u64,
}
