use axum::{extract::State, routing::get, Router};
use soma_observability::opentelemetry::{metrics::Counter, KeyValue};
use soma_observability::tracing;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = Router::new()
        .route("/users/{id}", get(get_user))
        .with_state(AppState::new());
    let (app, mut guard) = soma_observability::setup_observability("users", app)?;

    let listener = tokio::net::TcpListener::bind("0.0.0.0:8000").await?;
    tracing::info!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(soma_observability::shutdown_signal())
        .await?;
    guard.shutdown().await?; // flush traces and logs, bounded by a deadline
    Ok(())
}

#[derive(Clone)]
struct AppState {
    lookups: Counter<u64>,
}

impl AppState {
    fn new() -> Self {
        // Made before setup_observability: it records from setup on.
        let lookups = soma_observability::get_meter("users")
            .u64_counter("users.lookups")
            .with_description("User lookups by outcome.")
            .build();
        Self { lookups }
    }
}

async fn get_user(State(state): State<AppState>) -> &'static str {
    state.lookups.add(1, &[KeyValue::new("outcome", "found")]);
    tracing::info!("user found"); // on stdout with trace_id and span_id, and in OTLP logs
    "hello"
}
