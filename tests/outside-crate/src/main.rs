use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{routing::get, Router};
use soma_observability::opentelemetry::{metrics::Counter, KeyValue};
use soma_observability::{tracing, HttpClient};
use tower_http::timeout::TimeoutLayer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = Router::new()
        .route("/users/{id}", get(get_user))
        .route("/profiles/{id}", get(get_profile))
        // Your own middleware goes before setup: the crate's layer sees its answers (a 408).
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
        .with_state(AppState::new());
    let (app, mut guard) = soma_observability::setup_observability("users", app)?;

    let address = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "0.0.0.0:8000".to_owned());
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!("listening on {}", listener.local_addr()?);
    // Draining: connections still open at the drain deadline are closed, so SIGTERM always ends.
    axum::serve(soma_observability::Draining::new(listener), app)
        .with_graceful_shutdown(soma_observability::shutdown_signal())
        .await?;
    guard.shutdown().await?; // flush traces and logs; a collector outage is logged, not an error
    Ok(())
}

#[derive(Clone)]
struct AppState {
    lookups: Counter<u64>,
    profiles: HttpClient,
    profiles_url: String,
}

impl AppState {
    fn new() -> Self {
        // Made before setup_observability: both record from setup on.
        let lookups = soma_observability::get_meter("users")
            .u64_counter("users.lookups")
            .with_description("User lookups by outcome.")
            .build();
        let profiles_url =
            std::env::var("PROFILES_URL").unwrap_or_else(|_| "http://127.0.0.1:8000".to_owned());
        Self {
            lookups,
            profiles: HttpClient::default(),
            profiles_url,
        }
    }
}

async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<String, StatusCode> {
    // The reqwest idiom: sends `traceparent`, records a CLIENT span and its duration.
    let url = format!("{}/profiles/{id}", state.profiles_url);
    let response = state.profiles.get(url).send().await;
    let profile = match response {
        Ok(response) => response.text().await.map_err(|_| StatusCode::BAD_GATEWAY)?,
        Err(_) => return Err(StatusCode::BAD_GATEWAY),
    };
    state.lookups.add(1, &[KeyValue::new("outcome", "found")]);
    tracing::info!("user found"); // on stdout with trace_id and span_id, and in OTLP logs
    Ok(format!("user {id}: {profile}"))
}

async fn get_profile(Path(id): Path<u64>) -> String {
    format!("profile {id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use soma_observability::testing::TestTelemetry;
    use tower::ServiceExt;

    #[tokio::test]
    async fn profiles_are_served_measured_and_traced() {
        // The test's own telemetry first, then the app: its instruments record here.
        let telemetry = TestTelemetry::new("users").unwrap();
        let app = Router::new()
            .route("/profiles/{id}", get(get_profile))
            .with_state(AppState::new());
        let app = telemetry.instrument(app).unwrap();
        let request = Request::get("/profiles/7").body(Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(body, "profile 7");

        let route = [KeyValue::new("http.route", "/profiles/{id}")];
        let requests = telemetry.histogram("http.server.request.duration", &route);
        assert_eq!(requests.map(|h| h.count), Some(1));
        assert_eq!(telemetry.spans()[0].name, "GET /profiles/{id}");
        assert_eq!(telemetry.sum("users.lookups", &[]), None);
    }
}
