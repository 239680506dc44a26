//! `/metrics` byte for byte: a registry with every kind of instrument rendered in the Prometheus
//! text format and in OpenMetrics, compared with golden texts written by the writer before its
//! optimizations (`tests/golden/`). Dashboards and alert rules key on these names, labels and
//! formats: a change here must be deliberate.
//!
//! Two things move from one run to the next and are normalized before the comparison: the
//! process and tokio runtime metrics' values (replaced by `<value>`; names and labels are kept;
//! the runtime metrics appear in OpenMetrics, scraped on a tokio runtime) and the order of
//! the series inside a family (the SDK keeps them in a hash map with a random seed): each
//! family's sample lines are sorted by their labels without `le`, stably, so a histogram's
//! buckets, sum and count stay in their order.
//!
//! To rewrite the golden texts after a deliberate change:
//! `UPDATE_GOLDEN=1 cargo test -p soma-observability --test exposition_golden`.

mod common;

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{header, Request};
use axum::Router;
use common::{build, metrics_only, send};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use soma_observability::ObservabilityParts;

/// Every kind of instrument, several scopes, names and attributes that need sanitizing,
/// escaping or merging, and `prometheus` registry collectors.
#[allow(clippy::too_many_lines)] // one registry, read from top to bottom
fn registry() -> ObservabilityParts {
    let parts = build("golden", metrics_only());
    let provider = parts.meter_provider();
    // A scope without a version, with the crate's default seconds buckets.
    let app = parts.meter("golden.app");
    // A scope with a version and attributes (scope attributes are not labels).
    let lib = provider.meter_with_scope(
        InstrumentationScope::builder("golden.lib")
            .with_version("1.2.3")
            .with_attributes([KeyValue::new("scope.attr", "x")])
            .build(),
    );
    // A scope whose name needs escaping in a label value.
    let odd = provider.meter_with_scope(InstrumentationScope::builder("odd \"scope\"\\").build());

    // Counters: integer and float, with units, attributes of every value type, keys that need
    // sanitizing, a collision (`a.b` / `a_b`), a reserved name, a name already ending in
    // `_total`, several series.
    let jobs = app
        .u64_counter("jobs.done")
        .with_unit("{job}")
        .with_description("Jobs \"done\", with a \\ and\na newline.")
        .build();
    jobs.add(2, &[KeyValue::new("queue", "a\"b\\c\nd")]);
    jobs.add(5, &[KeyValue::new("queue", "fast")]);
    jobs.add(1, &[]);
    jobs.add(
        3,
        &[
            // In key order: the SDK keeps a set given in another order under both orders, and
            // which one a collect meets first changes from one process to the next.
            KeyValue::new("9lives", true),
            KeyValue::new("big", i64::MIN),
            KeyValue::new("k.ind", 1),
            KeyValue::new("otel.scope.name", "spoof"),
            KeyValue::new("é.x", 2.5),
        ],
    );
    jobs.add(
        4,
        &[
            KeyValue::new("c", "x"),
            KeyValue::new("a_b", "2"),
            KeyValue::new("a.b", "1"),
        ],
    );
    jobs.add(
        6,
        &[KeyValue::new(
            "list",
            Value::Array(Array::String(vec![
                StringValue::from("p"),
                StringValue::from("q\"r"),
            ])),
        )],
    );
    jobs.add(
        7,
        &[KeyValue::new("ints", Value::Array(Array::I64(vec![1, -2])))],
    );
    app.f64_counter("bytes.sent")
        .with_unit("By")
        .with_description("Bytes sent.")
        .build()
        .add(1.5, &[KeyValue::new("peer", "b")]);
    app.u64_counter("requests_total")
        .with_description("Already ends in _total.")
        .build()
        .add(9, &[]);
    app.f64_counter("transfer.rate")
        .with_unit("By/s")
        .with_description("A unit with a denominator.")
        .build()
        .add(0.1 + 0.2, &[]);
    app.u64_counter("no.description").build().add(1, &[]);
    // The same family in two scopes: one header, both scopes' series.
    for meter in [&app, &lib] {
        meter
            .u64_counter("shared.events")
            .with_description("Events seen by two scopes.")
            .build()
            .add(11, &[KeyValue::new("le", "reserved")]);
    }

    // Up-down counters and gauges of every number type.
    lib.i64_up_down_counter("queue.depth")
        .with_description("Queued jobs.")
        .build()
        .add(-3, &[KeyValue::new("queue", "slow")]);
    lib.f64_up_down_counter("balance")
        .with_unit("1")
        .with_description("A ratio that goes both ways.")
        .build()
        .add(-0.25, &[]);
    lib.f64_gauge("temperature")
        .with_unit("Cel")
        .with_description("Temperature.")
        .build()
        .record(21.5, &[KeyValue::new("room", "a")]);
    let floats = lib
        .f64_gauge("float.values")
        .with_description("Floats as Prometheus reads them.")
        .build();
    for (i, v) in [
        1e300,
        -0.0,
        3.0,
        1e15,
        0.005,
        9_007_199_254_740_993.0,
        -12.5,
    ]
    .into_iter()
    .enumerate()
    {
        floats.record(v, &[KeyValue::new("i", i64::try_from(i).unwrap())]);
    }
    lib.u64_gauge("memory.limit")
        .with_unit("MiBy")
        .with_description("A u64 gauge.")
        .build()
        .record(u64::MAX, &[]);
    lib.i64_gauge("offset")
        .with_unit("ms")
        .with_description("An i64 gauge.")
        .build()
        .record(-7, &[]);

    // Histograms: the crate's seconds buckets, the SDK's default buckets, custom buckets, u64.
    let latency = app
        .f64_histogram("work.duration")
        .with_unit("s")
        .with_description("Work latency.")
        .build();
    for v in [0.003, 0.02, 0.7, 12.0] {
        latency.record(v, &[KeyValue::new("kind", "a")]);
    }
    latency.record(
        0.04,
        &[KeyValue::new("kind", "b"), KeyValue::new("le", "x")],
    );
    provider
        .meter("golden.sdk")
        .f64_histogram("payload.size")
        .with_unit("KBy")
        .with_description("SDK default buckets.")
        .build()
        .record(30.0, &[]);
    let custom = odd
        .u64_histogram("batch.items")
        .with_description("Custom buckets.")
        .with_boundaries(vec![1.0, 2.5, 10.0])
        .build();
    for v in [0, 2, 3, 50] {
        custom.record(v, &[KeyValue::new("source", "x\ny")]);
    }

    // Observable instruments.
    app.u64_observable_counter("polls")
        .with_description("An observable counter.")
        .with_callback(|o| o.observe(17, &[KeyValue::new("poller", "p")]))
        .build();
    app.f64_observable_counter("cpu.used")
        .with_unit("s")
        .with_description("An observable float counter.")
        .with_callback(|o| o.observe(2.75, &[]))
        .build();
    lib.i64_observable_up_down_counter("connections")
        .with_unit("{connection}")
        .with_description("An observable up-down counter.")
        .with_callback(|o| {
            o.observe(4, &[KeyValue::new("state", "idle")]);
            o.observe(-1, &[KeyValue::new("state", "odd")]);
        })
        .build();
    lib.f64_observable_gauge("load")
        .with_description("An observable gauge.")
        .with_callback(|o| o.observe(0.5, &[]))
        .build();
    odd.u64_observable_gauge("threads")
        .with_description("An observable u64 gauge.")
        .with_callback(|o| o.observe(8, &[]))
        .build();

    // The `prometheus` registry.
    let legacy =
        prometheus::IntCounter::new("legacy_requests_total", "Legacy \"requests\".").unwrap();
    legacy.inc_by(7);
    parts.registry().register(Box::new(legacy)).unwrap();
    let legacy_latency = prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new("legacy_latency_seconds", "Legacy latency.")
            .buckets(vec![0.1, 1.0]),
        &["path"],
    )
    .unwrap();
    legacy_latency.with_label_values(&["/a\"b"]).observe(0.5);
    parts.registry().register(Box::new(legacy_latency)).unwrap();
    let legacy_gauge = prometheus::Gauge::new("legacy_temperature", "Legacy gauge.").unwrap();
    legacy_gauge.set(-1.5);
    parts.registry().register(Box::new(legacy_gauge)).unwrap();
    parts
}

