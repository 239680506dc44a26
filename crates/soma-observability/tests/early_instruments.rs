//! Instruments made with `get_meter` *before* `setup_observability` (as an app state handed to
//! `.with_state(..)` is) record into the installed provider after it, and show on `/metrics`.
//!
//! Own test binary: it installs the global providers.

#![allow(clippy::too_many_lines)] // one scenario, told in order

mod common;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use common::{sample, scrape};
use soma_observability::opentelemetry::metrics::{Counter, Histogram};
use soma_observability::opentelemetry::KeyValue;
use soma_observability::{get_meter, setup_observability, HttpClient};

/// The per-instrument limit of measurements kept before setup (`deferred.rs`).
const EARLY_LIMIT: usize = 1024;

#[derive(Clone)]
struct AppState {
    orders: Counter<u64>,
    latency: Histogram<f64>,
    /// Made before setup too, as the README's state is.
    client: HttpClient,
}

#[tokio::test(flavor = "current_thread")]
async fn instruments_created_before_setup_show_on_metrics() {
    // Everything below is created before any provider is installed.
    let meter = get_meter("checkout");
    let state = AppState {
        orders: meter
            .u64_counter("checkout.orders")
            .with_description("Orders placed.")
            .build(),
        latency: meter
            .f64_histogram("checkout.payment.duration")
            .with_unit("s")
            .with_description("Payment duration.")
            .build(),
        client: HttpClient::new(reqwest::Client::new()),
    };
    let in_flight = meter
        .i64_up_down_counter("checkout.in_flight")
        .with_description("Checkouts in flight.")
        .build();
    let temperature = meter
        .f64_gauge("checkout.oven.temperature")
        .with_description("Oven temperature.")
        .build();
    let card = state
        .orders
        .bind(&[KeyValue::new("payment.method", "card")]);
    let _queue = get_meter("queue")
        .u64_observable_gauge("checkout.queue.depth")
        .with_description("Orders waiting.")
        .with_callback(|observer| observer.observe(7, &[]))
        .build();
    // Recorded before any pipeline exists: kept and replayed at setup.
    state
        .orders
        .add(100, &[KeyValue::new("payment.method", "cash")]);
    card.add(2);
    let build_info = meter
        .u64_gauge("checkout.build.info")
        .with_description("Build information.")
        .build();
    build_info.record(1, &[KeyValue::new("version", "1.2.3")]);
    // Beyond the limit per instrument, early measurements are dropped and reported.
    let burst = meter
        .u64_counter("checkout.burst")
        .with_description("Early burst.")
        .build();
    for _ in 0..EARLY_LIMIT + 10 {
        burst.add(1, &[]);
    }

    let state_client = state.client.clone();
    let app = Router::new()
        .route(
            "/checkout",
            get(|State(state): State<AppState>| async move {
                state
                    .orders
                    .add(1, &[KeyValue::new("payment.method", "cash")]);
                state.latency.record(0.042, &[]);
                "ok"
            }),
        )
        .with_state(state);
    let (app, _guard) = temp_env::with_vars(
        [
            ("OTEL_TRACES_EXPORTER", Some("none")),
            ("OTEL_LOGS_EXPORTER", Some("none")),
        ],
        || setup_observability("early", app).unwrap(),
    );

    assert_eq!(common::get(&app, "/checkout").await, 200);
    // The client made before setup records into the installed provider.
    let (peer, _server) =
        common::serve(Router::new().route("/rates", get(|| async { "1.1" }))).await;
    let response = state_client
        .get(format!("http://{peer}/rates"))
        .send()
        .await;
    assert_eq!(response.unwrap().status(), 200);
    card.add(3);
    in_flight.add(2, &[]);
    temperature.record(180.5, &[]);

    let metrics = scrape(&app).await;
    let scope = r#"otel_scope_name="checkout""#;
    assert_eq!(
        sample(
            &metrics,
            "checkout_orders_total",
            &[r#"payment_method="cash""#, scope]
        ),
        Some(101.0),
        "a measurement made before setup is replayed: {metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "checkout_orders_total",
            &[r#"payment_method="card""#]
        ),
        Some(5.0),
        "a counter bound before setup records too: {metrics}"
    );
    // A histogram in seconds made before setup gets the second-scale buckets.
    assert_eq!(
        sample(
            &metrics,
            "checkout_payment_duration_seconds_bucket",
            &[r#"le="0.05""#]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "checkout_payment_duration_seconds_bucket",
            &[r#"le="0.025""#]
        ),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "checkout_in_flight", &[]),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "checkout_build_info", &[r#"version="1.2.3""#]),
        Some(1.0),
        "a gauge set only before setup shows: {metrics}"
    );
    #[allow(clippy::cast_precision_loss)]
    let limit = EARLY_LIMIT as f64;
    assert_eq!(
        sample(&metrics, "checkout_burst_total", &[]),
        Some(limit),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "checkout_oven_temperature", &[]),
        Some(180.5),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "checkout_queue_depth",
            &[r#"otel_scope_name="queue""#]
        ),
        Some(7.0),
        "an observable gauge registered before setup is collected: {metrics}"
    );

    assert_eq!(
        sample(
            &metrics,
            "http_client_request_duration_seconds_count",
            &[
                r#"http_request_method="GET""#,
                r#"http_response_status_code="200""#
            ]
        ),
        Some(1.0),
        "an HttpClient made before setup records client metrics: {metrics}"
    );

    // A meter asked for after setup is the installed provider's own.
    get_meter("checkout")
        .u64_counter("checkout.refunds")
        .with_description("Refunds.")
        .build()
        .add(1, &[]);
    let metrics = scrape(&app).await;
    assert_eq!(sample(&metrics, "checkout_refunds_total", &[]), Some(1.0));
}

/// The early measurements beyond the limit are reported on stdout at setup, naming the meter and
/// the instrument: the scenario above runs again in a child process whose stdout is read.
#[test]
fn early_measurements_beyond_the_limit_are_reported_at_setup() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "instruments_created_before_setup_show_on_metrics",
            "--nocapture",
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let warning = stdout
        .lines()
        .find(|l| l.contains("made before setup_observability"))
        .unwrap_or_else(|| panic!("no warning in {stdout}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("meter=checkout"), "{warning}");
    assert!(warning.contains("instrument=checkout.burst"), "{warning}");
    assert!(warning.contains("dropped=10"), "{warning}");
}
