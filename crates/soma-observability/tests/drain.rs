//! Shutdown always ends: with hostile clients connected (half a request, an open stream that
//! sends nothing, a response nobody reads, half a request head), the documented serve loop with
//! a [`Draining`] listener returns once the drain deadline passes.
//!
//! Its own process: the drain deadline closes every draining connection of the process.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use axum::Router;
use soma_observability::{shutdown_on, Draining};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const DRAIN: Duration = Duration::from_secs(1);

fn app() -> Router {
    Router::new()
        .route(
            "/upload",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/stream",
            get(|| async {
                let first = futures_util::stream::once(async {
                    Ok::<_, std::io::Error>(Bytes::from_static(b"data: 1\n\n"))
                });
                Body::from_stream(futures_util::StreamExt::chain(
                    first,
                    futures_util::stream::pending(),
                ))
            }),
        )
        .route("/big", get(|| async { vec![b'x'; 64 * 1024 * 1024] }))
        .route("/ok", get(|| async { "ok" }))
}

/// Opens the four hostile connections; they stay open (held by the returned streams).
async fn hostile_clients(addr: std::net::SocketAddr) -> Vec<TcpStream> {
    let mut clients = Vec::new();
    for request in [
        // Half a request: the head, then 10 of the 1 000 bytes it announces.
        &b"POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 1000\r\n\r\n0123456789"[..],
        // An open stream that sends nothing after its first event.
        b"GET /stream HTTP/1.1\r\nhost: a\r\n\r\n",
        // A 64 MiB response nobody reads.
        b"GET /big HTTP/1.1\r\nhost: a\r\n\r\n",
        // Half a request head.
        b"GET /ok HTTP/1.1\r\nhost: a\r\n",
    ] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request).await.unwrap();
        clients.push(tcp);
    }
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_ends_at_its_deadline_whatever_the_clients_do() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(Draining::new(listener), app())
            .with_graceful_shutdown(shutdown_on(
                async {
                    let _ = stopped.await;
                },
                DRAIN,
            ))
            .await
    });
    let clients = hostile_clients(addr).await;
    // Every hostile request reached the server (the stream's first event arrived, the big
    // response started): poll a normal request to know the server is up.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while client
        .get(format!("http://{addr}/ok"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the server never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let signalled = Instant::now();
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), server).await;
    let took = signalled.elapsed();
    eprintln!("serve returned {took:?} after the signal, 4 hostile clients connected");
    assert!(
        result.is_ok(),
        "the serve loop had not returned 10 s after the signal"
    );
    result.unwrap().unwrap().unwrap();
    assert!(
        took + Duration::from_millis(50) >= DRAIN && took < DRAIN + Duration::from_secs(1),
        "{took:?}"
    );
    drop(clients);
}
