//! The exporter-loop guard hides only the exporters' own crates: events of application
//! middleware such as `tower_http` (whose name starts like the exporters' `tower`) reach OTLP
//! logs.
//!
//! Own test binary: it sets a `tracing` default subscriber, and `tracing`'s callsite interest
//! cache is shared by every test of a process.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use common::{build, otlp_config, FakeOtlp};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

const WAIT: Duration = Duration::from_secs(10);

fn body_of(log: &opentelemetry_proto::tonic::logs::v1::LogRecord) -> String {
    format!("{:?}", log.body)
}

#[tokio::test(flavor = "current_thread")]
async fn tower_http_events_reach_otlp_logs() {
    let otlp = FakeOtlp::start().await;
    let parts = build("middleware", otlp_config(&otlp, "http/protobuf"));
    let routes = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/panic",
            get(|| async {
                panic!("boom in the handler");
                #[allow(unreachable_code)]
                ""
            }),
        )
        // tower_http::catch_panic logs the panic; tower_http::trace::on_response each response.
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http().on_response(DefaultOnResponse::new().level(Level::INFO)));
    let app = parts.instrument(routes).unwrap();
    let _default = tracing::subscriber::set_default(parts.subscriber());

    assert_eq!(common::get(&app, "/ok").await, StatusCode::OK);
    assert_eq!(
        common::get(&app, "/panic").await,
        StatusCode::INTERNAL_SERVER_ERROR
    );

    let logs = otlp
        .wait_for_logs(WAIT, |logs| {
            let bodies: Vec<String> = logs.iter().map(body_of).collect();
            bodies
                .iter()
                .any(|b| b.contains("Service panicked: boom in the handler"))
                && bodies
                    .iter()
                    .filter(|b| b.contains("finished processing request"))
                    .count()
                    == 2
        })
        .await;
    let panic = logs
        .iter()
        .find(|l| body_of(l).contains("Service panicked"))
        .unwrap();
    assert_eq!(panic.severity_text, "ERROR", "{panic:?}");
    assert_eq!(
        panic.trace_id.len(),
        16,
        "the panic log carries the request's trace id: {panic:?}"
    );
}
