//! A service that is not an axum router (a plain tower service, as a hyper service is) with the
//! same one-line setup, as the integration guide's "A service that is not an axum router" shows.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{Request, Response};
use soma_observability::opentelemetry::KeyValue;
use soma_observability::{tracing, Observability};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Made before the install: it records from the install on.
    let greetings = soma_observability::get_meter("hello")
        .u64_counter("hello.greetings")
        .with_description("Greetings sent.")
        .build();
    let service = tower::service_fn(move |request: Request<Body>| {
        let greetings = greetings.clone();
        async move {
            let name = request
                .uri()
                .path()
                .trim_start_matches("/hello/")
                .to_owned();
            greetings.add(1, &[KeyValue::new("language", "en")]);
            Ok::<_, Infallible>(Response::new(Body::from(format!("hello {name}"))))
        }
    });
    let (app, mut guard) = Observability::builder("hello")
        .with_route_template(|uri| uri.path().starts_with("/hello/").then_some("/hello/{name}"))
        .install_service(service)?;

    let address = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "0.0.0.0:8000".to_owned());
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!("listening on {}", listener.local_addr()?);
    // Draining: connections still open at the drain deadline are closed, so SIGTERM always ends.
    axum::serve(soma_observability::Draining::new(listener), app)
        .with_graceful_shutdown(soma_observability::shutdown_signal())
        .await?;
    guard.shutdown().await?;
    Ok(())
}