/// The text with the moving values masked and each family's samples in a fixed order.
fn normalize(text: &str) -> String {
    let mut out = String::new();
    let mut samples: Vec<&str> = Vec::new();
    let flush = |samples: &mut Vec<&str>, out: &mut String| {
        samples.sort_by_key(|line| series_key(line));
        for line in samples.drain(..) {
            out.push_str(&mask_moving_value(line));
            out.push('\n');
        }
    };
    for line in text.lines() {
        if line.starts_with('#') {
            flush(&mut samples, &mut out);
            out.push_str(line);
            out.push('\n');
        } else {
            samples.push(line);
        }
    }
    flush(&mut samples, &mut out);
    out
}

/// A sample line's labels without `le="…"`.
fn series_key(line: &str) -> String {
    let labels = match (line.find('{'), line.rfind('}')) {
        (Some(start), Some(end)) => &line[start..end],
        _ => "",
    };
    labels.split(",le=\"").next().unwrap_or_default().to_owned()
}

/// The line with its value replaced when it is one of the process or runtime metrics.
fn mask_moving_value(line: &str) -> String {
    if !(line.starts_with("process_") || line.starts_with("tokio_runtime_")) {
        return line.to_owned();
    }
    match line.rfind(' ') {
        Some(space) => format!("{} <value>", &line[..space]),
        None => line.to_owned(),
    }
}

fn check(text: &str, golden: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(golden);
    let actual = normalize(text);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write it with UPDATE_GOLDEN=1 (from the code before a change)",
            path.display()
        )
    });
    if actual != expected {
        let first = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .unwrap_or(actual.lines().count().min(expected.lines().count()));
        panic!(
            "{golden} differs from {} at line {}:\n  actual:   {:?}\n  expected: {:?}\n\n{actual}",
            path.display(),
            first + 1,
            actual.lines().nth(first),
            expected.lines().nth(first),
        );
    }
}

#[test]
fn prometheus_text_is_byte_for_byte_the_golden_one() {
    let parts = registry();
    let text = parts.render_metrics().unwrap();
    check(&text, "exposition.prom");
    // A second render (the SDK's buffers and the text's capacity reused) is the same.
    assert_eq!(
        normalize(&parts.render_metrics().unwrap()),
        normalize(&text)
    );
}

#[tokio::test]
async fn openmetrics_text_is_byte_for_byte_the_golden_one() {
    let parts = registry();
    let app: Router = parts.metrics_router();
    let scrape = || async {
        let request = Request::get("/metrics")
            .header(
                header::ACCEPT,
                "application/openmetrics-text; version=1.0.0",
            )
            .body(Body::empty())
            .unwrap();
        let (_, _, body) = send(&app, request).await;
        String::from_utf8(body.to_vec()).unwrap()
    };
    let text = scrape().await;
    check(&text, "exposition.openmetrics");
    assert_eq!(normalize(&scrape().await), normalize(&text));
}
