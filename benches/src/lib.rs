//! What the benchmarks share: the routes every stack serves and the stacks themselves; the OTLP
//! receiver is the system tests' (`soma_system_tests::otlp::FakeOtlp::start_counting`). See
//! `benches/README.md` for the method and the figures.
//!
//! - `benches/requests.rs`: in-process cost per request of each stack (criterion);
//! - `benches/render.rs`: `/metrics` rendering time (criterion);
//! - `src/bin/bench-server.rs`: the same routes over HTTP for `benches/load.sh` (wrk);
//! - `src/bin/bench-driver.rs`: a fixed number of in-process requests, for callgrind;
//! - `src/bin/bench-report.rs`: the criterion medians as a table, overhead over bare included;
//! - `benches/export.rs` and [`export`]: the span exporter's conversion and encoding alone;
//! - [`peer`]: the peer stacks (axum-prometheus, `opentelemetry-instrumentation-tower`).

pub mod export;
pub mod peer;

use axum::body::Body;
use axum::extract::Path;
use axum::http::Request;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use soma_observability::{ConfigError, Observability, ObservabilityConfig, ObservabilityParts};
use tower::ServiceExt;

/// The text route.
pub const HELLO: &str = "/hello";
/// A path that the JSON route `/users/{id}` matches.
pub const USER: &str = "/users/42";

#[derive(Serialize)]
struct User {
    id: u64,
    name: &'static str,
    active: bool,
}

/// The routes every stack serves: a text route and a JSON route with a path parameter.
pub fn app() -> Router {
    Router::new()
        .route(HELLO, get(|| async { "Hello, world!" }))
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move {
                Json(User {
                    id,
                    name: "Ada Lovelace",
                    active: true,
                })
            }),
        )
}

/// `router` prepared as `axum::serve` prepares it (`Router::with_state(())`): every handler is
/// turned into a route once, rather than on each request (which, with a layer, would also
/// re-apply the layer and box the result per request). Every stack is measured this way.
pub fn served(router: Router) -> Router {
    router.with_state(())
}

/// Sends one request through `router` and drains the response body (our metrics are recorded
/// when the body ends); returns the body's length.
///
/// # Panics
///
/// If the request cannot be built or the body cannot be read (neither happens with [`app`]).
pub async fn drain(router: &Router, uri: &'static str) -> usize {
    let request = Request::get(uri).body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .len()
}

/// A configuration where `overrides` win, then the process environment, then the defaults.
///
/// # Errors
///
/// If a value is invalid.
pub fn config(overrides: &[(&str, &str)]) -> Result<ObservabilityConfig, ConfigError> {
    let overrides: Vec<(String, String)> = overrides
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    ObservabilityConfig::from_lookup(move |name| {
        overrides
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
    })
}

/// Our metrics layer alone: the four HTTP instruments, no traces, no OTLP logs.
///
/// # Errors
///
/// If the environment holds an invalid `OTEL_*` value.
pub fn metrics_config() -> Result<ObservabilityConfig, ConfigError> {
    config(&[
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "none"),
    ])
}

/// Metrics plus traces and logs over OTLP/gRPC to `endpoint`, every trace sampled (`sampled`)
/// or none (`always_off`); batch settings are the defaults unless the environment sets them.
///
/// # Errors
///
/// If the environment holds an invalid `OTEL_*` value.
pub fn full_config(endpoint: &str, sampled: bool) -> Result<ObservabilityConfig, ConfigError> {
    full_config_over(endpoint, sampled, "grpc")
}

/// [`full_config`] over `protocol` (`grpc` or `http/protobuf`).
///
/// # Errors
///
/// If the environment holds an invalid `OTEL_*` value.
pub fn full_config_over(
    endpoint: &str,
    sampled: bool,
    protocol: &str,
) -> Result<ObservabilityConfig, ConfigError> {
    config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        (
            "OTEL_TRACES_SAMPLER",
            if sampled { "always_on" } else { "always_off" },
        ),
    ])
}

/// The stacks compared in process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// Plain axum.
    Bare,
    /// Plain axum with a layer that does nothing (`MapResponseLayer` with the identity): what
    /// wrapping the routes in any layer costs.
    NoopLayer,
    /// Our metrics layer alone.
    Metrics,
    /// Our full setup, every trace sampled and exported to a live receiver.
    TracesSampled,
    /// Our full setup with `OTEL_TRACES_SAMPLER=always_off`.
    TracesUnsampled,
    /// Peer: axum-prometheus's `PrometheusMetricLayer::pair()` (once per process).
    AxumPrometheus,
    /// Peer: `opentelemetry-instrumentation-tower`'s layer, metrics only (tracing off), into an
    /// SDK meter provider with a pull reader ([`peer::otel_tower`]).
    OtelTowerMetrics,
    /// Peer: the same layer with tracing on, through an SDK tracer provider that samples
    /// nothing (compare with [`Stack::TracesUnsampled`]).
    OtelTowerUnsampled,
}

impl Stack {
    /// Every stack of ours, bare first.
    pub const ALL: [Stack; 5] = [
        Stack::Bare,
        Stack::NoopLayer,
        Stack::Metrics,
        Stack::TracesSampled,
        Stack::TracesUnsampled,
    ];

    /// The peer stacks.
    pub const PEERS: [Stack; 3] = [
        Stack::AxumPrometheus,
        Stack::OtelTowerMetrics,
        Stack::OtelTowerUnsampled,
    ];

    /// The benchmark id.
    pub fn name(self) -> &'static str {
        match self {
            Stack::Bare => "bare",
            Stack::NoopLayer => "noop_layer",
            Stack::Metrics => "metrics",
            Stack::TracesSampled => "traces_sampled",
            Stack::TracesUnsampled => "traces_unsampled",
            Stack::AxumPrometheus => "axum_prometheus",
            Stack::OtelTowerMetrics => "otel_tower_metrics",
            Stack::OtelTowerUnsampled => "otel_tower_unsampled",
        }
    }

    /// Parses [`Stack::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .chain(Self::PEERS)
            .find(|s| s.name() == name)
    }

    /// The instrumented router and its parts (`None` for bare and the peers). `otlp` is the
    /// receiver's gRPC endpoint, used by the traced stacks, which must be built inside a tokio
    /// runtime (as must axum-prometheus, whose upkeep is a task).
    ///
    /// # Errors
    ///
    /// If the configuration is invalid or an exporter cannot be built.
    pub fn build(
        self,
        otlp: &str,
    ) -> Result<(Router, Option<ObservabilityParts>), Box<dyn std::error::Error>> {
        let config = match self {
            Stack::Bare => return Ok((served(app()), None)),
            Stack::NoopLayer => {
                return Ok((
                    served(app().layer(tower::util::MapResponseLayer::new(std::convert::identity))),
                    None,
                ))
            }
            Stack::AxumPrometheus => return Ok((peer::axum_prometheus(), None)),
            Stack::OtelTowerMetrics => return Ok((peer::otel_tower(false), None)),
            Stack::OtelTowerUnsampled => return Ok((peer::otel_tower(true), None)),
            Stack::Metrics => metrics_config()?,
            Stack::TracesSampled => full_config(otlp, true)?,
            Stack::TracesUnsampled => full_config(otlp, false)?,
        };
        let parts = Observability::builder("bench")
            .with_config(config)
            .build()?;
        let router = served(parts.instrument(app())?);
        Ok((router, Some(parts)))
    }
}

/// The value of the unlabelled (or first) sample of `name` in a Prometheus exposition.
pub fn sample(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
