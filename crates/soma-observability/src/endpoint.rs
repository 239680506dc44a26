//! `GET /metrics`: serves what [`Exposition`] renders, in OpenMetrics when the scraper asks for
//! it, gzipped when it accepts gzip ([`crate::openmetrics`]).
//!
//! Rendering collects the SDK's metrics, which runs the observable instruments' callbacks (the
//! team's own code): it runs on tokio's blocking pool, one scrape at a time, never on a worker
//! that serves requests. Overlapping scrapes wait for their turn without holding a thread.

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::exposition::Format;
use crate::openmetrics::Encoding;
use crate::scrape::Exposition;

/// The path the metrics endpoint is mounted on.
pub const METRICS_PATH: &str = "/metrics";

/// A router that serves the metrics at [`METRICS_PATH`].
pub(crate) fn router<S>(exposition: Exposition) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new().route(
        METRICS_PATH,
        get(move |headers: HeaderMap| render_off_workers(exposition.clone(), headers)),
    )
}

/// [`render_response`] on the blocking pool, after the scrapes before it.
async fn render_off_workers(exposition: Exposition, headers: HeaderMap) -> Response {
    let turn = Arc::clone(&exposition.turn).acquire_owned().await;
    let rendered = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        render_response(&exposition, &headers)
    })
    .await;
    rendered.unwrap_or_else(|err| {
        tracing::error!(error = %err, "rendering the metrics failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed to encode metrics\n",
        )
            .into_response()
    })
}

fn render_response(exposition: &Exposition, headers: &HeaderMap) -> Response {
    let format = crate::openmetrics::negotiate(headers.get_all(header::ACCEPT));
    let content_type = match format {
        Format::Prometheus => prometheus::TEXT_FORMAT,
        Format::OpenMetrics => crate::openmetrics::OPENMETRICS_CONTENT_TYPE,
    };
    let vary = HeaderValue::from_static("Accept, Accept-Encoding");
    let Some(encoding) = crate::openmetrics::encoding(headers.get_all(header::ACCEPT_ENCODING))
    else {
        return (
            StatusCode::NOT_ACCEPTABLE,
            [(header::VARY, vary)],
            "neither gzip nor identity is acceptable (Accept-Encoding)\n",
        )
            .into_response();
    };
    match crate::scrape::render_as(exposition, format) {
        Ok(body) if encoding == Encoding::Gzip => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
                (header::VARY, vary),
            ],
            crate::openmetrics::gzip(body.as_bytes()),
        )
            .into_response(),
        Ok(body) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::VARY, vary),
            ],
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
