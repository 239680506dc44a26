//! Dropped and exported log records are counted on `/metrics`: nothing is lost silently.
//!
//! Own test binary: it sets a `tracing` default subscriber.

mod common;

use std::time::Duration;

use common::{build, otlp_config, sample, Behaviour, FakeOtlp};

#[tokio::test(flavor = "current_thread")]
async fn a_full_log_queue_counts_every_dropped_record() {
    let otlp = FakeOtlp::start().await;
    otlp.set_behaviour(Behaviour::Hang);
    let mut config = otlp_config(&otlp, "http/protobuf");
    config.logs.max_queue_size = 5;
    config.logs.max_export_batch_size = 5;
    config.logs.schedule_delay = Duration::from_secs(60);
    config.logs.timeout = Duration::from_secs(30);
    config.traces.exporter = soma_observability::config::ExporterKind::None;
    let parts = build("log-drops", config);
    {
        let _default = tracing::subscriber::set_default(parts.subscriber());
        for i in 0..20 {
            tracing::info!(target: "app", i, "an application log");
        }
    }
    let metrics = parts.render_metrics().unwrap();
    assert_eq!(
        sample(&metrics, "otel_sdk_log_dropped_total", &[]),
        Some(15.0),
        "{metrics}"
    );
}
