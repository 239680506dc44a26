//! Run with: cargo run -p example-gateway
//!
//! The public API: authenticates through identity-service, asks policy-engine, routes workflows
//! to the orchestrator and generations to slm-service, and serves the capsule marketplace.
mod app;
mod auth;
mod marketplace;
#[cfg(test)]
mod tests;

use soma_example_support::{http_client, serve, ServiceConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ServiceConfig::from_env("gateway", 8080)?;
    let (router, guard) = soma_observability::setup_observability(config.name, app::app())?;
    // Made after setup here; made before (in the state), they would bind at setup too.
    let meter = soma_observability::get_meter("gateway");
    let state = app::AppState::new(&meter, http_client()?, config.peers.clone());
    serve(router.with_state(state), &config, guard).await
}
