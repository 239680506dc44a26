//! The reference services under realistic traffic, scraped by a real Prometheus 3 (its default
//! scrape protocols), exporting to a real OTLP receiver: targets up with no scrape error, metrics
//! of every service queryable, every alert rule, recording rule and dashboard query backed by
//! real series, no stray `_created` series, exemplars stored, and one trace across the services.
//! Debian's Prometheus 2.42 scrapes the same services beside it (the compatibility check: older
//! fleets store the same series, with the same `le` values).
//!
//! One test function: the system takes seconds to start and fill, and each section reads what
//! the previous ones produced.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use soma_system_tests::otlp::{hex, FakeOtlp};
use soma_system_tests::prometheus::{rule_expressions, Options, Prometheus};
use soma_system_tests::promql::metric_names;
use soma_system_tests::services::System;
use soma_system_tests::{repo_root, traffic, wait_for};

/// Business and HTTP metrics each job must expose (Prometheus names, `docs/metrics-catalog.md`).
const EXPECTED: &[(&str, &[&str])] = &[
    (
        "gateway-api",
        &[
            "marketplace_capsule_executions_total",
            "marketplace_capsule_execution_failures_total",
            "marketplace_revenue_usd_total",
            "marketplace_search_duration_seconds_count",
            "gen_ai_server_time_to_first_token_seconds_count",
        ],
    ),
    (
        "orchestrator",
        &[
            "kamachiq_workflows_started_total",
            "kamachiq_workflows_completed_total",
            "kamachiq_workflows_failed_total",
            "kamachiq_decomposition_duration_seconds_count",
            "kamachiq_workflow_tasks_count",
            "kamachiq_workflows_active",
            "http_client_request_duration_seconds_count",
        ],
    ),
    (
        "policy-engine",
        &[
            "policy_decisions_total",
            "policy_evaluation_duration_seconds_count",
        ],
    ),
    (
        "identity-service",
        &[
            "identity_tokens_issued_total",
            "identity_token_verifications_total",
        ],
    ),
    (
        "slm-service",
        &[
            "slm_tokens_generated_total",
            "slm_time_to_first_token_seconds_count",
            "slm_generation_duration_seconds_count",
            "gen_ai_server_time_to_first_token_seconds_count",
            "gen_ai_server_time_per_output_token_seconds_count",
            "gen_ai_server_request_duration_seconds_count",
            "gen_ai_client_token_usage_count",
        ],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, told in order
async fn services_metrics_rules_dashboards_and_traces() {
    let otlp = FakeOtlp::start().await;
    let system = System::start(Some(&otlp.grpc_endpoint())).await;
    let prometheus = Prometheus::start(&system.targets()).await;
    let version = prometheus.version().await;
    assert!(version.starts_with("3."), "Prometheus {version}, not 3");
    let debian = Prometheus::start_with(
        &system.targets(),
        &Options {
            debian: true,
            ..Options::default()
        },
    )
    .await;
    let client = reqwest::Client::new();

    // Traffic for a few scrape intervals, so rates have samples to work with.
    let mut rounds = Vec::new();
    for _ in 0..6 {
        rounds.push(traffic::round(&client, &system.gateway()).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Every target is up.
    let targets = wait_for("every target to be up", Duration::from_secs(30), || {
        let prometheus = &prometheus;
        async move {
            let targets = prometheus.targets().await;
            (targets.len() == 5 && targets.iter().all(|(_, health)| health == "up"))
                .then_some(targets)
        }
    })
    .await;
    let jobs: BTreeSet<_> = targets.iter().map(|(job, _)| job.as_str()).collect();
    assert_eq!(
        jobs,
        BTreeSet::from([
            "gateway-api",
            "identity-service",
            "orchestrator",
            "policy-engine",
            "slm-service"
        ])
    );

    // Let Prometheus scrape what the last round produced.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Prometheus scrapes OpenMetrics (it asks for it first): every scrape of every target
    // parses, with no error.
    let errors: Vec<_> = prometheus
        .scrape_errors()
        .await
        .into_iter()
        .filter(|(_, error)| !error.is_empty())
        .collect();
    assert!(errors.is_empty(), "scrape errors: {errors:?}");
    let up = prometheus.query("up == 1").await.unwrap();
    assert_eq!(up.len(), 5, "up: {up:?}");

    // OpenMetrics `_created` lines would be stored as extra series by Prometheus 3: there are
    // none.
    let created = prometheus
        .query(r#"count by (__name__) ({__name__=~".+_created"})"#)
        .await
        .unwrap();
    assert!(created.is_empty(), "stray _created series: {created:?}");

    compare_with_prometheus_2(&prometheus, &debian).await;

    // HTTP metrics from every service, business metrics from each.
    let per_job = prometheus
        .query("sum by (job) (http_server_request_duration_seconds_count)")
        .await
        .unwrap();
    assert_eq!(per_job.len(), 5, "HTTP metrics per job: {per_job:?}");
    for (job, names) in EXPECTED {
        for name in *names {
            let result = prometheus
                .query(&format!(r#"sum({name}{{job="{job}"}})"#))
                .await
                .unwrap();
            assert!(!result.is_empty(), "{name} has no series for job {job}");
        }
    }
    // The 5xx of the deliberately failing capsule is measured as an error.
    let errors = prometheus
        .query(r#"sum(http_server_request_duration_seconds_count{job="gateway-api", error_type="502"})"#)
        .await
        .unwrap();
    assert!(!errors.is_empty(), "no 502 recorded at the gateway");
    // Every process exports its process metrics, its tokio runtime's metrics and resource.
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "tokio_runtime_workers",
        "tokio_runtime_worker_busy_seconds_total",
        "target_info",
    ] {
        let result = prometheus
            .query(&format!("count by (job) ({name})"))
            .await
            .unwrap();
        assert_eq!(result.len(), 5, "{name}: {result:?}");
    }

    // Every metric an alert or recording rule uses is emitted by a service, produced by a rule,
    // or belongs to a named external exporter. The loss metrics appear only once something is
    // lost (a counter without data points is not written): those must be in the catalog, and
    // the library's own tests show them (reliability.rs, export_limits.rs, loss_warnings.rs).
    let catalog = std::fs::read_to_string(repo_root().join("docs/metrics-catalog.md")).unwrap();
    let rules_path = repo_root().join("servicemonitors/prometheus-rules.yaml");
    let (exprs, records) = rule_expressions(&rules_path);
    let external = external_metrics();
    let mut checked = BTreeSet::new();
    for expr in &exprs {
        for name in metric_names(expr) {
            if records.contains(&name)
                || external.contains_key(&name)
                || !checked.insert(name.clone())
            {
                continue;
            }
            if ONLY_ON_LOSS.contains(&name.as_str()) {
                assert!(
                    catalog.contains(&format!("`{name}`")),
                    "the rules use {name}, which docs/metrics-catalog.md does not list"
                );
                continue;
            }
            let result = prometheus
                .query(&format!("count({{__name__=\"{name}\"}})"))
                .await
                .unwrap();
            assert!(
                !result.is_empty(),
                "the rules use {name}, which no service emits"
            );
        }
    }
    assert!(
        checked.contains("http_server_request_duration_seconds_count")
            && checked.contains("kamachiq_decomposition_duration_seconds_bucket"),
        "rule metrics checked: {checked:?}"
    );

    // Every recording rule over our own services' metrics produces series.
    recording_rules_have_data(&prometheus, &rules_path, &external).await;

    // Every dashboard query is valid, and every panel on our own services shows data.
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("dashboards/panels-index.json")).unwrap(),
    )
    .unwrap();
    let panels = index.as_array().unwrap();
    assert!(panels.len() >= 28, "{} panels", panels.len());
    let mut empty = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        for expr in panel["exprs"].as_array().unwrap() {
            let expr = substitute(expr.as_str().unwrap());
            let result = prometheus.query(&expr).await;
            let result =
                result.unwrap_or_else(|e| panic!("panel {title:?}: invalid query {expr}: {e}"));
            if panel["external"].is_null() && result.is_empty() {
                empty.push(format!("{} / {title}: {expr}", panel["dashboard"]));
            }
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );

    // One gateway request is one trace across gateway -> orchestrator -> policy-engine and
    // slm-service, with correct parent links.
    let trace_id = rounds[0].workflow_trace_id.clone();
    let spans = otlp
        .wait_for_spans(Duration::from_secs(20), |spans| {
            let services: BTreeSet<_> = spans
                .iter()
                .filter(|(_, s)| hex(&s.trace_id) == trace_id)
                .map(|(service, _)| service.as_str())
                .collect();
            ["gateway", "orchestrator", "policy-engine", "slm-service"]
                .iter()
                .all(|s| services.contains(s))
        })
        .await;
    let trace: Vec<_> = spans
        .iter()
        .filter(|(_, s)| hex(&s.trace_id) == trace_id)
        .collect();
    let by_id: HashMap<Vec<u8>, &(String, _)> = trace
        .iter()
        .map(|entry| (entry.1.span_id.clone(), *entry))
        .collect();
    let roots: Vec<_> = trace
        .iter()
        .filter(|(_, s)| s.parent_span_id.is_empty())
        .collect();
    assert_eq!(roots.len(), 1, "one root span");
    assert_eq!(roots[0].0, "gateway");
    assert_eq!(roots[0].1.name, "POST /v1/workflows");
    for (service, span) in &trace {
        if span.parent_span_id.is_empty() {
            continue;
        }
        let parent = by_id.get(&span.parent_span_id).unwrap_or_else(|| {
            panic!(
                "{service}/{}: parent span missing from the trace",
                span.name
            )
        });
        // A server span in one service is the child of a client span in another.
        if span.kind == 2 && parent.0 != *service {
            assert_eq!(
                parent.1.kind, 3,
                "{service}/{} has a non-client remote parent",
                span.name
            );
        }
    }
    let orchestrator = trace
        .iter()
        .find(|(service, s)| service == "orchestrator" && s.kind == 2)
        .expect("orchestrator server span");
    assert_eq!(by_id[&orchestrator.1.parent_span_id].0, "gateway");
    for downstream in ["policy-engine", "slm-service"] {
        assert!(
            trace.iter().any(|(service, s)| service == downstream
                && s.kind == 2
                && by_id
                    .get(&s.parent_span_id)
                    .is_some_and(|p| p.0 == "orchestrator")),
            "no {downstream} span called by the orchestrator"
        );
    }

    // From a latency bucket to its trace: the exemplars Prometheus stored for the HTTP duration
    // histogram are traces the OTLP receiver got, from every service.
    let exemplars = wait_for("exemplars from every job", Duration::from_secs(20), || {
        let prometheus = &prometheus;
        async move {
            let exemplars = prometheus
                .query_exemplars("http_server_request_duration_seconds_bucket", 10)
                .await;
            let jobs: BTreeSet<_> = exemplars.iter().map(|e| e.job.clone()).collect();
            (jobs.len() == 5).then_some(exemplars)
        }
    })
    .await;
    let received: BTreeSet<String> = otlp
        .wait_for_spans(Duration::from_secs(20), |spans| {
            let ids: BTreeSet<_> = spans.iter().map(|(_, s)| hex(&s.trace_id)).collect();
            exemplars.iter().all(|e| ids.contains(&e.trace_id))
        })
        .await
        .iter()
        .map(|(_, s)| hex(&s.trace_id))
        .collect();
    for exemplar in &exemplars {
        assert_eq!(exemplar.trace_id.len(), 32, "{exemplar:?}");
        assert_eq!(exemplar.span_id.len(), 16, "{exemplar:?}");
        assert!(
            received.contains(&exemplar.trace_id),
            "exemplar of a trace the receiver never got: {exemplar:?}"
        );
        let le: f64 = exemplar.le.parse().unwrap_or(f64::INFINITY);
        assert!(
            exemplar.value <= le,
            "exemplar outside its bucket: {exemplar:?}"
        );
    }

    prometheus.stop().await;
}

/// Debian's Prometheus 2.42 scrapes the same five services with no error, and stores the same
/// histogram bucket series (the same `le` values) as Prometheus 3: the exposition writes `le` in
/// the canonical form Prometheus 3 would rewrite it to, so selectors work on both.
async fn compare_with_prometheus_2(prometheus: &Prometheus, debian: &Prometheus) {
    let version = debian.version().await;
    assert!(
        version.starts_with("2."),
        "Debian's Prometheus is {version}"
    );
    wait_for(
        "Prometheus 2 to scrape every target",
        Duration::from_secs(30),
        || async {
            let targets = debian.targets().await;
            (targets.len() == 5 && targets.iter().all(|(_, health)| health == "up")).then_some(())
        },
    )
    .await;
    let errors: Vec<_> = debian
        .scrape_errors()
        .await
        .into_iter()
        .filter(|(_, error)| !error.is_empty())
        .collect();
    assert!(
        errors.is_empty(),
        "Prometheus {version} scrape errors: {errors:?}"
    );
    let query = "count by (job, le) (http_server_request_duration_seconds_bucket)";
    let buckets = |result: Vec<serde_json::Value>| -> BTreeSet<(String, String)> {
        result
            .iter()
            .map(|r| {
                let label = |name: &str| r["metric"][name].as_str().unwrap_or_default().to_owned();
                (label("job"), label("le"))
            })
            .collect()
    };
    let on_3 = buckets(prometheus.query(query).await.unwrap());
    let on_2 = buckets(debian.query(query).await.unwrap());
    assert!(
        on_3.contains(&("gateway-api".to_owned(), "1.0".to_owned())),
        "Prometheus 3 stores le=\"1.0\": {on_3:?}"
    );
    assert_eq!(on_2, on_3, "bucket series on Prometheus {version} and 3");
}

/// Every `record` of the rules whose metrics all come from our services (not from an external
/// exporter) has series once Prometheus has evaluated it.
async fn recording_rules_have_data(
    prometheus: &Prometheus,
    rules_path: &std::path::Path,
    external: &HashMap<String, String>,
) {
    let manifest: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(rules_path).unwrap()).unwrap();
    let mut records = Vec::new();
    for group in manifest["spec"]["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        for rule in group["rules"].as_sequence().into_iter().flatten() {
            if let (Some(record), Some(expr)) = (rule["record"].as_str(), rule["expr"].as_str()) {
                if !metric_names(expr).iter().any(|n| external.contains_key(n)) {
                    records.push(record.to_owned());
                }
            }
        }
    }
    assert!(records.len() >= 5, "recording rules: {records:?}");
    // Rules are evaluated every second; a rate needs two samples of its input.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut empty = Vec::new();
        for record in &records {
            if prometheus.query(record).await.unwrap().is_empty() {
                empty.push(record.clone());
            }
        }
        if empty.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "recording rules without data after 30 s: {empty:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `servicemonitors/external-metrics.txt`: metric name -> exporter.
/// Metrics the rules use that a service writes only once it lost something (see above).
const ONLY_ON_LOSS: &[&str] = &[
    "otel_sdk_span_dropped_total",
    "otel_sdk_log_dropped_total",
    "otel_sdk_exporter_metric_data_point_exported_total",
    "soma_metric_overflow_instruments",
];

fn external_metrics() -> HashMap<String, String> {
    std::fs::read_to_string(repo_root().join("servicemonitors/external-metrics.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((
                words.next()?.to_owned(),
                words.next().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// Grafana's template variables, as a user viewing every service would have them.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("${namespace}", ".*")
        .replace("$namespace", ".*")
        .replace("${job}", ".*")
        .replace("$job", ".*")
        .replace("$__range", "5m")
        .replace("$__interval", "15s")
}
