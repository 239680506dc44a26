//! `/metrics` content negotiation: the Prometheus text format for plain clients, OpenMetrics 1.0
//! for scrapers that ask for it (checked by a real Prometheus), gzip when accepted.

mod common;

use std::io::Read as _;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use common::{build, metrics_only, send};
use opentelemetry::KeyValue;
use soma_observability::ObservabilityParts;
use soma_system_tests::prometheus::{Prometheus, Target};
use soma_system_tests::wait_for;

/// The `Accept` header Prometheus 2.42 sends.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// An app with every kind of family: HTTP histograms, a counter with a unit, an up-down counter,
/// a gauge, label values and help texts that need escaping, and `prometheus` registry
/// collectors (counter, histogram).
async fn app() -> (ObservabilityParts, Router) {
    let parts = build("openmetrics", metrics_only());
    let app = common::one_route(&parts, "/users/{id}", get(|| async { "user" }));
    for _ in 0..3 {
        send(&app, Request::get("/users/1").body(Body::empty()).unwrap()).await;
    }
    let meter = parts.meter("odd");
    meter
        .u64_counter("jobs.done")
        .with_description("Jobs \"done\", with a \\ and\na newline.")
        .build()
        .add(
            2,
            &[
                KeyValue::new("queue", "a\"b\\c\nd"),
                KeyValue::new("k.ind", 1),
            ],
        );
    meter
        .f64_counter("bytes.sent")
        .with_unit("By")
        .with_description("Bytes sent.")
        .build()
        .add(1.5, &[]);
    meter
        .i64_up_down_counter("queue.depth")
        .with_description("Queued jobs.")
        .build()
        .add(-3, &[]);
    meter
        .f64_gauge("temperature")
        .with_unit("Cel")
        .with_description("Temperature.")
        .build()
        .record(21.5, &[]);
    let legacy =
        prometheus::IntCounter::new("legacy_requests_total", "Legacy \"requests\".").unwrap();
    legacy.inc_by(7);
    parts.registry().register(Box::new(legacy)).unwrap();
    let legacy_latency = prometheus::Histogram::with_opts(
        prometheus::HistogramOpts::new("legacy_latency_seconds", "Legacy latency.")
            .buckets(vec![0.1, 1.0]),
    )
    .unwrap();
    legacy_latency.observe(0.5);
    parts.registry().register(Box::new(legacy_latency)).unwrap();
    (parts, app)
}

async fn scrape_with(
    app: &Router,
    headers: &[(header::HeaderName, &str)],
) -> (axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::get("/metrics");
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let (status, headers, body) = send(app, request.body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    (headers, body.to_vec())
}

/// The exposition without the process families, whose values move between two scrapes.
fn without_process(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.contains("process_")).collect()
}

