//! The meter provider and the Prometheus registry behind `/metrics`.
//!
//! Every instrument created through the provider (the HTTP instruments and anything made with
//! [`get_meter`](crate::get_meter)) is read by one reader that `/metrics` collects (and, when
//! metrics are pushed over OTLP, by the push's reader too: see `metrics_push`), next to the
//! process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, `process_start_time_seconds`, ...) and `target_info`, which carries the
//! service's resource.
//!
//! # Histogram buckets
//!
//! The SDK's default buckets are millisecond-scale (`0, 5, 10, 25, ... 10000`). Every histogram
//! whose unit is `s` and that sets no boundaries of its own gets the OpenTelemetry HTTP
//! semantic-convention buckets ([`SECONDS_BUCKETS`]) instead, including histograms users create
//! with [`get_meter`](crate::get_meter). Boundaries given on the instrument
//! (`.with_boundaries(..)`) are kept, and buckets set with
//! [`ObservabilityBuilder::with_histogram_buckets`](crate::ObservabilityBuilder::with_histogram_buckets)
//! win over both.
//!
//! # Observable instruments' callbacks
//!
//! Every callback of an observable instrument made through [`get_meter`](crate::get_meter) or
//! [`ObservabilityParts::meter`](crate::ObservabilityParts::meter) runs on a thread of its own,
//! bounded in time, with its panic contained: see `metrics/callbacks.rs`. (Instruments made on the SDK's
//! provider itself, `ObservabilityParts::meter_provider`, are the SDK's alone.)

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry::metrics::{
    AsyncInstrumentBuilder, Counter, Gauge, Histogram, HistogramBuilder, InstrumentBuilder,
    InstrumentProvider, Meter, MeterProvider, ObservableCounter, ObservableGauge,
    ObservableUpDownCounter, UpDownCounter,
};
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument, InstrumentKind, SdkMeterProvider, Stream,
};
use opentelemetry_sdk::Resource;

use crate::error::ConfigError;

mod callbacks;

/// Buckets (in seconds) the HTTP semantic conventions recommend for durations.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Buckets (in bytes) for body sizes: powers of four from 64 B to 64 MiB.
pub(crate) const BYTES_BUCKETS: &[f64] = &powers_of_four::<11>(3);

/// `N` bucket boundaries for sizes and counts: the powers of four from `4^first` on.
pub(crate) const fn powers_of_four<const N: usize>(first: u32) -> [f64; N] {
    let mut boundaries = [0.0; N];
    let mut value = 1.0;
    let mut k = 0;
    while k < first {
        value *= 4.0;
        k += 1;
    }
    let mut i = 0;
    while i < N {
        boundaries[i] = value;
        value *= 4.0;
        i += 1;
    }
    boundaries
}

/// Expands `$then! { .. }` with the synchronous instruments of [`InstrumentProvider`], listed
/// once for the providers of this crate that forward them (here and in `deferred.rs`).
macro_rules! with_sync_instruments {
    ($then:ident) => {
        $then! {
            u64_counter: Counter<u64>,
            f64_counter: Counter<f64>,
            i64_up_down_counter: UpDownCounter<i64>,
            f64_up_down_counter: UpDownCounter<f64>,
            u64_gauge: Gauge<u64>,
            f64_gauge: Gauge<f64>,
            i64_gauge: Gauge<i64>,
        }
    };
}
pub(crate) use with_sync_instruments;

/// Checks that histogram boundaries are usable: non-empty, finite and strictly increasing.
pub(crate) fn validate_buckets(setting: &'static str, buckets: &[f64]) -> Result<(), ConfigError> {
    let reason = if buckets.is_empty() {
        Some("the list of bucket boundaries is empty".to_owned())
    } else if let Some(b) = buckets.iter().find(|b| !b.is_finite()) {
        Some(format!("boundary {b} is not a finite number"))
    } else {
        buckets.windows(2).find(|w| w[0] >= w[1]).map(|w| {
            format!(
                "boundaries must increase strictly, but {} is followed by {}",
                w[0], w[1]
            )
        })
    };
    match reason {
        Some(reason) => Err(ConfigError::InvalidValue { setting, reason }),
        None => Ok(()),
    }
}

