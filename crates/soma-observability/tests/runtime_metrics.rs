//! Tokio runtime metrics on `/metrics`: the runtime that built the parts, read at every scrape.

mod common;

use std::time::{Duration, Instant};

use common::{build, config, metrics_only};
use soma_observability::Observability;

/// The value of the line `name` (with `labels`, e.g. `{tokio_worker="0"}`, or none).
fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{labels} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
}

fn busy(text: &str, worker: usize) -> f64 {
    value(
        text,
        "tokio_runtime_worker_busy_seconds_total",
        &format!("{{tokio_worker=\"{worker}\"}}"),
    )
    .unwrap_or_else(|| panic!("no busy time for worker {worker} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_worker_shows_its_busy_time_rising() {
    let parts = build("runtime", metrics_only());
    let before = parts.render_metrics().unwrap();
    assert_eq!(value(&before, "tokio_runtime_workers", ""), Some(2.0));
    let busy_before = busy(&before, 0) + busy(&before, 1);

    // Block one worker for 300 ms, as a handler doing blocking work would.
    tokio::spawn(async { std::thread::sleep(Duration::from_millis(300)) })
        .await
        .unwrap();

    // Tokio publishes a worker's busy time when it parks: poll until it has.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rise = loop {
        let text = parts.render_metrics().unwrap();
        let rise = busy(&text, 0) + busy(&text, 1) - busy_before;
        if rise >= 0.29 || Instant::now() > deadline {
            break rise;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        (0.29..3.0).contains(&rise),
        "busy time rose by {rise} s, expected ~0.3 s"
    );

    // Every value is tokio's own, read at the scrape: between two direct reads.
    let metrics = tokio::runtime::Handle::current().metrics();
    let direct = |worker| metrics.worker_total_busy_duration(worker).as_secs_f64();
    let (first, second) = (direct(0), direct(1));
    let text = parts.render_metrics().unwrap();
    let (first_after, second_after) = (direct(0), direct(1));
    assert!(first <= busy(&text, 0) + 1e-9 && busy(&text, 0) <= first_after + 1e-9);
    assert!(second <= busy(&text, 1) + 1e-9 && busy(&text, 1) <= second_after + 1e-9);
    for worker in 0..2 {
        let park_count = value(
            &text,
            "tokio_runtime_worker_parks_total",
            &format!("{{tokio_worker=\"{worker}\"}}"),
        )
        .unwrap();
        assert!(
            park_count >= 1.0,
            "worker {worker} parked {park_count} times"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::cast_precision_loss)] // task counts are small
async fn alive_tasks_and_the_global_queue_are_tokio_s_own() {
    let parts = build("runtime", metrics_only());
    let metrics = tokio::runtime::Handle::current().metrics();
    let idle = metrics.num_alive_tasks();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let mut stopped = stopped.clone();
            tokio::spawn(async move { stopped.wait_for(|s| *s).await.map(|_| ()) })
        })
        .collect();
    let text = parts.render_metrics().unwrap();
    let alive = value(&text, "tokio_runtime_alive_tasks", "").unwrap();
    assert!(
        alive >= (idle + 50) as f64 && alive <= metrics.num_alive_tasks() as f64 + 2.0,
        "alive tasks {alive}, idle {idle}"
    );
    let depth = value(&text, "tokio_runtime_global_queue_depth", "").unwrap();
    assert!((0.0..=50.0).contains(&depth), "{depth}");
    stop.send(true).unwrap();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for (name, help, kind) in [
        ("tokio_runtime_workers", "worker threads", "gauge"),
        ("tokio_runtime_alive_tasks", "tasks alive", "gauge"),
        ("tokio_runtime_global_queue_depth", "global queue", "gauge"),
        (
            "tokio_runtime_worker_busy_seconds_total",
            "utilisation",
            "counter",
        ),
        ("tokio_runtime_worker_parks_total", "parked", "counter"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# HELP {name} ")) && l.contains(help)),
            "{name}"
        );
        assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name}");
    }
    let complaints = common::promtool_check_metrics(&text);
    assert!(
        complaints.trim().is_empty(),
        "promtool:\n{complaints}\n{text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_current_thread_runtime_has_one_worker() {
    let parts = build("runtime", metrics_only());
    let text = parts.render_metrics().unwrap();
    assert_eq!(value(&text, "tokio_runtime_workers", ""), Some(1.0));
    busy(&text, 0);
    assert!(!text.contains("tokio_worker=\"1\""), "{text}");
}

#[test]
fn the_runtime_that_built_the_parts_is_measured() {
    let serving = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .build()
        .unwrap();
    let parts = serving.block_on(async { build("runtime", metrics_only()) });
    // Scraped from another runtime's thread: still the three workers of `serving`.
    let other = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let text = other.block_on(async { parts.render_metrics().unwrap() });
    assert_eq!(value(&text, "tokio_runtime_workers", ""), Some(3.0));
    busy(&text, 2);
}

#[test]
fn outside_a_runtime_there_are_no_runtime_metrics() {
    let parts = build("runtime", metrics_only());
    let text = parts.render_metrics().unwrap();
    assert!(!text.contains("tokio_runtime"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn runtime_metrics_can_be_turned_off() {
    let off = config(&[
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "none"),
        ("SOMA_RUNTIME_METRICS", "false"),
    ]);
    let text = build("runtime", off.clone()).render_metrics().unwrap();
    assert!(!text.contains("tokio_runtime"), "{text}");
    assert!(text.contains("target_info"));
    // Code beats the environment, both ways.
    let on = Observability::builder("runtime")
        .with_config(off)
        .with_runtime_metrics(true)
        .build()
        .unwrap();
    assert!(on
        .render_metrics()
        .unwrap()
        .contains("tokio_runtime_workers 1\n"));
    let code_off = Observability::builder("runtime")
        .with_config(metrics_only())
        .with_runtime_metrics(false)
        .build()
        .unwrap();
    assert!(!code_off.render_metrics().unwrap().contains("tokio_runtime"));
}
