//! The OTLP log bridge cannot loop on the exporters' own logs.
//!
//! Own test binary: it sets a `tracing` default subscriber, and `tracing`'s callsite interest
//! cache is shared by every test of a process.

mod common;

use std::time::Duration;

use common::{build, otlp_config, FakeOtlp};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "current_thread")]
async fn the_log_bridge_does_not_loop() {
    let otlp = FakeOtlp::start().await;
    let mut config = otlp_config(&otlp, "http/protobuf");
    // `axum::serve=off`: the receiver runs in this process, and its own accept logs would be
    // exported like an application's. Everything else is at trace level.
    config.log_filter = "trace,axum::serve=off".to_owned();
    config.traces.exporter = soma_observability::config::ExporterKind::None;
    let parts = build("quiet", config);
    let _default = tracing::subscriber::set_default(parts.subscriber());
    tracing::info!(target: "app", "the one application log");
    otlp.wait_for_logs(WAIT, |logs| !logs.is_empty()).await;
    let exports = otlp.attempts();
    // A loop exports once per schedule delay (50 ms) forever; wait for 20 of those.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        otlp.attempts(),
        exports,
        "exports kept coming after one log"
    );
    assert_eq!(otlp.logs().len(), 1, "{:?}", otlp.logs());
}
