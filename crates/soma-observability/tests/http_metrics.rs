//! HTTP server metrics through a real `Router`, without global state.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use common::{build, get as get_status, metrics_only, sample, scrape, send, series_count};
use futures_util::future::join_all;

fn app_routes() -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/fail", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route("/echo", post(|body: String| async move { body }))
        .route("/healthz", get(|| async { "ok" }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_counts_under_64_concurrent_tasks() {
    let parts = build("counts", metrics_only());
    let app = parts.instrument(app_routes()).unwrap();
    let tasks = (0..64).map(|task| {
        let app = app.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                assert_eq!(
                    get_status(&app, &format!("/users/{}", task * 100 + i)).await,
                    StatusCode::OK
                );
            }
        })
    });
    for result in join_all(tasks).await {
        result.unwrap();
    }
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(
            &metrics,
            "http_server_request_duration_seconds_count",
            &[r#"http_route="/users/{id}""#]
        ),
        Some(3200.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "http_server_active_requests",
            &[r#"http_request_method="GET""#]
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn semantic_convention_attributes_are_labels() {
    let parts = build("labels", metrics_only());
    let app = parts.instrument(app_routes()).unwrap();
    get_status(&app, "/users/1").await;
    let metrics = scrape(&app).await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("http_server_request_duration_seconds_count{"))
        .unwrap();
    for label in [
        r#"http_request_method="GET""#,
        r#"http_route="/users/{id}""#,
        r#"http_response_status_code="200""#,
        r#"url_scheme="http""#,
        r#"network_protocol_version="1.1""#,
    ] {
        assert!(line.contains(label), "{label} missing from {line}");
    }
    assert!(!line.contains("error_type"), "{line}");
    // Second-scale buckets, not the SDK's millisecond defaults.
    assert!(
        metrics.contains(r#"le="0.005""#) && metrics.contains(r#"le="10.0""#),
        "{metrics}"
    );
    assert!(!metrics.contains(r#"http_server_request_duration_seconds_bucket{le="10000.0""#));
}

#[tokio::test]
async fn server_errors_carry_error_type() {
    let parts = build("errors", metrics_only());
    let app = parts.instrument(app_routes()).unwrap();
    assert_eq!(
        get_status(&app, "/fail").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(
            &metrics,
            "http_server_request_duration_seconds_count",
            &[
                r#"error_type="503""#,
                r#"http_response_status_code="503""#,
                r#"http_route="/fail""#
            ]
        ),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn ten_thousand_unmatched_paths_share_one_series() {
    let parts = build("scanner", metrics_only());
    let app = parts.instrument(app_routes()).unwrap();
    for i in 0..10_000 {
        let uri = format!("/wp-admin/{i}/x.php?q={i}");
        let request = Request::get(uri)
            .header("host", format!("host-{i}.example"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&app, request).await.0, StatusCode::NOT_FOUND);
    }
    let metrics = scrape(&app).await;
    assert_eq!(
        series_count(&metrics, "http_server_request_duration_seconds_count"),
        1,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "http_server_request_duration_seconds_count",
            &[r#"http_response_status_code="404""#]
        ),
        Some(10_000.0)
    );
    assert!(!metrics.contains("wp-admin") && !metrics.contains("host-"));
}

#[tokio::test]
async fn extension_methods_map_to_other() {
    let parts = build("methods", metrics_only());
    let app = parts.instrument(app_routes()).unwrap();
    for i in 0..200 {
        let method = Method::from_bytes(format!("X{i}ZZ").as_bytes()).unwrap();
        send(
            &app,
            Request::builder()
                .method(method)
                .uri("/users/1")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    }
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(
            &metrics,
            "http_server_request_duration_seconds_count",
            &[r#"http_request_method="_OTHER""#]
        ),
        Some(200.0),
        "{metrics}"
    );
    assert!(!metrics.contains("ZZ"));
}

#[tokio::test]
async fn nested_routers_are_labelled_with_the_full_template() {
    let parts = build("nested", metrics_only());
    let api = Router::new().nest(
        "/api/v1",
        Router::new().nest(
            "/orgs/{org}",
            Router::new().route("/users/{id}", get(|| async { "u" })),
        ),
    );
    let app = parts.instrument(api).unwrap();
    assert_eq!(
        get_status(&app, "/api/v1/orgs/acme/users/7").await,
        StatusCode::OK
    );
    let metrics = scrape(&app).await;
    assert!(
        metrics.contains(r#"http_route="/api/v1/orgs/{org}/users/{id}""#),
        "{metrics}"
    );
}

#[tokio::test]
async fn metrics_and_probes_are_not_measured() {
    let parts = build("excluded", metrics_only());
    let app = parts.instrument(app_routes()).unwrap();
    for _ in 0..3 {
        scrape(&app).await;
        get_status(&app, "/healthz").await;
    }
    let metrics = scrape(&app).await;
    assert!(!metrics.contains(r#"http_route="/healthz""#), "{metrics}");
    assert!(!metrics.contains(r#"http_route="/metrics""#), "{metrics}");
    assert_eq!(
        series_count(&metrics, "http_server_request_duration_seconds_count"),
        0
    );
}

#[tokio::test]
async fn body_sizes_are_recorded() {
    let parts = build("sizes", metrics_only());
    let app = parts.instrument(app_routes()).unwrap();
    let payload = "x".repeat(3000);
    let request = Request::post("/echo").body(Body::from(payload)).unwrap();
    let (_, _, body) = send(&app, request).await;
    assert_eq!(body.len(), 3000);
    let metrics = scrape(&app).await;
    let route = r#"http_route="/echo""#;
    assert_eq!(
        sample(
            &metrics,
            "http_server_request_body_size_bytes_sum",
            &[route]
        ),
        Some(3000.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "http_server_response_body_size_bytes_sum",
            &[route]
        ),
        Some(3000.0)
    );
}

#[tokio::test]
async fn duration_is_recorded_when_the_body_ends() {
    let parts = build("streaming", metrics_only());
    let slow_body = || async {
        let stream = futures_util::stream::unfold(0, |i| async move {
            if i == 3 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
            Some((
                Ok::<_, std::io::Error>(axum::body::Bytes::from("chunk")),
                i + 1,
            ))
        });
        Body::from_stream(stream)
    };
    let app = common::one_route(&parts, "/stream", get(slow_body));
    let response = common::start_get(&app, "/stream").await;
    // Headers are here, the body is not: nothing recorded yet, the request is in flight.
    let metrics = scrape(&app).await;
    assert_eq!(
        series_count(&metrics, "http_server_request_duration_seconds_count"),
        0
    );
    assert_eq!(
        sample(&metrics, "http_server_active_requests", &[]),
        Some(1.0)
    );
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(body.len(), 15);
    let metrics = scrape(&app).await;
    let sum = sample(
        &metrics,
        "http_server_request_duration_seconds_sum",
        &[r#"http_route="/stream""#],
    )
    .unwrap();
    assert!(sum >= 0.12, "duration {sum} does not cover the body");
    assert_eq!(
        sample(&metrics, "http_server_active_requests", &[]),
        Some(0.0)
    );
}

#[tokio::test]
async fn cancelled_requests_leave_no_request_in_flight() {
    let parts = build("cancel", metrics_only());
    let started = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let app = common::one_route(&parts, "/hang", common::hang(started.clone()));
    let mut handles = Vec::new();
    for _ in 0..10 {
        let app = app.clone();
        handles.push(tokio::spawn(async move { get_status(&app, "/hang").await }));
    }
    // Wait until all ten handlers run, then cancel them as a disconnecting client would.
    let _all = started.acquire_many(10).await.unwrap();
    assert_eq!(
        sample(&scrape(&app).await, "http_server_active_requests", &[]),
        Some(10.0)
    );
    for handle in &handles {
        handle.abort();
    }
    for handle in handles {
        assert!(handle.await.unwrap_err().is_cancelled());
    }
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(&metrics, "http_server_active_requests", &[]),
        Some(0.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn body_dropped_mid_stream_still_records() {
    let parts = build("dropped-body", metrics_only());
    let endless = || async {
        let stream = futures_util::stream::repeat_with(|| {
            Ok::<_, std::io::Error>(axum::body::Bytes::from("x"))
        });
        Body::from_stream(stream)
    };
    let app = common::one_route(&parts, "/endless", get(endless));
    let response = common::start_get(&app, "/endless").await;
    drop(response);
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(&metrics, "http_server_active_requests", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "http_server_request_duration_seconds_count",
            &[r#"http_route="/endless""#]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn custom_meter_metrics_land_on_the_same_endpoint() {
    let parts = soma_observability::Observability::builder("custom")
        .with_config(metrics_only())
        .with_histogram_buckets("checkout.payment.duration", &[0.1, 0.5, 1.0])
        .unwrap()
        .build()
        .unwrap();
    let app = parts.instrument(app_routes()).unwrap();
    let meter = parts.meter("checkout");
    let orders = meter
        .u64_counter("checkout.orders")
        .with_description("Orders placed.")
        .build();
    let latency = meter
        .f64_histogram("checkout.fraud_check.duration")
        .with_unit("s")
        .with_description("Fraud check latency.")
        .build();
    let payment = meter
        .f64_histogram("checkout.payment.duration")
        .with_unit("s")
        .with_description("Payment latency.")
        .build();
    let own = meter
        .f64_histogram("checkout.batch.duration")
        .with_unit("s")
        .with_boundaries(vec![30.0, 60.0, 120.0])
        .with_description("Batch latency.")
        .build();
    own.record(45.0, &[]);
    orders.add(3, &[opentelemetry::KeyValue::new("payment.method", "card")]);
    let refunds = meter
        .u64_counter("checkout.refunds_total")
        .with_description("Refunds (a name that already has its suffix).")
        .build();
    refunds.add(1, &[]);
    latency.record(0.042, &[]);
    payment.record(0.3, &[]);
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(
            &metrics,
            "checkout_orders_total",
            &[r#"payment_method="card""#]
        ),
        Some(3.0),
        "{metrics}"
    );
    // No double suffix for a name that already has it.
    assert_eq!(sample(&metrics, "checkout_refunds_total", &[]), Some(1.0));
    assert!(!metrics.contains("_total_total"), "{metrics}");
    // A user histogram in seconds gets second-scale buckets: 42 ms lands in le="0.05".
    assert_eq!(
        sample(
            &metrics,
            "checkout_fraud_check_duration_seconds_bucket",
            &[r#"le="0.025""#]
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "checkout_fraud_check_duration_seconds_bucket",
            &[r#"le="0.05""#]
        ),
        Some(1.0)
    );
    // Buckets set in code win.
    assert_eq!(
        sample(
            &metrics,
            "checkout_payment_duration_seconds_bucket",
            &[r#"le="0.1""#]
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "checkout_payment_duration_seconds_bucket",
            &[r#"le="0.5""#]
        ),
        Some(1.0)
    );
    assert_eq!(
        series_count(&metrics, "checkout_payment_duration_seconds_bucket"),
        4
    );
}

#[tokio::test]
async fn process_metrics_and_target_info_are_exposed() {
    let parts = soma_observability::Observability::builder("inventory")
        .with_config(common::config(&[
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_LOGS_EXPORTER", "none"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
        ]))
        .build()
        .unwrap();
    let app = parts.instrument(app_routes()).unwrap();
    let metrics = scrape(&app).await;
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            sample(&metrics, name, &[]).is_some(),
            "{name} missing:\n{metrics}"
        );
    }
    let info = metrics
        .lines()
        .find(|l| l.starts_with("target_info{"))
        .unwrap();
    assert!(info.contains(r#"service_name="inventory""#), "{info}");
    assert!(info.contains(r#"deployment_environment="test""#), "{info}");
    let resident = sample(&metrics, "process_resident_memory_bytes", &[]).unwrap();
    assert!(resident > 1024.0 * 1024.0, "{resident} bytes resident?");
}

#[tokio::test]
async fn collectors_registered_in_the_prometheus_registry_are_rendered() {
    let parts = build("legacy", metrics_only());
    let jobs = prometheus::IntGauge::new("legacy_jobs_queued", "Jobs waiting.").unwrap();
    jobs.set(42);
    parts.registry().register(Box::new(jobs)).unwrap();
    let app = parts.instrument(app_routes()).unwrap();
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(&metrics, "legacy_jobs_queued", &[]),
        Some(42.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE legacy_jobs_queued gauge"),
        "{metrics}"
    );
}

#[tokio::test]
async fn exposition_passes_promtool_check_metrics() {
    let parts = build("promtool", metrics_only());
    let app = parts.instrument(app_routes()).unwrap();
    get_status(&app, "/users/1").await;
    get_status(&app, "/fail").await;
    get_status(&app, "/nowhere").await;
    send(
        &app,
        Request::post("/echo").body(Body::from("hello")).unwrap(),
    )
    .await;
    let odd = parts.meter("odd.names");
    // Attribute keys that are not valid label names as they stand.
    odd.u64_counter("jobs.done")
        .with_description("Jobs done.")
        .build()
        .add(
            1,
            &[
                opentelemetry::KeyValue::new("k8s:pod", "a"),
                opentelemetry::KeyValue::new("9.lives", "b"),
                opentelemetry::KeyValue::new("ключ", "c\"\n"),
            ],
        );
    // Two keys that sanitize alike: one label, not a duplicate that would fail the scrape.
    odd.u64_counter("pods.seen")
        .with_description("Pods seen.")
        .build()
        .add(
            1,
            &[
                opentelemetry::KeyValue::new("pod_name", "q"),
                opentelemetry::KeyValue::new("pod.name", "p"),
            ],
        );
    // An attribute named like a label the exposition writes itself.
    odd.f64_histogram("queue.wait")
        .with_unit("s")
        .with_description("Time in the queue.")
        .build()
        .record(0.2, &[opentelemetry::KeyValue::new("le", "x")]);
    let metrics = scrape(&app).await;
    assert!(metrics.contains("http_server_request_duration_seconds_bucket"));
    assert!(
        metrics.contains(
            r#"queue_wait_seconds_bucket{exported_le="x",otel_scope_name="odd.names",le="0.25"} 1"#
        ),
        "{metrics}"
    );
    // The SDK does not keep the attributes' order: look for each label on the line.
    let jobs = metrics
        .lines()
        .find(|l| l.starts_with("jobs_done_total{"))
        .unwrap_or_else(|| panic!("no jobs_done_total in\n{metrics}"));
    for label in [r#"k8s_pod="a""#, r#"_9_lives="b""#, r#"____="c\"\n""#] {
        assert!(jobs.contains(label), "{label} missing: {jobs}");
    }
    assert!(
        metrics.contains(r#"pods_seen_total{pod_name="p;q",otel_scope_name="odd.names"} 1"#),
        "{metrics}"
    );
    let complaints = common::promtool_check_metrics(&metrics);
    assert!(
        complaints.trim().is_empty(),
        "promtool check metrics:\n{complaints}\n{metrics}"
    );
}

#[tokio::test]
async fn a_router_that_already_serves_metrics_is_an_error() {
    let parts = build("conflict", metrics_only());
    let router: Router = Router::new().route("/metrics", get(|| async { "mine" }));
    let err = parts.instrument(router).unwrap_err();
    assert!(
        matches!(
            err,
            soma_observability::SetupError::RouteConflict("/metrics")
        ),
        "{err}"
    );
    assert!(err.to_string().contains("already has a route at /metrics"));
}

#[tokio::test]
async fn metrics_over_a_real_socket() {
    let parts = build("socket", metrics_only());
    let app = parts.instrument(app_routes()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::new();
    for i in 0..20 {
        let status = client
            .get(format!("http://{addr}/users/{i}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    let metrics = common::scrape_socket(&client, addr).await;
    assert_eq!(
        sample(
            &metrics,
            "http_server_request_duration_seconds_count",
            &[r#"http_route="/users/{id}""#]
        ),
        Some(20.0),
        "{metrics}"
    );
    server.abort();
}

#[tokio::test]
async fn metrics_can_be_served_on_a_separate_internal_listener() {
    let mut config = metrics_only();
    config.metrics_address = Some("127.0.0.1:0".parse().unwrap());
    let parts = build("internal", config);
    let app = parts.instrument(app_routes()).unwrap();
    let internal = parts.spawn_metrics_listener().unwrap().unwrap();
    get_status(&app, "/users/1").await;
    // Not on the public router...
    assert_eq!(get_status(&app, "/metrics").await, StatusCode::NOT_FOUND);
    // ...but on the internal one.
    let metrics = common::scrape_socket(&reqwest::Client::new(), internal).await;
    assert_eq!(
        sample(
            &metrics,
            "http_server_request_duration_seconds_count",
            &[r#"http_route="/users/{id}""#]
        ),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_busy_metrics_address_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = metrics_only();
    config.metrics_address = Some(taken.local_addr().unwrap());
    let parts = build("busy", config);
    let err = parts.spawn_metrics_listener().unwrap_err();
    assert!(
        matches!(err, soma_observability::SetupError::MetricsListener { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("SOMA_METRICS_ADDR"), "{err}");
}
