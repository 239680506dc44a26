//! The one-line setup with process-global state: its own test binary.
//!
//! One test function, because global providers and the subscriber can be installed once per
//! process.

#![allow(clippy::too_many_lines)] // one scenario, told in order

mod common;

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use common::{hex, sample, FakeOtlp};
use soma_observability::{get_meter, setup_observability, HttpClient, SetupError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_setup_instruments_two_services_that_form_one_trace() {
    let otlp = FakeOtlp::start().await;
    let endpoint = otlp.http_endpoint();
    // Downstream service: a plain router with the one-line setup, served on a real socket.
    let (downstream_app, mut guard) = temp_env::with_vars(
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", Some(endpoint.as_str())),
            ("OTEL_BSP_SCHEDULE_DELAY", Some("50")),
            ("OTEL_BLRP_SCHEDULE_DELAY", Some("50")),
        ],
        || {
            let downstream = Router::new().route("/v1/evaluate", get(|| async { "allow" }));
            setup_observability("downstream", downstream).unwrap()
        },
    );
    // A second install in the same process is an error, never a panic.
    let err = setup_observability("again", Router::<()>::new()).unwrap_err();
    assert!(matches!(err, SetupError::AlreadyInstalled), "{err}");
    assert!(err.to_string().contains("call setup_observability once"));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let downstream_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, downstream_app).await.unwrap() });

    // The frontend's handler calls downstream through the instrumented client (which uses the
    // global tracer and propagator) over a real socket.
    let client = HttpClient::new(reqwest::Client::new());
    let frontend = Router::new()
        .route(
            "/v1/orders",
            get(
                |State((client, addr)): State<(HttpClient, std::net::SocketAddr)>| async move {
                    let response = client
                        .send(client.get(format!("http://{addr}/v1/evaluate?token=abc")))
                        .await
                        .unwrap();
                    response.text().await.unwrap()
                },
            ),
        )
        .with_state((client, downstream_addr));
    let parts = soma_observability::Observability::builder("frontend")
        .with_config(common::otlp_config(&otlp, "http/protobuf"))
        .build()
        .unwrap();
    let frontend = parts.instrument(frontend).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let frontend_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, frontend).await.unwrap() });

    let orders = get_meter("orders")
        .u64_counter("orders.placed")
        .with_description("Orders placed.")
        .build();
    orders.add(2, &[]);

    let response = reqwest::get(format!("http://{frontend_addr}/v1/orders"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let traceresponse = response.headers()["traceresponse"]
        .to_str()
        .unwrap()
        .to_owned();
    let trace_id = traceresponse.split('-').nth(1).unwrap().to_owned();
    assert_eq!(response.text().await.unwrap(), "allow");

    let [server, client_span, downstream_span] = common::wait_for_named_spans(
        &otlp,
        Duration::from_secs(10),
        ["GET /v1/orders", "GET", "GET /v1/evaluate"],
    )
    .await;
    for span in [&server, &client_span, &downstream_span] {
        assert_eq!(
            hex(&span.trace_id),
            trace_id,
            "{} is in another trace",
            span.name
        );
    }
    assert_eq!(
        client_span.parent_span_id, server.span_id,
        "client span is a child of the server span"
    );
    assert_eq!(
        downstream_span.parent_span_id, client_span.span_id,
        "downstream continues the client span"
    );
    let url_full = common::string_attr(&client_span.attributes, "url.full").unwrap();
    assert!(
        url_full.ends_with("/v1/evaluate?token=REDACTED"),
        "{url_full}"
    );

    // The global meter provider serves the downstream router's /metrics: client metrics and
    // custom metrics land there.
    let metrics = common::scrape_socket(&reqwest::Client::new(), downstream_addr).await;
    assert_eq!(
        sample(&metrics, "orders_placed_total", &[]),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "http_client_request_duration_seconds_count",
            &[
                r#"http_response_status_code="200""#,
                r#"server_address="127.0.0.1""#
            ]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "http_server_request_duration_seconds_count",
            &[r#"http_route="/v1/evaluate""#]
        ),
        Some(1.0)
    );

    guard.shutdown().await.unwrap();
    guard.shutdown().await.unwrap();
    parts.into_guard().shutdown().await.unwrap();
}
