//! SIGTERM during load: the gateway drains in-flight requests, flushes their spans, and exits
//! cleanly within the Kubernetes grace period.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use soma_system_tests::otlp::{hex, FakeOtlp};
use soma_system_tests::services::System;
use soma_system_tests::traffic::trace_id;
use soma_system_tests::{scrape, sum_of};

#[derive(Debug, Default)]
struct Outcome {
    /// Trace ids of the requests that got a response.
    completed: Vec<String>,
    /// Statuses other than 200 (there must be none).
    bad_statuses: Vec<u16>,
    /// Transport errors, with the time they happened.
    errors: Vec<(Instant, String)>,
}

/// The system exporting to a fresh receiver, the gateway's URL, a client that opens one
/// connection per request (as many independent clients would) and a demo user's token.
async fn start_logged_in() -> (FakeOtlp, System, String, reqwest::Client, String) {
    let otlp = FakeOtlp::start().await;
    let system = System::start(Some(&otlp.grpc_endpoint())).await;
    let gateway = system.gateway();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let token = soma_system_tests::traffic::login(&client, &gateway).await;
    (otlp, system, gateway, client, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, told in order
async fn sigterm_during_load_drains_flushes_and_exits_cleanly() {
    let (otlp, mut system, gateway, client, token) = start_logged_in().await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..48 {
        let (client, gateway, token, stop) =
            (client.clone(), gateway.clone(), token.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut outcome = Outcome::default();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let request = if worker % 2 == 0 {
                    client
                        .post(format!("{gateway}/v1/generate"))
                        .json(&json!({"prompt": "Explain graceful shutdown", "max_tokens": 64}))
                } else {
                    client.get(format!("{gateway}/v1/marketplace/capsules?q=text"))
                };
                match request.bearer_auth(&token).send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let id = trace_id(&response);
                        match response.bytes().await {
                            Ok(_) if status == 200 => outcome.completed.push(id),
                            Ok(_) => outcome.bad_statuses.push(status),
                            Err(err) => outcome.errors.push((Instant::now(), err.to_string())),
                        }
                    }
                    Err(err) => {
                        outcome.errors.push((Instant::now(), err.to_string()));
                        // The gateway is going away; stop like a client whose backend left.
                        break;
                    }
                }
            }
            outcome
        }));
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let terminated_at = Instant::now();
    system.service("gateway").terminate();
    let gateway_process = system.service_mut("gateway");
    let status = gateway_process
        .wait(Duration::from_secs(25))
        .await
        .expect("the gateway exits within the grace period");
    let exited_after = terminated_at.elapsed();
    stop.store(true, Ordering::Relaxed);

    let mut outcome = Outcome::default();
    for worker in workers {
        let result = worker.await.unwrap();
        outcome.completed.extend(result.completed);
        outcome.bad_statuses.extend(result.bad_statuses);
        outcome.errors.extend(result.errors);
    }
    let output = gateway_process.output();
    assert!(status.success(), "gateway exit status {status:?}\n{output}");
    assert!(
        exited_after < Duration::from_secs(15),
        "exit took {exited_after:?}"
    );
    assert!(
        outcome.completed.len() > 50,
        "only {} requests completed",
        outcome.completed.len()
    );
    assert!(
        outcome.bad_statuses.is_empty(),
        "statuses during shutdown: {:?}",
        outcome.bad_statuses
    );
    for (when, error) in &outcome.errors {
        assert!(*when >= terminated_at, "an error before SIGTERM: {error}");
    }
    // Every completed request's server span reached the collector before the process exited.
    let spans = otlp.spans();
    let gateway_traces: std::collections::HashSet<String> = spans
        .iter()
        .filter(|(service, s)| service == "gateway" && s.kind == 2)
        .map(|(_, s)| hex(&s.trace_id))
        .collect();
    let missing: Vec<_> = outcome
        .completed
        .iter()
        .filter(|id| !gateway_traces.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} completed requests have no gateway span",
        missing.len(),
        outcome.completed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_200_slow_requests_in_flight_completes_them_all() {
    let (otlp, mut system, gateway, client, token) = start_logged_in().await;
    // 200 streamed generations of 256 tokens: each takes over half a second.
    let requests: Vec<_> = (0..200)
        .map(|_| {
            let request = client
                .post(format!("{gateway}/v1/generate"))
                .bearer_auth(&token)
                .json(&json!({"prompt": "Explain draining", "max_tokens": 256, "stream": true}));
            tokio::spawn(async move {
                let response = request.send().await.map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                let id = trace_id(&response);
                let body = response.bytes().await.map_err(|e| e.to_string())?;
                Ok::<_, String>((status, id, body.len()))
            })
        })
        .collect();
    soma_system_tests::wait_for("200 requests in flight", Duration::from_secs(20), || {
        let (client, gateway) = (client.clone(), gateway.clone());
        async move {
            (sum_of(
                &scrape(&client, &gateway).await,
                "http_server_active_requests",
                "",
            ) >= 200.0)
                .then_some(())
        }
    })
    .await;
    system.service("gateway").terminate();
    let gateway_process = system.service_mut("gateway");
    let status = gateway_process
        .wait(Duration::from_secs(25))
        .await
        .expect("the gateway exits");
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        gateway_process.output()
    );
    let mut trace_ids = Vec::new();
    for request in requests {
        let (status, id, len) = request.await.unwrap().expect("an in-flight request failed");
        assert_eq!(status, 200);
        assert!(len > 256, "a streamed body was cut short ({len} bytes)");
        trace_ids.push(id);
    }
    let spans = otlp.spans();
    let exported: std::collections::HashSet<String> = spans
        .iter()
        .filter(|(service, s)| service == "gateway" && s.kind == 2)
        .map(|(_, s)| hex(&s.trace_id))
        .collect();
    let missing = trace_ids
        .iter()
        .filter(|id| !exported.contains(*id))
        .count();
    assert_eq!(
        missing, 0,
        "{missing} of 200 drained requests have no gateway span"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_hung_collector_still_exits_within_the_shutdown_deadline() {
    let otlp = FakeOtlp::start().await;
    otlp.set_behaviour(soma_system_tests::otlp::Behaviour::Hang);
    let mut system = System::start(Some(&otlp.grpc_endpoint())).await;
    let client = reqwest::Client::new();
    for _ in 0..20 {
        let status = client
            .get(format!("{}/healthz", system.gateway()))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        let _ = client
            .post(format!("{}/v1/auth/token", system.gateway()))
            .json(&json!({"user": "demo", "password": "demo-password"}))
            .send()
            .await
            .unwrap();
    }
    let started = Instant::now();
    system.service("gateway").terminate();
    let gateway_process = system.service_mut("gateway");
    let status = gateway_process.wait(Duration::from_secs(25)).await;
    let took = started.elapsed();
    let output = gateway_process.output();
    assert!(status.is_some(), "the gateway did not exit\n{output}");
    // The services' shutdown deadline is the library's default, 10 s.
    assert!(took < Duration::from_secs(12), "exit took {took:?}");
    // Telemetry the collector never took is reported, not turned into a failed stop.
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}\n{output}"
    );
}

