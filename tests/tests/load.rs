//! Heavy load through the gateway (ignored by default; run it explicitly):
//!
//! ```sh
//! cargo build --release --workspace --bins
//! SOMA_BIN_PROFILE=release cargo test --release -p soma-system-tests --test load -- --ignored --nocapture
//! ```
//!
//! 1 000 concurrent connections for a bounded time, two warm-up rounds then three identical
//! measured rounds: zero errors, the histogram `_count` equal to the requests sent, the in-flight
//! gauge back to 0, and the gateway's resident memory flat across the measured rounds (the
//! warm-up rounds fill connection pools and allocator arenas). Loopback only.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use soma_system_tests::services::System;
use soma_system_tests::{scrape, sum_of};

const CONNECTIONS: usize = 1000;
const ROUND: Duration = Duration::from_secs(8);
const WARM_UP_ROUNDS: usize = 2;
const MEASURED_ROUNDS: usize = 3;

fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "heavy: 5 x 8 s at 1 000 connections; run explicitly"]
#[allow(clippy::too_many_lines)] // one scenario, told in order
async fn a_thousand_connections_warm_up_then_three_flat_rounds() {
    let system = System::start(None).await;
    let gateway = system.gateway();
    let pid = system.service("gateway").pid();
    let setup = reqwest::Client::new();
    let token = soma_system_tests::traffic::login(&setup, &gateway).await;
    let label = r#"http_route="/v1/marketplace/capsules""#;
    let mut sent_total = 0;
    let mut rss = Vec::new();
    for round in 1..=WARM_UP_ROUNDS + MEASURED_ROUNDS {
        let sent = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let workers: Vec<_> = (0..CONNECTIONS)
            .map(|i| {
                let (sent, errors, stop) = (sent.clone(), errors.clone(), stop.clone());
                let url = format!(
                    "{gateway}/v1/marketplace/capsules?q={}",
                    ["text", "sql", "email"][i % 3]
                );
                let token = token.clone();
                tokio::spawn(async move {
                    let client = reqwest::Client::builder()
                        .pool_max_idle_per_host(1)
                        .build()
                        .unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        sent.fetch_add(1, Ordering::Relaxed);
                        match client.get(&url).bearer_auth(&token).send().await {
                            Ok(r) if r.status() == 200 => {
                                let _ = r.bytes().await;
                            }
                            _ => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(ROUND).await;
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.await.unwrap();
        }
        let elapsed = started.elapsed();
        let sent = sent.load(Ordering::Relaxed);
        sent_total += sent;
        let metrics = scrape(&setup, &gateway).await;
        let counted = sum_of(
            &metrics,
            "http_server_request_duration_seconds_count",
            label,
        );
        let in_flight = sum_of(&metrics, "http_server_active_requests", "");
        let kib = resident_kib(pid);
        rss.push(kib);
        #[allow(clippy::cast_precision_loss)]
        let rate = sent as f64 / elapsed.as_secs_f64();
        println!(
            "round {round}: {sent} requests in {elapsed:.1?} ({rate:.0}/s), errors {}, counted {counted}, in flight {in_flight}, gateway RSS {} KiB",
            errors.load(Ordering::Relaxed),
            kib
        );
        assert_eq!(errors.load(Ordering::Relaxed), 0, "round {round}: errors");
        #[allow(clippy::cast_precision_loss)]
        let expected = sent_total as f64;
        assert!(
            (counted - expected).abs() < 0.5,
            "round {round}: counted {counted}, sent {sent_total}"
        );
        assert!(
            in_flight.abs() < 0.5,
            "round {round}: {in_flight} still in flight"
        );
    }
    // Memory is flat: across the measured rounds it moves by at most 4 MiB.
    let measured = &rss[WARM_UP_ROUNDS..];
    let (low, high) = (
        measured.iter().min().unwrap(),
        measured.iter().max().unwrap(),
    );
    assert!(
        high - low <= 4096,
        "gateway RSS moved across rounds: {rss:?} KiB"
    );
}
