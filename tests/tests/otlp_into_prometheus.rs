//! OTLP metrics into Prometheus 3's own OTLP receiver (`--web.enable-otlp-receiver`): one
//! service with `OTEL_METRICS_EXPORTER=prometheus,otlp` pushes to Prometheus' receiver while the
//! same Prometheus scrapes its `/metrics`, so the two forms of every series sit side by side.
//! What arrives (names, labels, resource attributes) is what `docs/integration-guide.md`
//! ("OTLP metrics into Prometheus") documents.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use soma_system_tests::prometheus::{Options, Prometheus, Target};
use soma_system_tests::services::Service;
use soma_system_tests::wait_for;

/// Resource attributes promoted to labels of every pushed series (Prometheus' `otlp:` block).
const PROMOTED: &str = "otlp:\n  promote_resource_attributes:\n    - service.version\n";

fn names(result: &[Value]) -> BTreeSet<String> {
    result
        .iter()
        .filter_map(|r| r["metric"]["__name__"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, told in order
async fn pushed_metrics_arrive_in_prometheus_3_beside_the_scraped_ones() {
    let logs = tempfile::tempdir().unwrap();
    // The service first (Prometheus scrapes its port), pushing to the port Prometheus will
    // listen on: the pusher retries until Prometheus is up.
    let prometheus_port = soma_system_tests::free_port();
    let endpoint = format!("http://127.0.0.1:{prometheus_port}/api/v1/otlp/v1/metrics");
    let service = Service::start_alone(
        "policy-engine",
        &[
            ("OTEL_METRICS_EXPORTER", "prometheus,otlp"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_LOGS_EXPORTER", "none"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.version=1.2.3,deployment.environment.name=test",
            ),
        ],
        logs.path(),
    )
    .await;
    let service_addr = service.url.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start_with(
        &[Target {
            job: "policy-engine".to_owned(),
            address: service_addr.clone(),
        }],
        &Options {
            args: vec!["--web.enable-otlp-receiver".to_owned()],
            config: PROMOTED.to_owned(),
            port: Some(prometheus_port),
            ..Options::default()
        },
    )
    .await;
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let response = client
            .post(format!("{}/v1/evaluate", service.url))
            .json(&serde_json::json!({"subject": "demo", "action": "generate", "input": "tea"}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    // Both copies present: the scrape (with `instance`) and the push (without: the resource
    // has no `service.instance.id`), of the same counter.
    let scraped = format!(r#"job="policy-engine", instance="{service_addr}""#);
    let pushed = r#"job="policy-engine", instance="""#;
    wait_for(
        "the scraped and the pushed counter",
        Duration::from_secs(30),
        || {
            let (prometheus, scraped) = (&prometheus, &scraped);
            async move {
                let a = prometheus
                    .query(&format!("policy_decisions_total{{{scraped}}}"))
                    .await
                    .ok()?;
                let b = prometheus
                    .query(&format!("policy_decisions_total{{{pushed}}}"))
                    .await
                    .ok()?;
                (!a.is_empty() && !b.is_empty()).then_some(())
            }
        },
    )
    .await;
    let scraped_series = prometheus.query(&format!("{{{scraped}}}")).await.unwrap();
    let pushed_series = prometheus.query(&format!("{{{pushed}}}")).await.unwrap();
    // Recording rules' outputs (`job:...`) have no `instance` either: they are not pushed.
    let pushed_series: Vec<Value> = pushed_series
        .into_iter()
        .filter(|s| {
            !s["metric"]["__name__"]
                .as_str()
                .unwrap_or_default()
                .contains(':')
        })
        .collect();
    let (scraped_names, pushed_names) = (names(&scraped_series), names(&pushed_series));

    // Prometheus 3's default translation (UnderscoreEscapingWithSuffixes) gives every pushed
    // metric the name it has on /metrics: unit and `_total` suffixes, `_bucket`/`_sum`/`_count`.
    let missing: Vec<_> = pushed_names.difference(&scraped_names).collect();
    assert!(
        missing.is_empty(),
        "pushed names not on /metrics: {missing:?}"
    );
    for name in [
        "policy_decisions_total",
        "policy_evaluation_duration_seconds_bucket",
        "http_server_request_duration_seconds_bucket",
        "http_server_request_duration_seconds_count",
        "target_info",
    ] {
        assert!(
            pushed_names.contains(name),
            "{name} not pushed: {pushed_names:?}"
        );
    }
    // What only the scrape has: the process and runtime metrics, written by the exposition
    // itself rather than by OpenTelemetry instruments.
    for name in ["process_cpu_seconds_total", "tokio_runtime_workers", "up"] {
        assert!(scraped_names.contains(name), "{name} not scraped");
        assert!(!pushed_names.contains(name), "{name} pushed");
    }

    assert_labels(&pushed_series, &scraped_series);
    assert_bucket_bounds(&pushed_series, &scraped_series);

    // The same requests counted by both paths.
    let count = |selector: String| {
        let prometheus = &prometheus;
        async move {
            let result = prometheus
                .query(&format!("sum(policy_decisions_total{{{selector}}})"))
                .await
                .unwrap();
            result[0]["value"][1]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    wait_for(
        "both copies to count 5 decisions",
        Duration::from_secs(30),
        || async {
            let (a, b) = (count(scraped.clone()).await, count(pushed.to_owned()).await);
            (a == "5" && b == "5").then_some(())
        },
    )
    .await;
    prometheus.stop().await;
}

/// No `otel_scope_*` on pushed series (`promote_scope_metadata` is off), the promoted resource
/// attribute on every pushed series, the other resource attributes on `target_info` only; the
/// scraped series keep their scope labels.
fn assert_labels(pushed_series: &[Value], scraped_series: &[Value]) {
    for series in pushed_series {
        let labels = &series["metric"];
        let name = labels["__name__"].as_str().unwrap_or_default();
        assert!(labels.get("otel_scope_name").is_none(), "{labels}");
        assert_eq!(labels["service_version"], "1.2.3", "{labels}");
        if name == "target_info" {
            assert_eq!(labels["deployment_environment_name"], "test", "{labels}");
        } else {
            assert!(
                labels.get("deployment_environment_name").is_none(),
                "{labels}"
            );
        }
    }
    for series in scraped_series {
        let name = series["metric"]["__name__"].as_str().unwrap_or_default();
        if name.starts_with("policy_") || name.starts_with("http_server_") {
            assert!(
                series["metric"].get("otel_scope_name").is_some(),
                "{}",
                series["metric"]
            );
        }
    }
}

/// `le` as each path stores it.
fn assert_bucket_bounds(pushed_series: &[Value], scraped_series: &[Value]) {
    // `le` as written by each path: Prometheus 3 rewrites scraped values to the canonical
    // float (the exposition already writes them so), but stores OTLP bounds as Go formats
    // them: `1.0` scraped, `1` pushed. A selector on an integral bound matches one path only.
    let le = |series: &[Value]| -> BTreeSet<String> {
        series
            .iter()
            .filter(|s| s["metric"]["__name__"] == "http_server_request_duration_seconds_bucket")
            .filter_map(|s| s["metric"]["le"].as_str().map(str::to_owned))
            .collect()
    };
    let (scraped_le, pushed_le) = (le(scraped_series), le(pushed_series));
    assert!(
        scraped_le.contains("1.0") && !scraped_le.contains("1"),
        "{scraped_le:?}"
    );
    assert!(
        pushed_le.contains("1") && !pushed_le.contains("1.0"),
        "{pushed_le:?}"
    );
    assert!(scraped_le.contains("0.5") && pushed_le.contains("0.5"));
}
