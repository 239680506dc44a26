//! The peer stacks: other crates that record the same HTTP server metrics, configured to do the
//! same work as ours so that the comparison is fair (see `benches/README.md`, the stack table).

use std::sync::OnceLock;

use axum::Router;
use opentelemetry_instrumentation_tower::http::server::LayerBuilder;
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

use crate::{app, served};

/// The SDK providers behind the `opentelemetry-instrumentation-tower` stacks.
///
/// That layer reads the *global* meter and tracer providers when it is built (its
/// `with_meter_provider` is test-only), so the benches set them once per process: a meter
/// provider with a pull reader (`ManualReader`: nothing is exported or collected in the measured
/// loop, as with our layer and its scrape-time reader) and a tracer provider whose sampler is
/// `AlwaysOff` (what our `traces_unsampled` stack configures). The global propagator is left
/// as the no-op default: the peer does not parse `traceparent` (ours does, one header lookup).
#[derive(Debug)]
struct PeerProviders {
    _meter: SdkMeterProvider,
    _tracer: SdkTracerProvider,
}

fn peer_providers() {
    static PROVIDERS: OnceLock<PeerProviders> = OnceLock::new();
    PROVIDERS.get_or_init(|| {
        let meter = SdkMeterProvider::builder()
            .with_reader(ManualReader::builder().build())
            .build();
        let tracer = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOff)
            .build();
        opentelemetry::global::set_meter_provider(meter.clone());
        opentelemetry::global::set_tracer_provider(tracer.clone());
        PeerProviders {
            _meter: meter,
            _tracer: tracer,
        }
    });
}

/// `app()` with `opentelemetry-instrumentation-tower`'s server layer (route from axum's
/// `MatchedPath`, the default with its `axum` feature), recording its four HTTP server metrics
/// into an SDK meter provider; `traced` also starts a server span per request through an SDK
/// tracer provider that samples nothing, otherwise tracing is off (`with_tracing(false)`: a
/// no-op tracer).
///
/// # Panics
///
/// If the layer cannot be built (its builder never fails in 0.19).
pub fn otel_tower(traced: bool) -> Router {
    peer_providers();
    let layer = LayerBuilder::builder()
        .with_tracing(traced)
        .build()
        .expect("the layer builder does not fail");
    served(app().layer(layer))
}

/// `app()` with axum-prometheus's `PrometheusMetricLayer::pair()` (one global `metrics`
/// recorder per process: call this once).
pub fn axum_prometheus() -> Router {
    let (layer, _handle) = axum_prometheus::PrometheusMetricLayer::pair();
    served(app().layer(layer))
}