/// The OTLP variables of a policy-engine exporting to `endpoint` over `protocol`: 10-span
/// batches, every 100 ms, and an export timeout (30 s) longer than the shutdown deadline, so a
/// hung export is still in flight when the deadline passes.
fn outage_env<'a>(endpoint: &'a str, protocol: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "30000"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
    ]
}

/// Sends `n` policy evaluations (one server span each) and checks each is answered.
async fn evaluate(client: &reqwest::Client, base: &str, n: usize) {
    for i in 0..n {
        let response = client
            .post(format!("{base}/v1/evaluate"))
            .json(
                &json!({"subject": "demo", "action": "generate", "input": format!("request {i}")}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

/// The `key=<number>` field of the service's shutdown warning.
fn reported(output: &str, key: &str) -> Option<u64> {
    let line = output
        .lines()
        .find(|l| l.contains("telemetry was lost at shutdown"))?;
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

const REQUESTS: usize = 200;

/// The collector accepts and hangs while 200 spans queue up behind the export in flight (20
/// batches), then goes down right after SIGTERM: the service keeps trying while an attempt
/// fits in the deadline, drops the rest, reports all 200 spans and exits 0 on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_collector_goes_down_exits_0_on_time_and_reports_every_lost_span() {
    let mut collector = soma_system_tests::otlp::BlackHole::start().await;
    let logs = tempfile::tempdir().unwrap();
    let endpoint = collector.endpoint();
    let mut service = soma_system_tests::services::Service::start_alone(
        "policy-engine",
        &outage_env(&endpoint, "http/protobuf"),
        logs.path(),
    )
    .await;
    let client = reqwest::Client::new();
    evaluate(&client, &service.url, REQUESTS).await;
    // One span export and one log export in flight, both hung.
    soma_system_tests::wait_for("two hung exports", Duration::from_secs(10), || async {
        (collector.accepted() >= 2).then_some(())
    })
    .await;
    let terminated = Instant::now();
    service.terminate();
    soma_system_tests::wait_for("the drain to finish", Duration::from_secs(10), || async {
        service
            .output()
            .contains("drained; flushing telemetry")
            .then_some(())
    })
    .await;
    collector.close().await;
    let status = service.wait(Duration::from_secs(25)).await;
    let took = terminated.elapsed();
    let output = service.output();
    eprintln!("exit status {status:?} after {took:?}\n{output}");
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}\n{output}"
    );
    assert!(
        took <= Duration::from_millis(10_500),
        "exit took {took:?}\n{output}"
    );
    // Nothing reached a collector: every span is reported lost, exactly.
    assert_eq!(
        reported(&output, "spans_lost"),
        Some(REQUESTS as u64),
        "{output}"
    );
    assert!(reported(&output, "log_records_lost") >= Some(1), "{output}");
    assert!(
        output.contains("dropped without another attempt"),
        "20 batches at ~0.7 s per failed export cannot all be tried in 10 s\n{output}"
    );
    assert!(output.contains("could not be reached"), "{output}");
    // Both signals warn about failed exports, each at most once per 10 s.
    assert_eq!(output.matches("span export failed").count(), 1, "{output}");
    assert_eq!(output.matches("log export failed").count(), 1, "{output}");
}

/// The collector accepts and never answers (issue 12): the export in flight is abandoned at the
/// deadline, what it held and what was queued is reported lost, and the service exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_hung_collector_and_queued_spans_exits_0_at_the_deadline() {
    let collector = soma_system_tests::otlp::BlackHole::start().await;
    let logs = tempfile::tempdir().unwrap();
    let endpoint = collector.endpoint();
    let mut service = soma_system_tests::services::Service::start_alone(
        "policy-engine",
        &outage_env(&endpoint, "grpc"),
        logs.path(),
    )
    .await;
    let client = reqwest::Client::new();
    evaluate(&client, &service.url, REQUESTS).await;
    soma_system_tests::wait_for("a hung export", Duration::from_secs(10), || async {
        (collector.accepted() >= 1).then_some(())
    })
    .await;
    let terminated = Instant::now();
    service.terminate();
    let status = service.wait(Duration::from_secs(25)).await;
    let took = terminated.elapsed();
    let output = service.output();
    eprintln!("exit status {status:?} after {took:?}\n{output}");
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}\n{output}"
    );
    assert!(
        took <= Duration::from_millis(10_500),
        "exit took {took:?}\n{output}"
    );
    assert_eq!(
        reported(&output, "spans_lost"),
        Some(REQUESTS as u64),
        "{output}"
    );
    assert!(
        output.contains("the collector did not answer in time"),
        "the loss is called what it is\n{output}"
    );
    assert!(!output.contains("network error"), "{output}");
}
