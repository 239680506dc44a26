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
    assert!(status.is_some(), "the gateway did not exit");
    // The services' shutdown deadline is the library's default, 10 s.
    assert!(took < Duration::from_secs(12), "exit took {took:?}");
}
