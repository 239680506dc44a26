//! Shared serve loop and configuration of the reference services.
//!
//! Every reference service's `main` is the same four steps, and this crate holds what they share:
//!
//! ```no_run
//! # mod app { pub fn app() -> axum::Router<()> { axum::Router::new() } }
//! use soma_example_support::{serve, ServiceConfig};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = ServiceConfig::from_env("gateway", 8080)?; // LISTEN_ADDR and peer URLs
//!     let (router, guard) = soma_observability::setup_observability("gateway", app::app())?;
//!     serve(router, &config, guard).await // SIGTERM/SIGINT: drain, then flush telemetry
//! }
//! ```
//!
//! - [`ServiceConfig`]: `LISTEN_ADDR` and the peers' base URLs ([`Peers`]), read once.
//! - [`serve`]: bind, log the address, serve until SIGTERM or SIGINT, drain, then
//!   `guard.shutdown()`.
//! - [`health_routes`]: `GET /healthz` and `GET /readyz`.
//! - [`ApiError`] and [`JsonBody`]: every failure is a JSON `{"error": "..."}` with a fitting status.
//! - [`http_client`], [`get_json`], [`post_json`]: service-to-service calls through
//!   [`soma_observability::HttpClient`], so one user request is one trace.

mod client;
mod config;
mod error;
mod serve;
pub mod testing;

pub use client::{get_json, http_client, post_json, Reply, UpstreamError};
pub use config::{
    ConfigError, Peer, Peers, ServiceConfig, IDENTITY_SERVICE_URL, LISTEN_ADDR, ORCHESTRATOR_URL,
    POLICY_ENGINE_URL, SLM_SERVICE_URL,
};
pub use error::{ApiError, JsonBody};
pub use serve::{health_routes, serve, spawn_local};
