//! `GET /metrics`: the Prometheus text exposition of the registry.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, TextEncoder};

/// The path the metrics endpoint is mounted on.
pub const METRICS_PATH: &str = "/metrics";

/// A router that serves the registry's metrics at [`METRICS_PATH`].
pub(crate) fn router<S>(registry: prometheus::Registry) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new().route(
        METRICS_PATH,
        get(move || std::future::ready(render_response(&registry))),
    )
}

fn render_response(registry: &prometheus::Registry) -> Response {
    match render(registry) {
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
pub(crate) fn render(registry: &prometheus::Registry) -> Result<String, prometheus::Error> {
    let families = registry.gather();
    let mut buf = Vec::with_capacity(16 * 1024);
    TextEncoder::new().encode(&families, &mut buf)?;
    String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
}