/// The meter provider and what `/metrics` renders: its reader and the `prometheus`
/// registry.
pub(crate) struct MetricsPipeline {
    pub(crate) provider: SdkMeterProvider,
    pub(crate) exposition: crate::scrape::Exposition,
}

/// Builds the meter provider with its readers and the bucket view. Touches no global state.
///
/// `/metrics`' reader is registered unless `scraped` is false and metrics are pushed (only
/// `OTEL_METRICS_EXPORTER=otlp`: no measurement is aggregated twice for nothing); `push`, the
/// OTLP push's reader, aggregates separately, with its own temporality.
pub(crate) fn build(
    resource: Resource,
    custom_buckets: HashMap<String, Vec<f64>>,
    scraped: bool,
    push: Option<crate::metrics_push::PushReader>,
) -> MetricsPipeline {
    let registry = prometheus::Registry::new();
    let reader = Arc::new(opentelemetry_sdk::metrics::ManualReader::builder().build());
    let custom_buckets = Arc::new(custom_buckets);
    let mut builder = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_view(move |instrument: &Instrument| bucket_view(instrument, &custom_buckets));
    if scraped || push.is_none() {
        builder = builder.with_reader(crate::exposition::SharedReader(Arc::clone(&reader)));
    }
    if let Some(push) = push {
        builder = builder.with_reader(push);
    }
    let provider = builder.build();
    MetricsPipeline {
        provider,
        exposition: crate::scrape::Exposition::new(registry, reader),
    }
}

/// One view for the histograms given buckets in code, so that no instrument ever matches twice
/// (which would export it twice). Default seconds buckets are advisory, set by
/// [`SecondsBuckets`], so that boundaries given on an instrument still win.
fn bucket_view(instrument: &Instrument, custom: &HashMap<String, Vec<f64>>) -> Option<Stream> {
    if instrument.kind() != InstrumentKind::Histogram {
        return None;
    }
    let boundaries = custom.get(instrument.name())?.clone();
    Stream::builder()
        .with_aggregation(Aggregation::ExplicitBucketHistogram {
            boundaries,
            record_min_max: false,
        })
        .build()
        .ok()
}

/// A meter provider whose meters give every histogram in seconds without boundaries of its own
/// the [`SECONDS_BUCKETS`], as advisory boundaries, and wrap histograms so that they keep
/// exemplars ([`crate::exemplars`]) unless those are off. Other instruments are the SDK's own:
/// recording costs nothing extra.
#[derive(Clone, Debug)]
pub(crate) struct SecondsBucketsProvider(
    pub(crate) SdkMeterProvider,
    pub(crate) Arc<crate::exemplars::ExemplarStore>,
);

impl MeterProvider for SecondsBucketsProvider {
    fn meter_with_scope(&self, scope: InstrumentationScope) -> Meter {
        let name = scope.name().to_owned();
        Meter::new(Arc::new(SecondsBuckets(
            self.0.meter_with_scope(scope),
            Arc::clone(&self.1),
            name,
        )))
    }
}

/// See [`SecondsBucketsProvider`]; every other instrument is created unchanged.
struct SecondsBuckets(Meter, Arc<crate::exemplars::ExemplarStore>, String);

/// Says once when the SDK will make `name`'s instrument a silent no-op: the OpenTelemetry name
/// rules (1 to 255 characters, a letter first, then letters, digits, `_`, `.`, `-`, `/`).
fn check_name(name: &str) {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/');
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > 255 {
        "it is longer than 255 characters"
    } else if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        "it does not start with a letter"
    } else if !name.chars().all(allowed) {
        "it holds a character other than letters, digits, _ . - /"
    } else {
        return;
    };
    crate::exposition::say_once(
        "invalid",
        name,
        &format!(
            "instrument {name:?} records nothing (the OpenTelemetry SDK makes it a no-op): {reason}"
        ),
    );
}

