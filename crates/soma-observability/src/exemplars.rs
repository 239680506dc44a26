//! Exemplars: from a histogram bucket to one real trace that landed in it.
//!
//! The SDK (0.33) keeps no exemplars, so this crate keeps its own: for every histogram series
//! (instrument and attribute set) the latest measurement per bucket that was recorded inside a
//! sampled span, with that span's `trace_id` and `span_id`, the value and the time. The
//! OpenMetrics exposition ([`crate::openmetrics`]) writes each after its bucket's sample:
//!
//! ```text
//! http_server_request_duration_seconds_bucket{…,le="0.1"} 42 # {trace_id="4bf9…",span_id="00f0…"} 0.0831 1733050000.123
//! ```
//!
//! Prometheus stores them with `--enable-feature=exemplar-storage`, and Grafana shows them on
//! a latency panel as dots that open the trace. The HTTP layer offers the server span of every
//! sampled request for `http.server.request.duration`; histograms created with
//! [`get_meter`](crate::get_meter) or [`ObservabilityParts::meter`](crate::ObservabilityParts::meter)
//! offer the current span when they are recorded inside a sampled one.
//!
//! `OTEL_METRICS_EXEMPLAR_FILTER` ([`ExemplarFilter`]) decides which measurements may become
//! exemplars: `trace_based` (the default: those inside a sampled span), `always_on` (also those
//! inside an unsampled span, or none: such an exemplar has no trace id) or `always_off`.
//!
//! Memory is bounded: one exemplar (~48 bytes) per bucket per series, at most
//! [`MAX_SERIES_PER_INSTRUMENT`] series per instrument (as the SDK's own cardinality limit).
//! An unsampled request does no exemplar work at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use opentelemetry::metrics::{BoundHistogram, BoundSyncInstrument, Histogram, SyncInstrument};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};

/// Which measurements may become exemplars (`OTEL_METRICS_EXEMPLAR_FILTER`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExemplarFilter {
    /// `trace_based`: measurements recorded inside a sampled span.
    #[default]
    TraceBased,
    /// `always_on`: every measurement (with the span's ids when there is a valid span).
    AlwaysOn,
    /// `always_off`: none; `/metrics` carries no exemplars.
    AlwaysOff,
}

/// At most this many series per instrument keep exemplars (the SDK keeps 2000 attribute sets).
pub(crate) const MAX_SERIES_PER_INSTRUMENT: usize = 2000;

/// One kept measurement.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exemplar {
    /// `None` for an `always_on` exemplar recorded outside any span.
    pub(crate) ids: Option<(TraceId, SpanId)>,
    pub(crate) value: f64,
    pub(crate) time: SystemTime,
}

/// One series' exemplars: the latest per bucket of the boundaries known when it was created.
/// At scrape each is placed in the bucket its value falls in, so boundaries changed by a view
/// still give correct buckets.
#[derive(Debug)]
pub(crate) struct SeriesExemplars {
    bounds: Arc<[f64]>,
    buckets: Mutex<Box<[Option<Exemplar>]>>,
}

impl SeriesExemplars {
    fn new(bounds: Arc<[f64]>) -> Self {
        let buckets = vec![None; bounds.len() + 1].into_boxed_slice();
        Self {
            bounds,
            buckets: Mutex::new(buckets),
        }
    }

    /// Keeps `value` as its bucket's exemplar, if `filter` lets `span` through.
    pub(crate) fn offer(&self, filter: ExemplarFilter, value: f64, span: Option<&SpanContext>) {
        if eligible(filter, span) {
            self.offer_at(filter, value, span, SystemTime::now());
        }
    }

    /// [`offer`](Self::offer), measured at `time`: one clock read for a request's three
    /// histograms.
    pub(crate) fn offer_at(
        &self,
        filter: ExemplarFilter,
        value: f64,
        span: Option<&SpanContext>,
        time: SystemTime,
    ) {
        let ids = match (filter, span) {
            (ExemplarFilter::AlwaysOff, _) => return,
            (_, Some(sc)) if sc.is_sampled() => Some((sc.trace_id(), sc.span_id())),
            (ExemplarFilter::TraceBased, _) => return,
            (ExemplarFilter::AlwaysOn, Some(sc)) if sc.is_valid() => {
                Some((sc.trace_id(), sc.span_id()))
            }
            (ExemplarFilter::AlwaysOn, _) => None,
        };
        if value.is_nan() {
            return;
        }
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        let exemplar = Exemplar { ids, value, time };
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = buckets.get_mut(bucket) {
            *slot = Some(exemplar);
        }
    }

