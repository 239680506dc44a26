//! Instruments created before [`setup_observability`](crate::setup_observability).
//!
//! `opentelemetry::global::meter(..)` called before a provider is installed returns a no-op
//! meter, and its instruments stay no-ops forever: they compile, record nothing and never appear
//! on `/metrics`. Keeping instruments in the app state leads straight there, because
//! `.with_state(state)` comes before the router is handed to setup.
//!
//! So before installation [`get_meter`](crate::get_meter) returns a meter whose instruments
//! bind late: each one creates its real SDK instrument (same name, description, unit,
//! boundaries, scope) from the installed provider, and records into it from then on.
//! Measurements made *before* installation (a build-info gauge set while the state is made) are
//! kept, up to [`EARLY_MEASUREMENTS_LIMIT`] per instrument, and replayed in order at
//! installation; beyond the limit they are counted and reported by one warning naming the meter
//! and the instrument. Observable instruments keep their callbacks and are registered with the
//! provider at installation. After installation `get_meter` returns the provider's own meter,
//! with no indirection.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use opentelemetry::metrics::{
    AsyncInstrumentBuilder, BoundCounter, BoundGauge, BoundHistogram, BoundSyncInstrument,
    BoundUpDownCounter, Counter, Gauge, Histogram, HistogramBuilder, InstrumentBuilder,
    InstrumentProvider, Meter, MeterProvider, ObservableCounter, ObservableGauge,
    ObservableUpDownCounter, SyncInstrument, UpDownCounter,
};
use opentelemetry::{InstrumentationScope, KeyValue};

use crate::metrics::SecondsBucketsProvider;

/// The installed provider, once [`bind`] ran.
static PROVIDER: OnceLock<SecondsBucketsProvider> = OnceLock::new();

/// What [`bind`] runs at installation: registering observable instruments made before it, and
/// replaying the measurements instruments recorded before it.
type Registration = Box<dyn FnOnce(&SecondsBucketsProvider) + Send>;
static PENDING: Mutex<Vec<Registration>> = Mutex::new(Vec::new());

/// The meter named `name` of this thread's default parts (see `current.rs`), else the installed
/// provider's, or a late-binding one before installation.
pub(crate) fn meter(name: &'static str) -> Meter {
    if let Some(meter) = crate::current::meter(name) {
        return meter;
    }
    if PROVIDER.get().is_some() {
        return opentelemetry::global::meter(name);
    }
    Meter::new(Arc::new(DeferredMeter {
        scope: InstrumentationScope::builder(name).build(),
    }))
}

/// Binds every instrument made before installation to `provider` (the one just installed as
/// the global meter provider). Called once, by the install path.
pub(crate) fn bind(provider: SecondsBucketsProvider) {
    if PROVIDER.set(provider).is_err() {
        return;
    }
    let Some(provider) = PROVIDER.get() else {
        return;
    };
    let pending = std::mem::take(&mut *PENDING.lock().unwrap_or_else(PoisonError::into_inner));
    for register in pending {
        register(provider);
    }
}

/// Runs `register` now if the provider is installed, otherwise at installation.
fn when_installed(register: Registration) {
    let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
    match PROVIDER.get() {
        Some(provider) => {
            drop(pending);
            register(provider);
        }
        None => pending.push(register),
    }
}

/// The instrument provider behind a meter obtained before installation.
struct DeferredMeter {
    scope: InstrumentationScope,
}

/// The description and unit of an instrument, kept until its real instrument is created.
#[derive(Clone)]
struct Spec {
    name: Cow<'static, str>,
    description: Option<Cow<'static, str>>,
    unit: Option<Cow<'static, str>>,
}

macro_rules! apply_spec {
    ($builder:expr, $spec:expr) => {{
        let mut builder = $builder;
        if let Some(description) = $spec.description.clone() {
            builder = builder.with_description(description);
        }
        if let Some(unit) = $spec.unit.clone() {
            builder = builder.with_unit(unit);
        }
        builder
    }};
}

macro_rules! deferred_sync {
    ($($method:ident: $instrument:ident<$value:ty>),* $(,)?) => {$(
        fn $method(&self, b: InstrumentBuilder<'_, $instrument<$value>>) -> $instrument<$value> {
            let spec = Spec { name: b.name, description: b.description, unit: b.unit };
            $instrument::new(Arc::new(Late::new(self.scope.clone(), spec.name.clone(), move |meter: &Meter| {
                apply_spec!(meter.$method(spec.name.clone()), spec).build()
            })))
        }
    )*};
}

