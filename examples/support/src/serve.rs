//! The serve loop and the health routes.

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use soma_observability::ObservabilityGuard;

use crate::config::ServiceConfig;

/// `GET /healthz` (the process is up) and `GET /readyz` (it accepts requests), both `200 ok`.
/// The telemetry layer neither measures nor traces them.
pub fn health_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
}

/// Binds `config.listen_addr`, logs it, serves `router` until SIGTERM or SIGINT, lets requests
/// in flight finish within the drain deadline (`SOMA_SHUTDOWN_DRAIN_TIMEOUT`, 15 s; then the
/// connections still open are closed), then flushes and shuts telemetry down with `guard`.
///
/// Telemetry that cannot be delivered (a collector down, hung or refusing at shutdown) does not
/// make a clean stop a failure: the guard logs it as a warning with the spans and log records
/// lost, and `serve` returns `Ok`, so the process exits 0.
///
/// # Errors
///
/// If the address cannot be bound or serving fails: the application's own failures.
pub async fn serve(
    router: Router,
    config: &ServiceConfig,
    mut guard: ObservabilityGuard,
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    let address = listener.local_addr()?;
    tracing::info!(service = config.name, %address, "listening on http://{address}");
    // Draining: a client that never finishes (half a request, an open stream, a slow reader)
    // is closed at the drain deadline (SOMA_SHUTDOWN_DRAIN_TIMEOUT), so the service exits.
    axum::serve(soma_observability::Draining::new(listener), router)
        .with_graceful_shutdown(soma_observability::shutdown_signal())
        .await?;
    tracing::info!(service = config.name, "drained; flushing telemetry");
    guard.shutdown().await?;
    Ok(())
}

/// Serves `router` on a free port of 127.0.0.1 in the background and returns its base URL:
/// a stand-in peer for tests.
///
/// # Errors
///
/// If no port can be bound.
pub async fn spawn_local(router: Router) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    #[tokio::test]
    async fn health_routes_answer_ok() {
        let app: Router = health_routes();
        for path in ["/healthz", "/readyz"] {
            let response = app
                .clone()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
    }
}
