//! `HttpClient`: every way of sending a request through it is instrumented (the reqwest idiom
//! `client.get(url).send()` included, for every method), over a real socket to a downstream
//! that records the `traceparent` it receives.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::any;
use axum::Router;
use common::FakeOtlp;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

/// A downstream that keeps the `traceparent` of every request it gets.
async fn downstream() -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let keep = Arc::clone(&seen);
    let app = Router::new().route(
        "/echo",
        any(move |headers: HeaderMap| {
            let keep = Arc::clone(&keep);
            async move {
                let traceparent = headers
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                keep.lock().unwrap().push(traceparent);
                "ok"
            }
        }),
    );
    let (addr, _server) = common::serve(app).await;
    (format!("http://{addr}/echo"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_of_sending_is_traced_and_measured() {
    let otlp = FakeOtlp::start().await;
    let parts = common::build("client", common::otlp_config(&otlp, "http/protobuf"));
    let client = parts.http_client(reqwest::Client::new());
    let (url, seen) = downstream().await;

    let sent = [
        client.get(&url).send().await,
        client.post(&url).body("{}").send().await,
        client.put(&url).header("x-request-id", "7").send().await,
        client.patch(&url).json(&[1, 2]).send().await,
        client.delete(&url).query(&[("id", "3")]).send().await,
        client.head(&url).send().await,
        client
            .request(reqwest::Method::OPTIONS, &url)
            .timeout(Duration::from_secs(5))
            .send()
            .await,
        // The older form, and a request built beforehand.
        client.send(client.get(&url)).await,
        client
            .execute(reqwest::Client::new().get(&url).build().unwrap())
            .await,
        client
            .get(&url)
            .map(|request| request.version(reqwest::Version::HTTP_11))
            .send()
            .await,
    ];
    for response in &sent {
        assert_eq!(response.as_ref().unwrap().status(), 200);
    }

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), sent.len());
    assert!(
        seen.iter().all(Option::is_some),
        "every request carries a traceparent: {seen:?}"
    );
    let metrics = parts.render_metrics().unwrap();
    for (method, count) in [
        ("GET", 4.0),
        ("POST", 1.0),
        ("PUT", 1.0),
        ("PATCH", 1.0),
        ("DELETE", 1.0),
        ("HEAD", 1.0),
        ("OPTIONS", 1.0),
    ] {
        assert_eq!(
            common::sample(
                &metrics,
                "http_client_request_duration_seconds_count",
                &[&format!(r#"http_request_method="{method}""#)]
            ),
            Some(count),
            "{method}: {metrics}"
        );
    }
    let spans = otlp
        .wait_for_spans(Duration::from_secs(10), |spans| {
            spans
                .iter()
                .filter(|(_, s)| s.kind == SpanKind::Client as i32)
                .count()
                >= sent.len()
        })
        .await;
    // Each downstream request carries its own CLIENT span's id.
    for traceparent in seen.iter().flatten() {
        let span_id = traceparent.split('-').nth(2).unwrap();
        assert!(
            spans
                .iter()
                .any(|(_, s)| common::hex(&s.span_id) == span_id
                    && s.kind == SpanKind::Client as i32),
            "no CLIENT span {span_id}"
        );
    }
}
