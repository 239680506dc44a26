//! `/metrics` stays valid whatever a team names its instruments and attributes: a key that
//! becomes `__name__`, a name that becomes one of the crate's own families, two names that
//! become the same, an invalid name. Each rename, merge or drop is said once in the log.

mod common;

use common::{build, logged, metrics_only, promtool_check_metrics};
use opentelemetry::KeyValue;

#[test]
fn metrics_stay_valid_whatever_the_names() {
    let parts = build("svc", metrics_only());
    let meter = parts.meter("app");
    let mut text = String::new();
    let log = logged(|| {
        // An attribute key that becomes `__name__`.
        let orders = meter
            .u64_counter("orders")
            .with_description("Orders")
            .build();
        orders.add(1, &[KeyValue::new("__name__", "fake")]);
        // A user instrument named like one of the crate's own families.
        let threads = meter
            .u64_gauge("process.threads")
            .with_description("Worker threads of the app")
            .build();
        threads.record(3, &[]);
        // Two names that become the same after sanitising.
        for name in ["jobs.done", "jobs_done"] {
            meter
                .u64_counter(name)
                .with_description("Jobs")
                .build()
                .add(1, &[]);
        }
        // Two keys that become the same label.
        let calls = meter.u64_counter("calls").with_description("Calls").build();
        calls.add(1, &[KeyValue::new("a.b", "1"), KeyValue::new("a_b", "2")]);
        // An invalid name: a no-op in the SDK.
        meter
            .u64_counter("1 bad name")
            .with_description("Never recorded")
            .build()
            .add(1, &[]);
        text = parts.render_metrics().unwrap();
        // Said once: a second scrape logs nothing new.
        let _ = parts.render_metrics().unwrap();
    });

    let complaints = promtool_check_metrics(&text);
    assert!(
        !complaints.contains("error") && !complaints.contains("duplicate"),
        "{complaints}\n{text}"
    );
    assert!(
        !text.contains("{__name__=") && !text.contains(",__name__="),
        "{text}"
    );
    assert!(text.contains(r#"exported___name__="fake""#), "{text}");
    assert_eq!(
        text.matches("# TYPE process_threads ").count(),
        1,
        "one TYPE for the crate's own family:\n{text}"
    );
    assert!(text.contains("exported_process_threads{"), "{text}");
    assert_eq!(text.matches("# TYPE jobs_done_total ").count(), 1, "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("jobs_done_total{"))
            .count(),
        1,
        "one series, not two with the same labels:\n{text}"
    );
    for said in [
        "exported___name__",
        "exported_process_threads",
        "\"jobs_done\" (counter) is left out",
        "label a_b",
        "\"1 bad name\" records nothing",
    ] {
        assert_eq!(log.matches(said).count(), 1, "{said:?} said once:\n{log}");
    }
}