macro_rules! forward_sync {
    ($($method:ident: $instrument:ty),* $(,)?) => {$(
        fn $method(&self, b: InstrumentBuilder<'_, $instrument>) -> $instrument {
            check_name(&b.name);
            let mut builder = self.0.$method(b.name);
            if let Some(description) = b.description {
                builder = builder.with_description(description);
            }
            if let Some(unit) = b.unit {
                builder = builder.with_unit(unit);
            }
            builder.build()
        }
    )*};
}

macro_rules! forward_async {
    ($($method:ident: $instrument:ty, $value:ty);* $(;)?) => {$(
        fn $method(&self, b: AsyncInstrumentBuilder<'_, $instrument, $value>) -> $instrument {
            check_name(&b.name);
            // Created before the instrument, never during a collection.
            let failures = callbacks::failures_counter(&self.0);
            let name = b.name.clone();
            let mut builder = self.0.$method(b.name);
            if let Some(description) = b.description {
                builder = builder.with_description(description);
            }
            if let Some(unit) = b.unit {
                builder = builder.with_unit(unit);
            }
            for callback in b.callbacks {
                builder = builder.with_callback(callbacks::guard(callback, &name, failures.clone()));
            }
            builder.build()
        }
    )*};
}

macro_rules! forward_histogram {
    ($($method:ident: $instrument:ty),* $(,)?) => {$(
        fn $method(&self, b: HistogramBuilder<'_, $instrument>) -> $instrument {
            check_name(&b.name);
            let seconds = b.unit.as_deref() == Some("s");
            let name = b.name.clone();
            let bounds = match &b.boundaries {
                Some(boundaries) => Some(boundaries.clone()),
                None if seconds => Some(SECONDS_BUCKETS.to_vec()),
                None => None,
            };
            let mut builder = self.0.$method(b.name);
            if let Some(description) = b.description {
                builder = builder.with_description(description);
            }
            if let Some(unit) = b.unit {
                builder = builder.with_unit(unit);
            }
            match b.boundaries {
                Some(boundaries) => builder = builder.with_boundaries(boundaries),
                None if seconds => builder = builder.with_boundaries(SECONDS_BUCKETS.to_vec()),
                None => {}
            }
            crate::exemplars::WithExemplars::wrap(
                builder.build(),
                &self.1,
                &self.2,
                &name,
                bounds.as_deref(),
            )
        }
    )*};
}

impl InstrumentProvider for SecondsBuckets {
    with_sync_instruments!(forward_sync);
    forward_async! {
        u64_observable_counter: ObservableCounter<u64>, u64;
        f64_observable_counter: ObservableCounter<f64>, f64;
        i64_observable_up_down_counter: ObservableUpDownCounter<i64>, i64;
        f64_observable_up_down_counter: ObservableUpDownCounter<f64>, f64;
        u64_observable_gauge: ObservableGauge<u64>, u64;
        i64_observable_gauge: ObservableGauge<i64>, i64;
        f64_observable_gauge: ObservableGauge<f64>, f64;
    }
    forward_histogram! {
        f64_histogram: Histogram<f64>,
        u64_histogram: Histogram<u64>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_four_are_the_size_and_token_buckets() {
        assert_eq!(
            BYTES_BUCKETS,
            [
                64.0,
                256.0,
                1024.0,
                4096.0,
                16384.0,
                65536.0,
                262_144.0,
                1_048_576.0,
                4_194_304.0,
                16_777_216.0,
                67_108_864.0,
            ]
        );
        assert_eq!(crate::genai::TOKEN_USAGE_BUCKETS[..3], [1.0, 4.0, 16.0]);
        assert_eq!(crate::genai::TOKEN_USAGE_BUCKETS[3..], *BYTES_BUCKETS);
    }

    #[test]
    fn bucket_validation_explains_the_problem() {
        assert!(validate_buckets("b", &[0.1, 1.0]).is_ok());
        let err = validate_buckets("with_histogram_buckets", &[]).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = validate_buckets("with_histogram_buckets", &[1.0, 0.5]).unwrap_err();
        assert!(err.to_string().contains("1 is followed by 0.5"), "{err}");
        let err = validate_buckets("with_histogram_buckets", &[f64::NAN]).unwrap_err();
        assert!(err.to_string().contains("finite"), "{err}");
    }
}