#[tokio::test]
async fn plain_clients_get_the_prometheus_text_format_unchanged() {
    let (parts, app) = app().await;
    for accept in [
        None,
        Some("*/*"),
        Some("text/plain; version=0.0.4"),
        Some("application/json"),
    ] {
        let headers: Vec<_> = accept.map(|a| (header::ACCEPT, a)).into_iter().collect();
        let (headers, body) = scrape_with(&app, &headers).await;
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "text/plain; version=0.0.4",
            "{accept:?}"
        );
        assert!(headers.get(header::CONTENT_ENCODING).is_none());
        let text = String::from_utf8(body).unwrap();
        // Byte for byte what `render_metrics` (the Prometheus text writer) gives.
        assert_eq!(
            without_process(&text),
            without_process(&parts.render_metrics().unwrap())
        );
        assert!(text.contains("# TYPE jobs_done_total counter\n"), "{text}");
        assert!(text.contains("# TYPE target_info gauge\n"), "{text}");
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn scrapers_that_ask_for_openmetrics_get_it() {
    let (_parts, app) = app().await;
    let (headers, body) = scrape_with(&app, &[(header::ACCEPT, PROMETHEUS_ACCEPT)]).await;
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(headers[header::VARY], "Accept, Accept-Encoding");
    let text = String::from_utf8(body).unwrap();
    for expected in [
        // A counter's family has no `_total`; its sample does.
        "# HELP jobs_done Jobs \\\"done\\\", with a \\\\ and\\na newline.\n# TYPE jobs_done counter\njobs_done_total{",
        r#"queue="a\"b\\c\nd""#,
        "# TYPE bytes_sent_bytes counter\n# UNIT bytes_sent_bytes bytes\nbytes_sent_bytes_total{",
        "# TYPE http_server_request_duration_seconds histogram\n# UNIT http_server_request_duration_seconds seconds\n",
        "# TYPE queue_depth gauge\nqueue_depth{",
        "# UNIT temperature_celsius celsius\n",
        // The resource is an info family.
        "# HELP target Target metadata\n# TYPE target info\ntarget_info{",
        "# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total ",
        "# TYPE legacy_requests counter\nlegacy_requests_total 7\n",
        "# TYPE legacy_latency_seconds histogram\n",
        "legacy_latency_seconds_bucket{le=\"+Inf\"} 1\n",
    ] {
        assert!(text.contains(expected), "{expected:?} missing in\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1);
    // No family is announced twice, and every `# TYPE` name is unique.
    let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let total = types.len();
    types.sort_unstable();
    types.dedup();
    assert_eq!(types.len(), total, "{text}");
}

#[tokio::test]
async fn gzip_when_the_scraper_accepts_it() {
    let (_parts, app) = app().await;
    for (accept, eof) in [(PROMETHEUS_ACCEPT, true), ("*/*", false)] {
        let (headers, body) = scrape_with(
            &app,
            &[(header::ACCEPT, accept), (header::ACCEPT_ENCODING, "gzip")],
        )
        .await;
        assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.contains("jobs_done_total{"), "{text}");
        assert_eq!(text.ends_with("# EOF\n"), eof);
        assert!(
            body.len() < text.len() / 2,
            "{} of {}",
            body.len(),
            text.len()
        );
    }
    let (headers, _) = scrape_with(&app, &[(header::ACCEPT_ENCODING, "gzip;q=0, br")]).await;
    assert!(headers.get(header::CONTENT_ENCODING).is_none());
}

/// A real Prometheus (which asks for OpenMetrics and gzip) scrapes every family without an
/// error: one malformed line would fail the whole scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_openmetrics_exposition() {
    let (_parts, app) = app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let prometheus = Prometheus::start(&[Target {
        job: "om".to_owned(),
        address,
    }])
    .await;
    let scraped = wait_for("a successful scrape", Duration::from_secs(30), || {
        let prometheus = &prometheus;
        async move {
            let up = prometheus.query(r#"up{job="om"}"#).await.ok()?;
            (up.first()?["value"][1] == "1").then_some(())?;
            prometheus
                .query(r#"scrape_samples_scraped{job="om"}"#)
                .await
                .ok()?
                .first()
                .cloned()
        }
    })
    .await;
    let samples: f64 = scraped["value"][1].as_str().unwrap().parse().unwrap();
    assert!(samples > 40.0, "{samples} samples scraped");
    assert_eq!(
        prometheus.scrape_errors().await,
        vec![("om".to_owned(), String::new())]
    );
    for (query, value) in [
        (r#"jobs_done_total{queue="a\"b\\c\nd"}"#, "2"),
        ("bytes_sent_bytes_total", "1.5"),
        ("queue_depth", "-3"),
        ("temperature_celsius", "21.5"),
        ("legacy_requests_total", "7"),
        (r#"legacy_latency_seconds_bucket{le="1.0"}"#, "1"),
        ("sum(http_server_request_duration_seconds_count)", "3"),
        (r#"count(target_info{service_name="openmetrics"})"#, "1"),
        ("count(process_cpu_seconds_total)", "1"),
    ] {
        let result = prometheus.query(query).await.unwrap();
        assert_eq!(
            result.first().map(|r| r["value"][1].clone()),
            Some(value.into()),
            "{query}: {result:?}"
        );
    }
    prometheus.stop().await;
    server.abort();
}

/// Every `Accept` line counts (a proxy may split the header), and a client that refuses
/// identity (`identity;q=0`) gets gzip, not the plain text it refused.
#[tokio::test]
async fn every_accept_line_counts_and_identity_can_be_refused() {
    let (_parts, app) = app().await;
    let request = Request::get("/metrics")
        .header(header::ACCEPT, "text/plain;q=0.5")
        .header(header::ACCEPT, "application/openmetrics-text;version=1.0.0")
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = send(&app, request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{headers:?}"
    );

    let request = Request::get("/metrics")
        .header(header::ACCEPT_ENCODING, "identity;q=0")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers
            .get(header::CONTENT_ENCODING)
            .map(axum::http::HeaderValue::as_bytes),
        Some(&b"gzip"[..]),
        "{headers:?}"
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("# TYPE"), "{text}");

    let request = Request::get("/metrics")
        .header(header::ACCEPT_ENCODING, "gzip;q=0, identity;q=0")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, request).await.0, StatusCode::NOT_ACCEPTABLE);
}
