//! Tokio runtime metrics: how saturated the runtime that serves the application is, read from
//! tokio's stable [`RuntimeMetrics`](tokio::runtime::RuntimeMetrics) at every scrape (no
//! `tokio_unstable` needed) and written straight into the exposition, like the process metrics.
//!
//! | Prometheus name | kind | labels | from |
//! |---|---|---|---|
//! | `tokio_runtime_workers` | gauge | none | `num_workers()` (1 for a current-thread runtime) |
//! | `tokio_runtime_alive_tasks` | gauge | none | `num_alive_tasks()` |
//! | `tokio_runtime_global_queue_depth` | gauge | none | `global_queue_depth()`: tasks waiting for a worker |
//! | `tokio_runtime_worker_busy_seconds_total` | counter, s | `tokio_worker` (`0`, `1`, ...) | `worker_total_busy_duration(i)`: `rate()` is the worker's utilisation (1 = always busy) |
//! | `tokio_runtime_worker_parks_total` | counter | `tokio_worker` | `worker_park_count(i)`: times the worker went idle |
//!
//! Steal, poll and local-queue counts need `tokio_unstable` and are not written.
//!
//! The runtime is the one [`ObservabilityBuilder::build`](crate::ObservabilityBuilder::build)
//! (or [`setup_observability`](crate::setup_observability)) runs on, captured with
//! [`Handle::try_current`](tokio::runtime::Handle::try_current). Called outside a runtime, no
//! runtime metrics are written. Turn them off with `SOMA_RUNTIME_METRICS=false` or
//! [`ObservabilityBuilder::with_runtime_metrics`](crate::ObservabilityBuilder::with_runtime_metrics).
//!
//! Tokio updates a worker's busy time when the worker parks or finishes a batch of tasks, so a
//! task that blocks a worker shows up once it returns.

use crate::exposition::Format;
use tokio::runtime::Handle;

/// Reads one runtime's metrics at every scrape.
#[derive(Debug)]
pub(crate) struct RuntimeMetrics {
    handle: Handle,
}

impl RuntimeMetrics {
    /// The metrics of the runtime the caller runs on, if any.
    pub(crate) fn current() -> Option<Self> {
        Handle::try_current().ok().map(|handle| Self { handle })
    }

    /// Appends the runtime families to `out`.
    pub(crate) fn write(&self, out: &mut String, format: Format) {
        let metrics = self.handle.metrics();
        let workers = metrics.num_workers();
        gauge(
            out,
            "tokio_runtime_workers",
            "Number of worker threads of the tokio runtime that serves the application.",
            workers,
        );
        gauge(
            out,
            "tokio_runtime_alive_tasks",
            "Number of tasks alive (spawned, not yet completed) in the tokio runtime.",
            metrics.num_alive_tasks(),
        );
        gauge(
            out,
            "tokio_runtime_global_queue_depth",
            "Number of tasks waiting in the tokio runtime's global queue for a worker.",
            metrics.global_queue_depth(),
        );
        #[cfg(target_has_atomic = "64")]
        {
            header(
                out,
                format,
                "tokio_runtime_worker_busy_seconds_total",
                "Time each tokio worker thread spent busy (not parked), in seconds; its rate is the worker's utilisation.",
                "counter",
            );
            for worker in 0..workers {
                let busy = metrics.worker_total_busy_duration(worker).as_secs_f64();
                worker_line(out, "tokio_runtime_worker_busy_seconds_total", worker, busy);
            }
            header(
                out,
                format,
                "tokio_runtime_worker_parks_total",
                "Number of times each tokio worker thread parked (went idle waiting for work).",
                "counter",
            );
            for worker in 0..workers {
                let parks = metrics.worker_park_count(worker);
                worker_line(out, "tokio_runtime_worker_parks_total", worker, parks);
            }
        }
    }
}

fn header(out: &mut String, format: Format, name: &str, help: &str, kind: &str) {
    // OpenMetrics names a counter's family without the `_total` of its samples.
    let name = match (format, kind) {
        (Format::OpenMetrics, "counter") => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    for part in [
        "# HELP ",
        name,
        " ",
        help,
        "\n# TYPE ",
        name,
        " ",
        kind,
        "\n",
    ] {
        out.push_str(part);
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: usize) {
    header(out, Format::Prometheus, name, help, "gauge");
    out.push_str(name);
    out.push(' ');
    out.push_str(itoa::Buffer::new().format(value));
    out.push('\n');
}

#[cfg(target_has_atomic = "64")]
fn worker_line(out: &mut String, name: &str, worker: usize, value: impl std::fmt::Display) {
    use std::fmt::Write as _;
    out.push_str(name);
    out.push_str("{tokio_worker=\"");
    out.push_str(itoa::Buffer::new().format(worker));
    let _ = writeln!(out, "\"}} {value}");
}