macro_rules! deferred_histogram {
    ($($method:ident: $value:ty),* $(,)?) => {$(
        fn $method(&self, b: HistogramBuilder<'_, Histogram<$value>>) -> Histogram<$value> {
            let spec = Spec { name: b.name, description: b.description, unit: b.unit };
            let boundaries = b.boundaries;
            Histogram::new(Arc::new(Late::new(self.scope.clone(), spec.name.clone(), move |meter: &Meter| {
                let builder = apply_spec!(meter.$method(spec.name.clone()), spec);
                match boundaries.clone() {
                    Some(boundaries) => builder.with_boundaries(boundaries).build(),
                    None => builder.build(),
                }
            })))
        }
    )*};
}

macro_rules! deferred_observable {
    ($($method:ident: $instrument:ident<$value:ty>);* $(;)?) => {$(
        fn $method(
            &self,
            b: AsyncInstrumentBuilder<'_, $instrument<$value>, $value>,
        ) -> $instrument<$value> {
            let spec = Spec { name: b.name, description: b.description, unit: b.unit };
            let callbacks = b.callbacks;
            let scope = self.scope.clone();
            when_installed(Box::new(move |provider: &SecondsBucketsProvider| {
                let meter = provider.meter_with_scope(scope);
                let mut builder = apply_spec!(meter.$method(spec.name.clone()), spec);
                for callback in callbacks {
                    builder = builder.with_callback(callback);
                }
                builder.build();
            }));
            $instrument::new()
        }
    )*};
}

impl InstrumentProvider for DeferredMeter {
    crate::metrics::with_sync_instruments!(deferred_sync);
    deferred_histogram! {
        f64_histogram: f64,
        u64_histogram: u64,
    }
    deferred_observable! {
        u64_observable_counter: ObservableCounter<u64>;
        f64_observable_counter: ObservableCounter<f64>;
        i64_observable_up_down_counter: ObservableUpDownCounter<i64>;
        f64_observable_up_down_counter: ObservableUpDownCounter<f64>;
        u64_observable_gauge: ObservableGauge<u64>;
        i64_observable_gauge: ObservableGauge<i64>;
        f64_observable_gauge: ObservableGauge<f64>;
    }
}

/// A real SDK instrument a [`Late`] one forwards to.
trait Real<T>: Send + Sync + 'static {
    type Bound: Send + Sync + 'static;
    fn measure(&self, value: T, attributes: &[KeyValue]);
    fn bind(&self, attributes: &[KeyValue]) -> Self::Bound;
    fn measure_bound(bound: &Self::Bound, value: T);
}

macro_rules! real {
    ($($instrument:ident, $bound:ident, $record:ident);* $(;)?) => {$(
        impl<T: 'static> Real<T> for $instrument<T> {
            type Bound = $bound<T>;
            fn measure(&self, value: T, attributes: &[KeyValue]) {
                self.$record(value, attributes);
            }
            fn bind(&self, attributes: &[KeyValue]) -> $bound<T> {
                $instrument::bind(self, attributes)
            }
            fn measure_bound(bound: &$bound<T>, value: T) {
                bound.$record(value);
            }
        }
    )*};
}

real! {
    Counter, BoundCounter, add;
    UpDownCounter, BoundUpDownCounter, add;
    Gauge, BoundGauge, record;
    Histogram, BoundHistogram, record;
}

type Make<I> = Box<dyn Fn(&Meter) -> I + Send + Sync>;

/// Measurements kept per instrument before installation; beyond, they are counted and reported.
pub(crate) const EARLY_MEASUREMENTS_LIMIT: usize = 1024;

/// A synchronous instrument whose real instrument is created at installation (if it was used
/// before) or at its first measurement after it.
struct Late<I, T>(Arc<LateInner<I, T>>);

struct LateInner<I, T> {
    scope: InstrumentationScope,
    name: Cow<'static, str>,
    make: Make<I>,
    real: OnceLock<I>,
    early: Mutex<Early<T>>,
}

/// What was recorded before installation, replayed into the real instrument at installation.
struct Early<T> {
    measurements: Vec<(T, Vec<KeyValue>)>,
    dropped: u64,
    registered: bool,
}

