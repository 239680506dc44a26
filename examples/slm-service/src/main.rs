//! Run with: cargo run -p example-slm-service
//!
//! A small deterministic text generator (a seeded Markov chain over a built-in corpus), paced
//! like a model and optionally streamed as server-sent events.
mod app;
mod markov;

use soma_example_support::{serve, ServiceConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ServiceConfig::from_env("slm-service", 8003)?;
    let (router, guard) = soma_observability::setup_observability(config.name, app::app())?;
    // Instruments come from the global meter: create them after setup.
    let state = app::AppState::new(&soma_observability::get_meter("slm-service"));
    serve(router.with_state(state), &config, guard).await
}
