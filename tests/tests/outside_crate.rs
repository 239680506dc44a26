//! The crate outside this workspace (`tests/outside-crate`, the README's quick start, written as
//! a team writes a service: state with an instrument and an `HttpClient` made before setup, its
//! own middleware, the reqwest idiom; and a plain tower service beside it) records every request,
//! client call and custom metric on `/metrics` and over OTLP, and stops with exit 0 during a
//! collector outage, saying what was lost. `scripts/check-quick-start.sh` builds it (and runs
//! its unit tests, which use `soma_observability::testing`) before `cargo test`.

use std::path::PathBuf;
use std::time::Duration;

use soma_system_tests::otlp::{hex, FakeOtlp};
use soma_system_tests::services::Service;
use soma_system_tests::{repo_root, scrape};

/// A binary of the outside crate, built into the repository's `target/` by
/// `scripts/check-quick-start.sh`.
fn outside_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo_root().join("target"), PathBuf::from);
    let path = target.join("debug").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/check-quick-start.sh first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The value of the one sample of `name` whose line has every one of `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_start_records_requests_client_calls_and_custom_metrics() {
    let otlp = FakeOtlp::start().await;
    let logs = tempfile::tempdir().unwrap();
    let endpoint = otlp.http_endpoint();
    let port = soma_system_tests::free_port();
    let listen = format!("127.0.0.1:{port}");
    let own_url = format!("http://{listen}");
    let mut service = Service::start_program(
        "quick-start",
        &outside_binary("quick-start"),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
            // Scraped and pushed: the custom metric must reach both.
            ("OTEL_METRICS_EXPORTER", "prometheus,otlp"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
            ("LISTEN_ADDR", listen.as_str()),
            // It calls its own /profiles route, standing in for a second service.
            ("PROFILES_URL", own_url.as_str()),
        ],
        logs.path(),
        "/metrics",
    )
    .await;
    let client = reqwest::Client::new();
    let body = client
        .get(format!("{}/users/7", service.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "user 7: profile 7");

    let metrics = scrape(&client, &service.url).await;
    let count = "http_server_request_duration_seconds_count";
    for route in ["/users/{id}", "/profiles/{id}"] {
        assert_eq!(
            sample(&metrics, count, &[&format!(r#"http_route="{route}""#)]),
            Some(1.0),
            "{route}: {metrics}"
        );
    }
    assert_eq!(
        sample(&metrics, "http_client_request_duration_seconds_count", &[]),
        Some(1.0),
        "the client made in the state before setup records: {metrics}"
    );
    assert_eq!(
        sample(&metrics, "users_lookups_total", &[r#"outcome="found""#]),
        Some(1.0),
        "{metrics}"
    );

    // One trace: the server span, the client call, the downstream server span; the log joins it.
    let spans = otlp
        .wait_for_spans(Duration::from_secs(10), |spans| spans.len() >= 3)
        .await;
    let user = &spans
        .iter()
        .find(|(_, s)| s.name == "GET /users/{id}")
        .expect("the user request's span")
        .1;
    let trace = hex(&user.trace_id);
    for name in ["GET", "GET /profiles/{id}"] {
        assert!(
            spans
                .iter()
                .any(|(_, s)| s.name == name && hex(&s.trace_id) == trace),
            "{name} is not in trace {trace}"
        );
    }
    let logs_received = otlp
        .wait_for_logs(Duration::from_secs(10), |logs| {
            logs.iter().any(|l| hex(&l.trace_id) == trace)
        })
        .await;
    assert!(logs_received.iter().any(|l| hex(&l.trace_id) == trace));
    // Every metric over OTLP too: the request, the client call, the custom counter.
    let names = [
        "users.lookups",
        "http.server.request.duration",
        "http.client.request.duration",
    ];
    otlp.wait_for_metrics(Duration::from_secs(10), |exports| {
        names
            .iter()
            .all(|name| exports.iter().flatten().any(|m| m.name == *name))
    })
    .await;

    service.terminate();
    let status = service.wait(Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        service.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_start_exits_0_during_a_collector_outage_and_says_what_was_lost() {
    let logs = tempfile::tempdir().unwrap();
    let nowhere = format!("http://127.0.0.1:{}", soma_system_tests::free_port());
    let mut service = Service::start_program(
        "quick-start",
        &outside_binary("quick-start"),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", nowhere.as_str()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
        ],
        logs.path(),
        "/metrics",
    )
    .await;
    service.terminate();
    let status = service.wait(Duration::from_secs(20)).await;
    let output = service.output();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{output}");
    let lost = output
        .lines()
        .find(|l| l.contains("telemetry was lost at shutdown"))
        .unwrap_or_else(|| panic!("no loss reported:\n{output}"));
    assert!(lost.contains("WARN"), "{lost}");
    assert!(lost.contains("log_records_lost="), "{lost}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_tower_service_gets_routes_and_custom_metrics() {
    let logs = tempfile::tempdir().unwrap();
    let mut service = Service::start_program(
        "plain-service",
        &outside_binary("plain-service"),
        &[
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ],
        logs.path(),
        "/metrics",
    )
    .await;
    let client = reqwest::Client::new();
    for name in ["ada", "grace"] {
        let text = client
            .get(format!("{}/hello/{name}", service.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(text, format!("hello {name}"));
    }
    let metrics = scrape(&client, &service.url).await;
    assert_eq!(
        sample(
            &metrics,
            "http_server_request_duration_seconds_count",
            &[r#"http_route="/hello/{name}""#]
        ),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "hello_greetings_total", &[r#"language="en""#]),
        Some(2.0),
        "{metrics}"
    );
    service.terminate();
    assert!(service
        .wait(Duration::from_secs(15))
        .await
        .is_some_and(|s| s.success()));
}
