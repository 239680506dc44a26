//! Run with: cargo run -p example-identity-service
//!
//! Issues and verifies HMAC-SHA256 signed bearer tokens (JWT, `HS256`) for the demo users.
mod app;
mod token;

use soma_example_support::{serve, ServiceConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ServiceConfig::from_env("identity-service", 8002)?;
    let (router, guard) = soma_observability::setup_observability(config.name, app::app())?;
    // Made after setup here; made before (in the state), they would bind at setup too.
    let state = app::AppState::from_env(&soma_observability::get_meter("identity-service"));
    serve(router.with_state(state), &config, guard).await
}