    /// The latest exemplar for each bucket of `bounds` (one more for `+Inf`), placed by value.
    pub(crate) fn by_bucket(&self, bounds: &[f64], out: &mut Vec<Option<Exemplar>>) {
        out.clear();
        out.resize(bounds.len() + 1, None);
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        for exemplar in buckets.iter().flatten() {
            let bucket = bounds.partition_point(|&bound| bound < exemplar.value);
            if let Some(slot) = out.get_mut(bucket) {
                if slot.is_none_or(|kept| kept.time < exemplar.time) {
                    *slot = Some(*exemplar);
                }
            }
        }
    }
}

/// An instrument's series, by attribute set.
type Instrument = RwLock<HashMap<String, Arc<SeriesExemplars>>>;

/// Every histogram series' exemplars, shared by the instruments and `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ExemplarStore {
    pub(crate) filter: ExemplarFilter,
    /// By (scope name, instrument name).
    instruments: RwLock<HashMap<(String, String), Arc<Instrument>>>,
}

impl ExemplarStore {
    pub(crate) fn new(filter: ExemplarFilter) -> Self {
        Self {
            filter,
            instruments: RwLock::default(),
        }
    }

    /// The series of (`scope`, `instrument`, `attributes`), created with `bounds` if there is
    /// room; `None` when exemplars are off or the instrument has [`MAX_SERIES_PER_INSTRUMENT`].
    pub(crate) fn series(
        &self,
        scope: &str,
        instrument: &str,
        attributes: &[KeyValue],
        bounds: &Arc<[f64]>,
    ) -> Option<Arc<SeriesExemplars>> {
        if self.filter == ExemplarFilter::AlwaysOff {
            return None;
        }
        let instrument = self.instrument(scope, instrument, true)?;
        let key = attribute_key(attributes.iter());
        if let Some(series) = instrument
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Some(Arc::clone(series));
        }
        let mut map = instrument.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_SERIES_PER_INSTRUMENT && !map.contains_key(&key) {
            return None;
        }
        Some(Arc::clone(map.entry(key).or_insert_with(|| {
            Arc::new(SeriesExemplars::new(Arc::clone(bounds)))
        })))
    }

    fn instrument(&self, scope: &str, name: &str, create: bool) -> Option<Arc<Instrument>> {
        let key = (scope.to_owned(), name.to_owned());
        if let Some(instrument) = self
            .instruments
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Some(Arc::clone(instrument));
        }
        if !create {
            return None;
        }
        let mut map = self
            .instruments
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        Some(Arc::clone(map.entry(key).or_default()))
    }

    /// The exemplars of one instrument, for the exposition; `None` when it has none.
    pub(crate) fn lookup(&self, scope: &str, name: &str) -> Option<InstrumentExemplars> {
        if self.filter == ExemplarFilter::AlwaysOff {
            return None;
        }
        self.instrument(scope, name, false).map(InstrumentExemplars)
    }
}

/// One instrument's series, as the exposition reads them.
pub(crate) struct InstrumentExemplars(Arc<Instrument>);

impl InstrumentExemplars {
    /// The series of a data point's attributes.
    pub(crate) fn series<'k>(
        &self,
        attributes: impl Iterator<Item = &'k KeyValue>,
    ) -> Option<Arc<SeriesExemplars>> {
        let key = attribute_key(attributes);
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned()
    }
}

/// An attribute set as a map key: sorted by key, so that order does not matter.
fn attribute_key<'k>(attributes: impl Iterator<Item = &'k KeyValue>) -> String {
    let mut sorted: Vec<&KeyValue> = attributes.collect();
    sorted.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
    sorted.dedup_by(|a, b| a.key == b.key);
    let mut key = String::new();
    for kv in sorted {
        key.push_str(kv.key.as_str());
        key.push('\u{1}');
        key.push_str(&kv.value.as_str());
        key.push('\u{2}');
    }
    key
}

/// The span of the current context, if there is one.
pub(crate) fn current_span() -> Option<SpanContext> {
    Context::map_current(|cx| {
        cx.has_active_span()
            .then(|| cx.span().span_context().clone())
    })
}

/// The SDK's default histogram boundaries (for an instrument that sets none and is not in
/// seconds): exemplars kept per these buckets are re-placed at scrape by value anyway.
const SDK_DEFAULT_BOUNDS: &[f64] = &[
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

/// A histogram value as the exemplar's `f64`.
pub(crate) trait ExemplarValue: Copy + Send + Sync + 'static {
    fn as_f64(self) -> f64;
}

impl ExemplarValue for f64 {
    fn as_f64(self) -> f64 {
        self
    }
}

