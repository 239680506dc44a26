//! Heap allocations per request through `parts.instrument(router)`: a regression guard for the
//! request path that counts instead of timing, so it cannot flake on a loaded machine.
//!
//! A counting global allocator (`stats_alloc`) wraps the system one in this test binary only.
//! One test function (the harness then runs no other test thread), a current-thread runtime,
//! 200 warm-up requests per stack (the route is interned and the series bound on the first
//! ones), then 2 000 measured requests; each request is built, sent with `oneshot` and its body
//! drained, exactly as for bare axum, so the difference to bare is what the layer allocates.
//!
//! Measured on 2026-12-01 (axum 0.8.9, opentelemetry 0.33.1), `GET /users/{id}`, per request
//! and exactly the same in every run: bare axum 19, a no-op layer (`MapResponseLayer` with the
//! identity) +2, metrics only +3, metrics and an unsampled server span +6. The bounds below are
//! the measured overhead times 1.5 plus 2, rounded down (6 and 11): a change that adds
//! several allocations per request fails here, whatever the machine's load. Since then (issue
//! 17): metrics only +4 (the request's state is boxed, one allocation that spares moving it
//! through axum's future levels), unsampled span +6 (that box, and no SDK span).

use std::alloc::System;

use axum::body::Body;
use axum::extract::Path;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use soma_observability::{Observability, ObservabilityConfig};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tower::ServiceExt;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const WARM_UP: u32 = 200;
const REQUESTS: u32 = 2_000;

/// Allocations per request over bare axum that each stack may make (see the module docs).
const METRICS_ONLY_BOUND: f64 = 6.0;
const UNSAMPLED_SPAN_BOUND: f64 = 11.0;

fn routes() -> Router {
    Router::new()
        .route("/hello", get(|| async { "Hello, world!" }))
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move { format!("user {id}") }),
        )
}

/// A configuration from `vars` alone (the process environment is not read).
fn config(vars: &[(&str, &str)]) -> ObservabilityConfig {
    ObservabilityConfig::from_lookup(soma_system_tests::lookup(vars)).unwrap()
}

async fn request(router: &Router) {
    let request = Request::get("/users/42").body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert!(response.status().is_success());
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(&body[..], b"user 42");
}

/// Heap allocations (reallocations included) per request through `router`, after a warm-up.
fn allocations_per_request(runtime: &tokio::runtime::Runtime, router: &Router) -> f64 {
    runtime.block_on(async {
        for _ in 0..WARM_UP {
            request(router).await;
        }
        let region = Region::new(GLOBAL);
        for _ in 0..REQUESTS {
            request(router).await;
        }
        let stats = region.change();
        f64::from(u32::try_from(stats.allocations + stats.reallocations).unwrap())
            / f64::from(REQUESTS)
    })
}

#[test]
fn request_path_allocations_stay_within_bounds() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();

    let bare = allocations_per_request(&runtime, &routes().with_state(()));
    // For the record (not bounded): what any layer costs in axum.
    let noop = routes().layer(tower::util::MapResponseLayer::new(std::convert::identity));
    let noop = allocations_per_request(&runtime, &noop.with_state(())) - bare;

    let metrics_only = Observability::builder("allocations")
        .with_config(config(&[
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ]))
        .build()
        .unwrap();
    let router = metrics_only.instrument(routes()).unwrap().with_state(());
    let metrics = allocations_per_request(&runtime, &router) - bare;

    // Traces on, nothing sampled: the server span is started and ended, never recorded. The
    // console exporter needs no receiver (and prints nothing: no span is sampled).
    let unsampled_parts = Observability::builder("allocations")
        .with_config(config(&[
            ("OTEL_TRACES_EXPORTER", "console"),
            ("OTEL_TRACES_SAMPLER", "always_off"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ]))
        .build()
        .unwrap();
    let router = unsampled_parts.instrument(routes()).unwrap().with_state(());
    let unsampled = allocations_per_request(&runtime, &router) - bare;

    eprintln!(
        "allocations per request: bare {bare:.2}, no-op layer +{noop:.2}, \
         metrics only +{metrics:.2}, unsampled span +{unsampled:.2}"
    );
    assert!(
        metrics <= METRICS_ONLY_BOUND,
        "metrics only: +{metrics:.2} allocations per request over bare axum ({bare:.2}), \
         bound {METRICS_ONLY_BOUND}"
    );
    assert!(
        unsampled <= UNSAMPLED_SPAN_BOUND,
        "unsampled span: +{unsampled:.2} allocations per request over bare axum ({bare:.2}), \
         bound {UNSAMPLED_SPAN_BOUND}"
    );
}
