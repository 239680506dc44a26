//! Observable instruments' callbacks are the team's own code, run at every collection: one that
//! panics, blocks or creates an instrument costs its own values, never `/metrics` as a whole,
//! never an application request, never the next scrape.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::{build, metrics_only, sample, scrape};

/// Runs `f` on a thread of its own and gives its result, or `None` when it takes more than
/// `deadline` (the thread is left behind: the test fails rather than hangs).
fn within<T: Send + 'static>(
    deadline: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(deadline).ok()
}

#[tokio::test]
async fn a_panicking_callback_costs_only_its_own_values() {
    let parts = build("svc", metrics_only());
    let meter = parts.meter("app");
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let _bad = meter
        .u64_observable_gauge("queue.depth")
        .with_description("Jobs waiting")
        .with_callback(move |_| {
            // Panics once, then works: the first scrape loses this gauge, no later one does.
            assert_ne!(
                seen.fetch_add(1, Ordering::Relaxed),
                0,
                "queue backend unreachable"
            );
        })
        .build();
    let _good = meter
        .u64_observable_gauge("pool.size")
        .with_description("Connections")
        .with_callback(|observer| observer.observe(7, &[]))
        .build();
    let app = common::one_route(&parts, "/", axum::routing::get(|| async { "ok" }));

    for _ in 0..3 {
        // `scrape` asserts 200: before the fix, every scrape after the panic answered 500.
        let text = scrape(&app).await;
        assert_eq!(sample(&text, "pool_size", &[]), Some(7.0), "{text}");
    }
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            "soma_metrics_callback_failures_total",
            &["instrument=\"queue.depth\"", "reason=\"panic\""]
        ),
        Some(1.0),
        "the failing callback is named and counted:\n{text}"
    );
    assert!(calls.load(Ordering::Relaxed) >= 3);
}

#[test]
fn a_blocking_callback_stalls_neither_requests_nor_scrapes() {
    // The service: two workers, as on the 2-core pods the issue measured.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let parts = build("svc", metrics_only());
    let meter = parts.meter("app");
    // The callback blocks until the test releases it (or 10 s pass).
    let (release, blocked) = mpsc::channel::<()>();
    let blocked = Mutex::new(blocked);
    let _slow = meter
        .u64_observable_gauge("remote.items")
        .with_description("Items in a remote store")
        .with_callback(move |observer| {
            let _ = blocked
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
            observer.observe(1, &[]);
        })
        .build();
    let app = common::one_route(&parts, "/hello", axum::routing::get(|| async { "hi" }));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, app).await });

    // Two overlapping scrapes (an HA Prometheus pair), then application requests, each client
    // on a thread of its own as over the network.
    let client = || {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    let started = Instant::now();
    let scrapes: Vec<_> = (0..2)
        .map(|_| {
            let client = client();
            std::thread::spawn(move || {
                let text = client
                    .get(format!("http://{addr}/metrics"))
                    .send()
                    .and_then(reqwest::blocking::Response::text);
                (text, started.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let requests = client();
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let sent = Instant::now();
        let body = requests
            .get(format!("http://{addr}/hello"))
            .send()
            .and_then(reqwest::blocking::Response::text)
            .unwrap();
        assert_eq!(body, "hi");
        slowest = slowest.max(sent.elapsed());
    }
    eprintln!("slowest application request during two blocked scrapes: {slowest:?}");
    let mut scrapes_took = Duration::ZERO;
    for scrape in scrapes {
        let (text, took) = scrape.join().unwrap();
        let text = text.unwrap();
        assert!(text.contains("# TYPE"), "{text}");
        scrapes_took = scrapes_took.max(took);
    }
    eprintln!("two overlapping scrapes with a blocked callback took {scrapes_took:?}");
    // While the callback is still blocked, later scrapes skip it at once and say so.
    let text = requests
        .get(format!("http://{addr}/metrics"))
        .send()
        .and_then(reqwest::blocking::Response::text)
        .unwrap();
    drop(release);
    assert!(
        slowest < Duration::from_millis(500),
        "an application request waited {slowest:?} for a metric callback"
    );
    assert!(
        scrapes_took < Duration::from_secs(5),
        "a scrape waited {scrapes_took:?} for a callback"
    );
    assert!(
        sample(
            &text,
            "soma_metrics_callback_failures_total",
            &["instrument=\"remote.items\"", "reason=\"timeout\""]
        )
        .is_some(),
        "{text}"
    );
    runtime.shutdown_timeout(Duration::from_secs(1));
}

#[test]
fn a_callback_that_creates_an_instrument_does_not_deadlock() {
    let parts = build("svc", metrics_only());
    let meter = parts.meter("app");
    let inner = meter.clone();
    let _gauge = meter
        .u64_observable_gauge("lazy.gauge")
        .with_description("Creates a counter when called")
        .with_callback(move |observer| {
            inner
                .u64_counter("created.in.callback")
                .with_description("Made inside a callback")
                .build()
                .add(1, &[]);
            observer.observe(3, &[]);
        })
        .build();
    let parts = Arc::new(parts);
    for round in 0..3 {
        let parts = Arc::clone(&parts);
        let text = within(Duration::from_secs(8), move || {
            parts.render_metrics().unwrap()
        })
        .unwrap_or_else(|| panic!("scrape {round} deadlocked"));
        assert!(text.contains("target_info"), "{text}");
    }
    // Once the instrument exists (the late call returned), the callback's values are back.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = parts.render_metrics().unwrap();
        if sample(&text, "lazy_gauge", &[]) == Some(3.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the callback never recovered:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// With the OTLP metrics push, a callback that panics once cost the push thread: nothing was
/// pushed after it. Now only that push's value of the callback is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_callback_does_not_stop_the_metrics_push() {
    let otlp = common::FakeOtlp::start().await;
    let parts = build(
        "svc",
        common::config(&[
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_LOGS_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.http_endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
        ]),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let _gauge = parts
        .meter("app")
        .u64_observable_gauge("queue.depth")
        .with_description("Jobs waiting")
        .with_callback(move |observer| {
            assert_ne!(
                seen.fetch_add(1, Ordering::Relaxed),
                0,
                "backend unreachable"
            );
            observer.observe(5, &[]);
        })
        .build();
    let with_gauge = |export: &Vec<opentelemetry_proto::tonic::metrics::v1::Metric>| {
        export.iter().any(|m| m.name == "queue.depth")
    };
    let exports = otlp
        .wait_for_metrics(Duration::from_secs(10), |exports| {
            exports.iter().filter(|e| with_gauge(e)).count() >= 3
        })
        .await;
    assert!(exports.iter().filter(|e| with_gauge(e)).count() >= 3);
    assert!(calls.load(Ordering::Relaxed) >= 4);
}
