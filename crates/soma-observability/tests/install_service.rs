//! A service that is not an axum `Router` (a plain tower service, as a hyper service is), with
//! the one-line install: HTTP metrics with route templates from the application's hook, spans
//! named after them, `/metrics` beside it, and instruments from `get_meter` made before the
//! install bound to it. Own test binary: it installs the global providers.

mod common;

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use common::{sample, FakeOtlp};
use soma_observability::opentelemetry::KeyValue;
use soma_observability::{get_meter, Observability};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_service_gets_routes_metrics_spans_and_custom_metrics() {
    let otlp = FakeOtlp::start().await;
    // Made before the install, as a service's state is.
    let greetings = get_meter("hello")
        .u64_counter("hello.greetings")
        .with_description("Greetings sent.")
        .build();
    let service = tower::service_fn(move |request: Request<Body>| {
        let greetings = greetings.clone();
        async move {
            let path = request.uri().path().to_owned();
            let response = if let Some(name) = path.strip_prefix("/hello/") {
                greetings.add(1, &[KeyValue::new("language", "en")]);
                Response::new(Body::from(format!("hello {name}")))
            } else {
                let mut response = Response::new(Body::from("not found"));
                *response.status_mut() = StatusCode::NOT_FOUND;
                response
            };
            Ok::<_, Infallible>(response)
        }
    });
    let (app, mut guard) = Observability::builder("hello")
        .with_config(common::otlp_config(&otlp, "http/protobuf"))
        .with_route_template(|uri| uri.path().starts_with("/hello/").then_some("/hello/{name}"))
        .install_service(service)
        .unwrap();
    let (addr, _server) = common::serve(app).await;
    let client = reqwest::Client::new();
    for name in ["ada", "grace", "linus"] {
        let text = common::get_text(&client, &format!("http://{addr}/hello/{name}")).await;
        assert_eq!(text, format!("hello {name}"));
    }
    assert_eq!(
        common::get_status(&client, &format!("http://{addr}/nowhere/1")).await,
        404
    );

    let metrics = common::scrape_socket(&client, addr).await;
    assert_eq!(
        sample(
            &metrics,
            "http_server_request_duration_seconds_count",
            &[
                r#"http_route="/hello/{name}""#,
                r#"http_response_status_code="200""#
            ]
        ),
        Some(3.0),
        "{metrics}"
    );
    // No template: no `http_route`, one series for every such path.
    assert_eq!(
        sample(
            &metrics,
            "http_server_request_duration_seconds_count",
            &[r#"http_response_status_code="404""#]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(!metrics.contains("/nowhere"), "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "hello_greetings_total",
            &[r#"language="en""#, r#"otel_scope_name="hello""#]
        ),
        Some(3.0),
        "a get_meter instrument made before install_service records: {metrics}"
    );
    let [span] = common::wait_for_named_spans(
        &otlp,
        std::time::Duration::from_secs(10),
        ["GET /hello/{name}"],
    )
    .await;
    assert_eq!(
        common::string_attr(&span.attributes, "http.route").as_deref(),
        Some("/hello/{name}")
    );
    guard.shutdown().await.unwrap();
}

/// With traces off, setup says on stdout why `/metrics` carries no exemplars: the scenario runs
/// in a child process (its own globals) whose stdout is read.
#[test]
fn without_traces_setup_says_there_are_no_exemplars() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "metrics_only_child", "--nocapture", "--ignored"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let note = stdout
        .lines()
        .find(|l| l.contains("/metrics will carry no exemplars"))
        .unwrap_or_else(|| panic!("no note in {stdout}"));
    assert!(note.contains("OTEL_TRACES_EXPORTER=none"), "{note}");
}

#[tokio::test]
#[ignore = "run by without_traces_setup_says_there_are_no_exemplars in a child process"]
async fn metrics_only_child() {
    let service = tower::service_fn(|_: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::empty()))
    });
    let (_app, _guard) = Observability::builder("metrics-first")
        .with_config(common::metrics_only())
        .install_service(service)
        .unwrap();
}
