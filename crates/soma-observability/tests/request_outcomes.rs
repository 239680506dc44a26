//! Every request that reached the layer is counted exactly once, whatever wraps it: a team's
//! own middleware before or after setup, a client that goes away before the response or in
//! the middle of a stream. Over a real socket where a client is involved.

mod common;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use common::{metrics_only, sample, scrape, send, series_count};
use tower_http::request_id::{MakeRequestUuid, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;

const DURATION_COUNT: &str = "http_server_request_duration_seconds_count";

/// Parts whose spans go to `otlp` quickly, no logs, with one more variable `extra`.
fn traced(
    otlp: &common::FakeOtlp,
    service: &str,
    extra: (&str, &str),
) -> soma_observability::ObservabilityParts {
    let endpoint = otlp.http_endpoint();
    let config = common::config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_LOGS_EXPORTER", "none"),
        extra,
    ]);
    common::build(service, config)
}

/// A handler that takes longer than the timeouts below.
async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "late"
}

fn timeout() -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_millis(50))
}

#[tokio::test]
async fn a_timeout_added_before_setup_is_counted_with_its_status() {
    let parts = common::build("timeouts", metrics_only());
    // The team's own layer first, then the crate's: it sees the timeout's answer.
    let app = parts
        .instrument(Router::new().route("/slow", get(slow)).layer(timeout()))
        .unwrap();
    assert_eq!(
        common::get(&app, "/slow").await,
        StatusCode::REQUEST_TIMEOUT
    );
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(
            &metrics,
            DURATION_COUNT,
            &[
                r#"http_route="/slow""#,
                r#"http_response_status_code="408""#
            ]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(series_count(&metrics, DURATION_COUNT), 1, "{metrics}");
}

#[tokio::test]
async fn a_timeout_added_after_setup_still_counts_the_request_as_cancelled() {
    let parts = common::build("timeouts", metrics_only());
    // The team's layer added to what setup returned: it drops the crate's future and answers
    // itself. The request is still in the rate, marked as not completed by the service.
    let app = parts
        .instrument(Router::new().route("/slow", get(slow)))
        .unwrap()
        .layer(timeout());
    assert_eq!(
        common::get(&app, "/slow").await,
        StatusCode::REQUEST_TIMEOUT
    );
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(
            &metrics,
            DURATION_COUNT,
            &[r#"http_route="/slow""#, r#"error_type="cancelled""#]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "http_server_active_requests", &[]),
        Some(0.0),
        "{metrics}"
    );
}

/// An endless server-sent stream, one chunk at a time.
fn stream() -> Body {
    let chunks = futures_util::stream::unfold(0u64, |i| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Some((
            Ok::<_, std::io::Error>(Bytes::from(format!("data: {i}\n\n"))),
            i + 1,
        ))
    });
    Body::from_stream(chunks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_a_stream_is_counted_as_aborted_with_its_status() {
    let parts = common::build("streams", metrics_only());
    let app = parts
        .instrument(
            Router::new()
                .route("/events", get(|| async { stream() }))
                .route("/ok", get(|| async { "ok" })),
        )
        .unwrap();
    let (addr, _server) = common::serve(app.clone()).await;
    let client = reqwest::Client::new();
    let mut response = client
        .get(format!("http://{addr}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for _ in 0..3 {
        response.chunk().await.unwrap().unwrap();
    }
    drop(response); // the client goes away after three events
    assert_eq!(
        common::get_status(&client, &format!("http://{addr}/ok")).await,
        200
    );
    let metrics = soma_system_tests::wait_for(
        "the abandoned stream to be recorded",
        Duration::from_secs(5),
        || {
            let app = app.clone();
            async move {
                let metrics = scrape(&app).await;
                sample(&metrics, DURATION_COUNT, &[r#"http_route="/events""#]).map(|_| metrics)
            }
        },
    )
    .await;
    assert_eq!(
        sample(
            &metrics,
            DURATION_COUNT,
            &[
                r#"http_route="/events""#,
                r#"http_response_status_code="200""#,
                r#"error_type="aborted""#
            ]
        ),
        Some(1.0),
        "{metrics}"
    );
    // A response sent to its end is not aborted.
    assert_eq!(
        sample(&metrics, DURATION_COUNT, &[r#"http_route="/ok""#]),
        Some(1.0)
    );
    assert!(
        !metrics
            .lines()
            .any(|l| l.contains(r#"http_route="/ok""#) && l.contains("error_type")),
        "{metrics}"
    );
}

#[tokio::test]
async fn responses_without_a_body_are_complete() {
    let parts = common::build("bodiless", metrics_only());
    let app = parts
        .instrument(
            Router::new()
                .route("/items", get(|| async { "item" }))
                .route(
                    "/gone",
                    axum::routing::delete(|| async { StatusCode::NO_CONTENT }),
                ),
        )
        .unwrap();
    // HEAD: the server sends no body; 204: there is none. Neither response is read here.
    for request in [
        Request::head("/items").body(Body::empty()).unwrap(),
        Request::delete("/gone").body(Body::empty()).unwrap(),
    ] {
        let response = tower::ServiceExt::oneshot(app.clone(), request)
            .await
            .unwrap();
        assert!(response.status().is_success());
        drop(response);
    }
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(&metrics, DURATION_COUNT, &[r#"http_request_method="HEAD""#]),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            DURATION_COUNT,
            &[r#"http_response_status_code="204""#]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(!metrics.contains("error_type"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_set_outside_the_layer_is_what_header_capture_records() {
    let otlp = common::FakeOtlp::start().await;
    let parts = traced(
        &otlp,
        "request-ids",
        (
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
            "x-request-id",
        ),
    );
    let request_id = HeaderName::from_static("x-request-id");
    // The guide's placement: request ids are made outside the crate's layer (after setup), so
    // its span sees the id the rest of the service logs.
    let app = parts
        .instrument(Router::new().route("/items", get(|| async { "item" })))
        .unwrap()
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid));
    let (status, _, _) = send(&app, Request::get("/items").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let [span] = common::wait_for_named_spans(&otlp, Duration::from_secs(10), ["GET /items"]).await;
    let ids = common::strings(&span.attributes, "http.request.header.x-request-id")
        .expect("the generated request id is captured");
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].len(), 36, "a UUID: {ids:?}");
}

#[tokio::test]
async fn a_route_template_hook_that_panics_costs_only_the_route() {
    let parts = soma_observability::Observability::builder("hooks")
        .with_config(metrics_only())
        .with_route_template(|uri| match uri.path() {
            "/boom" => panic!("the team's hook has a bug"),
            path if path.starts_with("/items/") => Some("/items/{id}"),
            _ => None,
        })
        .build()
        .unwrap();
    let service = tower::service_fn(|_: Request<Body>| async {
        Ok::<_, std::convert::Infallible>(axum::response::Response::new(Body::from("ok")))
    });
    let app = parts.instrument_service(service).unwrap();
    for path in ["/boom", "/items/3"] {
        let (status, _, body) = send(&app, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]), "{path}");
    }
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(&metrics, DURATION_COUNT, &[r#"http_route="/items/{id}""#]),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(series_count(&metrics, DURATION_COUNT), 2, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_a_team_adds_to_the_sensitive_ones_are_redacted_in_queries_too() {
    let otlp = common::FakeOtlp::start().await;
    let parts = traced(
        &otlp,
        "tenants",
        (
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS",
            "x-tenant-key",
        ),
    );
    let app = parts
        .instrument(Router::new().route("/items", get(|| async { "item" })))
        .unwrap();
    let (addr, _server) = common::serve(app).await;
    let client = parts.http_client(reqwest::Client::new());
    let response = client
        .get(format!("http://{addr}/items?x_tenant_key=S3CRET&q=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let spans = otlp
        .wait_for_spans(Duration::from_secs(10), |spans| spans.len() >= 2)
        .await;
    let server = &spans
        .iter()
        .find(|(_, s)| s.name == "GET /items")
        .unwrap()
        .1;
    assert_eq!(
        common::string_attr(&server.attributes, "url.query").as_deref(),
        Some("x_tenant_key=REDACTED&q=1")
    );
    let client_span = &spans.iter().find(|(_, s)| s.name == "GET").unwrap().1;
    let full = common::string_attr(&client_span.attributes, "url.full").unwrap();
    assert!(full.ends_with("?x_tenant_key=REDACTED&q=1"), "{full}");
    assert!(!otlp.raw_bytes().windows(6).any(|w| w == b"S3CRET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_a_content_length_sent_to_its_end_is_complete() {
    let parts = common::build("downloads", metrics_only());
    // A file served as a stream with its length: the server stops polling once it has written
    // that many bytes, without asking the body whether it ended.
    let download = || async {
        let chunks = futures_util::stream::iter(
            ["first ", "second ", "third"].map(|c| Ok::<_, std::io::Error>(Bytes::from(c))),
        );
        axum::response::Response::builder()
            .header("content-length", "18")
            .body(Body::from_stream(chunks))
            .unwrap()
    };
    let app = parts
        .instrument(Router::new().route("/file", get(download)))
        .unwrap();
    let (addr, _server) = common::serve(app.clone()).await;
    let client = reqwest::Client::new();
    let text = common::get_text(&client, &format!("http://{addr}/file")).await;
    assert_eq!(text, "first second third");
    let metrics =
        soma_system_tests::wait_for("the download recorded", Duration::from_secs(5), || {
            let app = app.clone();
            async move {
                let metrics = scrape(&app).await;
                sample(&metrics, DURATION_COUNT, &[r#"http_route="/file""#]).map(|_| metrics)
            }
        })
        .await;
    assert_eq!(
        sample(
            &metrics,
            DURATION_COUNT,
            &[
                r#"http_route="/file""#,
                r#"http_response_status_code="200""#
            ]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(!metrics.contains("error_type"), "{metrics}");
}
