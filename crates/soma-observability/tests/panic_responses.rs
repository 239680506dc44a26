//! What the client and `/metrics` see of a panic without the OTLP pipelines: with
//! `with_catch_panic(false)`, and over HTTP/2. (The span and log side is in `panics.rs`.)

mod common;

use axum::body::Bytes;
use axum::http::Request;
use axum::Router;
use common::{build, metrics_only, panic_routes, sample, serve};

fn routes() -> Router {
    panic_routes(std::sync::Arc::new(tokio::sync::Notify::new()))
}

#[tokio::test(flavor = "current_thread")]
async fn without_catch_panic_the_connection_drops_but_the_panic_is_still_recorded() {
    let parts = soma_observability::Observability::builder("uncaught")
        .with_config(metrics_only())
        .with_catch_panic(false)
        .build()
        .unwrap();
    let (addr, server) = serve(parts.instrument(routes()).unwrap()).await;
    let client = reqwest::Client::new();
    // As without this crate: hyper drops the connection, the client gets no response.
    let err = client
        .get(format!("http://{addr}/panic"))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status(), "{err:?}");
    let metrics = parts.render_metrics().unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("http_server_request_duration_seconds_count{")
                && l.contains(r#"http_route="/panic""#)
        })
        .unwrap_or_else(|| panic!("the panicked request is in no metric:\n{metrics}"));
    assert!(line.contains(r#"error_type="panic""#), "{line}");
    assert!(line.ends_with(" 1"), "{line}");
    assert!(!line.contains("http_response_status_code"), "{line}");
    assert_eq!(
        sample(&metrics, "http_server_active_requests", &[]),
        Some(0.0),
        "{metrics}"
    );
    // The server itself survives (only the connection's task ended).
    assert_eq!(
        common::get_status(&client, &format!("http://{addr}/ok")).await,
        200
    );
    server.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn over_http2_a_panicking_body_resets_its_stream_and_spares_the_connection() {
    use http_body_util::BodyExt;
    let parts = build("h2-panic", metrics_only());
    let go = std::sync::Arc::new(tokio::sync::Notify::new());
    let (addr, server) = serve(parts.instrument(panic_routes(go.clone())).unwrap()).await;
    let (mut sender, driver) = common::h2c_connect(addr).await;
    let get = |path: &str| {
        Request::get(format!("http://{addr}{path}"))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap()
    };

    let response = sender.send_request(get("/stream-panic")).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "first chunk");
    go.notify_one();
    assert!(
        body.frame().await.unwrap().is_err(),
        "the stream is reset, not ended"
    );

    // The other streams of the connection are untouched.
    let response = sender.send_request(get("/ok")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "ok"
    );

    let metrics = parts.render_metrics().unwrap();
    assert_eq!(
        sample(
            &metrics,
            "http_server_request_duration_seconds_count",
            &[
                r#"http_route="/stream-panic""#,
                r#"network_protocol_version="2""#,
                r#"http_response_status_code="200""#,
                r#"error_type="panic""#,
            ]
        ),
        Some(1.0),
        "{metrics}"
    );
    drop(sender);
    driver.abort();
    server.abort();
}
