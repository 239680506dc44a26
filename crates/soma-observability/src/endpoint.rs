//! `GET /metrics`: the Prometheus text exposition of the SDK's metrics (written by
//! [`crate::exposition`]) followed by the `prometheus` registry's (the process collector and
//! anything registered there).

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, TextEncoder};

/// The path the metrics endpoint is mounted on.
pub const METRICS_PATH: &str = "/metrics";

/// Everything `/metrics` shows.
#[derive(Clone, Debug)]
pub(crate) struct Exposition {
    pub(crate) registry: prometheus::Registry,
    pub(crate) reader: Arc<opentelemetry_sdk::metrics::ManualReader>,
}

/// A router that serves the metrics at [`METRICS_PATH`].
pub(crate) fn router<S>(exposition: Exposition) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new().route(
        METRICS_PATH,
        get(move || std::future::ready(render_response(&exposition))),
    )
}

fn render_response(exposition: &Exposition) -> Response {
    match render(exposition) {
        Ok(body) => (
            [(header::CONTENT_TYPE, TextEncoder::new().format_type())],
            body,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "failed to encode metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed to encode metrics\n",
            )
                .into_response()
        }
    }
}

/// Renders every metric family in the Prometheus text format.
pub(crate) fn render(exposition: &Exposition) -> Result<String, prometheus::Error> {
    let mut text = String::with_capacity(16 * 1024);
    crate::exposition::write(&exposition.reader, &mut text)
        .map_err(|e| prometheus::Error::Msg(e.to_string()))?;
    let families = exposition.registry.gather();
    let mut buf = Vec::with_capacity(4 * 1024);
    TextEncoder::new().encode(&families, &mut buf)?;
    text.push_str(&String::from_utf8_lossy(&buf));
    Ok(text)
}
