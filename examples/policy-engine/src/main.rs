//! Run with: cargo run -p example-policy-engine
//!
//! Evaluates requests against a built-in rule set: allow, or deny with the rule and a reason.
mod app;
mod rules;

use soma_example_support::{serve, ServiceConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ServiceConfig::from_env("policy-engine", 8001)?;
    // State first (its instruments bind at setup), then setup around the whole app.
    let app = app::app().with_state(app::AppState::new());
    let (router, guard) = soma_observability::setup_observability(config.name, app)?;
    serve(router, &config, guard).await
}