impl ExemplarValue for u64 {
    #[allow(clippy::cast_precision_loss)] // an exemplar's value is shown, not summed
    fn as_f64(self) -> f64 {
        self as f64
    }
}

/// One histogram's exemplars: the store, the instrument's (scope, name) and the bucket
/// boundaries its series are created with. [`WithExemplars`] offers what it records from the
/// current context; the HTTP layer offers with the request's server span, which it holds.
#[derive(Debug)]
pub(crate) struct HistogramExemplars {
    store: Arc<ExemplarStore>,
    scope: String,
    name: String,
    bounds: Arc<[f64]>,
}

impl HistogramExemplars {
    /// `None` when exemplars are off: then nothing is kept, nothing is looked up.
    pub(crate) fn new(
        store: &Arc<ExemplarStore>,
        scope: &str,
        name: &str,
        bounds: Option<&[f64]>,
    ) -> Option<Self> {
        (store.filter != ExemplarFilter::AlwaysOff).then(|| Self {
            store: Arc::clone(store),
            scope: scope.to_owned(),
            name: name.to_owned(),
            bounds: Arc::from(bounds.unwrap_or(SDK_DEFAULT_BOUNDS)),
        })
    }

    /// The filter measurements pass before they are offered.
    pub(crate) fn filter(&self) -> ExemplarFilter {
        self.store.filter
    }

    /// The series of `attributes`, to bind once (`None` past [`MAX_SERIES_PER_INSTRUMENT`]).
    pub(crate) fn series(&self, attributes: &[KeyValue]) -> Option<Arc<SeriesExemplars>> {
        self.store
            .series(&self.scope, &self.name, attributes, &self.bounds)
    }

    /// Offers a measurement of an unbound record made in `span`.
    pub(crate) fn offer(&self, attributes: &[KeyValue], value: f64, span: Option<&SpanContext>) {
        if eligible(self.store.filter, span) {
            if let Some(series) = self.series(attributes) {
                series.offer(self.store.filter, value, span);
            }
        }
    }
}

/// A histogram that records into the SDK's and offers each measurement made inside a span to
/// the exemplar store (see the module docs).
pub(crate) struct WithExemplars<T> {
    inner: Histogram<T>,
    exemplars: HistogramExemplars,
}

impl<T: ExemplarValue> WithExemplars<T> {
    /// `inner` wrapped, unless exemplars are off (then `inner` itself: no cost at all).
    pub(crate) fn wrap(
        inner: Histogram<T>,
        store: &Arc<ExemplarStore>,
        scope: &str,
        name: &str,
        bounds: Option<&[f64]>,
    ) -> Histogram<T> {
        match HistogramExemplars::new(store, scope, name, bounds) {
            Some(exemplars) => Histogram::new(Arc::new(Self { inner, exemplars })),
            None => inner,
        }
    }
}

impl<T: ExemplarValue> SyncInstrument<T> for WithExemplars<T> {
    fn measure(&self, measurement: T, attributes: &[KeyValue]) {
        self.inner.record(measurement, attributes);
        // `trace_based` decides from the current span alone, before any lookup.
        let span = current_span();
        self.exemplars
            .offer(attributes, measurement.as_f64(), span.as_ref());
    }

    fn bind(&self, attributes: &[KeyValue]) -> Box<dyn BoundSyncInstrument<T> + Send + Sync> {
        Box::new(BoundWithExemplars {
            inner: self.inner.bind(attributes),
            series: self.exemplars.series(attributes),
            filter: self.exemplars.filter(),
        })
    }
}

/// [`WithExemplars`] bound to one attribute set: its series is resolved once.
struct BoundWithExemplars<T> {
    inner: BoundHistogram<T>,
    series: Option<Arc<SeriesExemplars>>,
    filter: ExemplarFilter,
}

impl<T: ExemplarValue> BoundSyncInstrument<T> for BoundWithExemplars<T> {
    fn measure(&self, measurement: T) {
        self.inner.record(measurement);
        let Some(series) = &self.series else {
            return;
        };
        let span = current_span();
        if !eligible(self.filter, span.as_ref()) {
            return;
        }
        series.offer(self.filter, measurement.as_f64(), span.as_ref());
    }
}

/// Whether `filter` lets a measurement made in `span` become an exemplar.
pub(crate) fn eligible(filter: ExemplarFilter, span: Option<&SpanContext>) -> bool {
    match filter {
        ExemplarFilter::AlwaysOff => false,
        ExemplarFilter::TraceBased => span.is_some_and(SpanContext::is_sampled),
        ExemplarFilter::AlwaysOn => true,
    }
}
