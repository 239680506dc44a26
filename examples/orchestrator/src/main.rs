//! Run with: cargo run -p example-orchestrator
//!
//! KAMACHIQ workflows: decomposes a goal into tasks, then runs each task (policy check, then
//! generation by the SLM service), and keeps every workflow's status in memory.
mod app;
mod decompose;
mod workflow;

use soma_example_support::{http_client, serve, ServiceConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ServiceConfig::from_env("orchestrator", 8000)?;
    let (router, guard) = soma_observability::setup_observability(config.name, app::app())?;
    // Made after setup here; made before (in the state), they would bind at setup too.
    let meter = soma_observability::get_meter("orchestrator");
    let state = app::AppState::new(&meter, http_client()?, config.peers.clone());
    serve(router.with_state(state), &config, guard).await
}
