//! Run with: cargo run -p example-policy-engine
//!
//! Evaluates requests against a built-in rule set: allow, or deny with the rule and a reason.
mod app;
mod rules;

use soma_example_support::{serve, ServiceConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ServiceConfig::from_env("policy-engine", 8001)?;
    let (router, guard) = soma_observability::setup_observability(config.name, app::app())?;
    // Instruments come from the global meter: create them after setup.
    let state = app::AppState::new(&soma_observability::get_meter("policy-engine"));
    serve(router.with_state(state), &config, guard).await
}