impl<I, T> Late<I, T> {
    fn new(
        scope: InstrumentationScope,
        name: Cow<'static, str>,
        make: impl Fn(&Meter) -> I + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(LateInner {
            scope,
            name,
            make: Box::new(make),
            real: OnceLock::new(),
            early: Mutex::new(Early {
                measurements: Vec::new(),
                dropped: 0,
                registered: false,
            }),
        }))
    }
}

impl<I, T> LateInner<I, T> {
    /// The real instrument, or `None` while nothing is installed.
    fn real(&self) -> Option<&I> {
        if let Some(real) = self.real.get() {
            return Some(real);
        }
        let provider = PROVIDER.get()?;
        Some(
            self.real
                .get_or_init(|| (self.make)(&provider.meter_with_scope(self.scope.clone()))),
        )
    }
}

impl<T: Send + 'static, I: Real<T>> LateInner<I, T> {
    fn measure(self: &Arc<Self>, value: T, attributes: &[KeyValue]) {
        if let Some(real) = self.real() {
            return real.measure(value, attributes);
        }
        if crate::current::any_thread_has_one() {
            self.recorded_outside_the_test();
        }
        let register = {
            let mut early = self.early.lock().unwrap_or_else(PoisonError::into_inner);
            if early.measurements.len() < EARLY_MEASUREMENTS_LIMIT {
                early.measurements.push((value, attributes.to_vec()));
            } else {
                early.dropped += 1;
            }
            !std::mem::replace(&mut early.registered, true)
        };
        if register {
            let inner = Arc::clone(self);
            when_installed(Box::new(move |_| inner.replay()));
        }
        // Installation may have happened since `real()` said no: replay now, not never.
        if PROVIDER.get().is_some() {
            self.replay();
        }
    }

    /// Says once per process that an instrument recorded nowhere while a test's telemetry was
    /// the default of another thread: it was made before it, or on another thread (a task on a
    /// multi-thread runtime's worker), and the test would otherwise find nothing without a word.
    fn recorded_outside_the_test(&self) {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            eprintln!(
                "soma-observability: the instrument {} of meter {} records nowhere: it was made \
                 before the test's telemetry (TestTelemetry::new or ObservabilityParts::set_default) \
                 or on another thread (a task on a multi-thread runtime's worker), and nothing is \
                 installed; make it after TestTelemetry::new, on the test's thread",
                self.name,
                self.scope.name()
            );
        });
    }

    /// Records what was measured before installation into the real instrument, in order.
    fn replay(&self) {
        let Some(real) = self.real() else {
            return;
        };
        let (measurements, dropped) = {
            let mut early = self.early.lock().unwrap_or_else(PoisonError::into_inner);
            (
                std::mem::take(&mut early.measurements),
                std::mem::take(&mut early.dropped),
            )
        };
        for (value, attributes) in measurements {
            real.measure(value, &attributes);
        }
        if dropped > 0 {
            tracing::warn!(
                meter = %self.scope.name(),
                instrument = %self.name,
                dropped,
                "measurements made before setup_observability beyond the first {EARLY_MEASUREMENTS_LIMIT} were dropped"
            );
        }
    }
}

impl<T: Send + 'static, I: Real<T>> SyncInstrument<T> for Late<I, T> {
    fn measure(&self, value: T, attributes: &[KeyValue]) {
        self.0.measure(value, attributes);
    }

    fn bind(&self, attributes: &[KeyValue]) -> Box<dyn BoundSyncInstrument<T> + Send + Sync> {
        Box::new(LateBound {
            instrument: Arc::clone(&self.0),
            attributes: attributes.to_vec(),
            bound: OnceLock::new(),
        })
    }
}

/// A bound handle of a [`Late`] instrument: binds the real instrument once it exists, and
/// records through the instrument (with its attributes) before.
struct LateBound<I: Real<T>, T> {
    instrument: Arc<LateInner<I, T>>,
    attributes: Vec<KeyValue>,
    bound: OnceLock<I::Bound>,
}

impl<T: Send + 'static, I: Real<T>> BoundSyncInstrument<T> for LateBound<I, T> {
    fn measure(&self, value: T) {
        if let Some(bound) = self.bound.get() {
            return I::measure_bound(bound, value);
        }
        match self.instrument.real() {
            Some(real) => {
                let bound = self.bound.get_or_init(|| real.bind(&self.attributes));
                I::measure_bound(bound, value);
            }
            None => self.instrument.measure(value, &self.attributes),
        }
    }
}
