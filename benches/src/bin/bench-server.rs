//! The benchmark routes over HTTP, for `benches/load.sh`.
//!
//! ```text
//! bench-server --mode bare|metrics|full|otel_tower|axum_prometheus [--addr 127.0.0.1:8080] [--otlp http://127.0.0.1:4317]
//!              [--protocol grpc|http/protobuf]
//! bench-server --mode receiver [--addr 127.0.0.1:4317] [--stats 127.0.0.1:4319]
//!              [--http 127.0.0.1:4318]
//! ```
//!
//! - `bare`: plain axum;
//! - `metrics`: our setup with traces and OTLP logs off (`/metrics` served);
//! - `full`: our setup with every trace sampled, traces and logs sent over OTLP/gRPC to
//!   `--otlp` (or to a receiver started in this process when none is given); other `OTEL_*`
//!   variables are read from the environment as usual; `--protocol http/protobuf` exports over
//!   HTTP/protobuf instead (then `--otlp` must be given: the in-process receiver speaks gRPC);
//! - `otel_tower`: the peer `opentelemetry-instrumentation-tower`, metrics only, into an SDK
//!   meter provider with a pull reader (no `/metrics` route: nothing scrapes during a run);
//! - `axum_prometheus`: the peer axum-prometheus (`PrometheusMetricLayer::pair()`, no
//!   `/metrics` route either);
//! - `receiver`: a counting OTLP/gRPC receiver; `GET /stats` on `--stats` answers
//!   `spans N`, `logs N` and `exports N` lines; with `--http`, it also accepts OTLP/HTTP
//!   (`POST /v1/traces`, `/v1/logs`: answered 200 without decoding, counted in `http_exports N`
//!   and `http_bytes N`).
//!
//! Stops on SIGTERM or Ctrl-C, flushing telemetry first.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use soma_benches::{app, full_config_over, metrics_config, peer};
use soma_observability::Observability;
use soma_system_tests::otlp::FakeOtlp;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    mode: String,
    addr: SocketAddr,
    otlp: Option<String>,
    stats: SocketAddr,
    protocol: String,
    http: Option<SocketAddr>,
}

fn args() -> Result<Args, Error> {
    let mut args = Args {
        mode: String::new(),
        addr: "127.0.0.1:8080".parse()?,
        otlp: None,
        stats: "127.0.0.1:4319".parse()?,
        protocol: "grpc".to_owned(),
        http: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--mode" => args.mode = value,
            "--addr" => args.addr = value.parse()?,
            "--otlp" => args.otlp = Some(value),
            "--stats" => args.stats = value.parse()?,
            "--protocol" => args.protocol = value,
            "--http" => args.http = Some(value.parse()?),
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = args()?;
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    match args.mode.as_str() {
        "bare" => {
            axum::serve(listener, app())
                .with_graceful_shutdown(soma_observability::shutdown_signal())
                .await?;
        }
        "otel_tower" | "axum_prometheus" => {
            let router = if args.mode == "otel_tower" {
                peer::otel_tower(false)
            } else {
                peer::axum_prometheus()
            };
            axum::serve(listener, router)
                .with_graceful_shutdown(soma_observability::shutdown_signal())
                .await?;
        }
        "metrics" | "full" => {
            let (config, sink) = if args.mode == "metrics" {
                (metrics_config()?, None)
            } else {
                let (endpoint, sink) = if let Some(endpoint) = args.otlp {
                    (endpoint, None)
                } else {
                    let sink = FakeOtlp::start_counting("127.0.0.1:0".parse()?).await?;
                    (sink.grpc_endpoint(), Some(sink))
                };
                (full_config_over(&endpoint, true, &args.protocol)?, sink)
            };
            let (router, mut guard) = Observability::builder("bench-server")
                .with_config(config)
                .install(app())?;
            axum::serve(listener, router)
                .with_graceful_shutdown(soma_observability::shutdown_signal())
                .await?;
            guard.shutdown().await?;
            if let Some(sink) = sink {
                eprintln!("in-process receiver: {} spans", sink.span_count());
            }
        }
        "receiver" => {
            drop(listener);
            let sink = FakeOtlp::start_counting(args.addr).await?;
            let stats = tokio::net::TcpListener::bind(args.stats).await?;
            // OTLP/HTTP: counted, not decoded (an empty 200 answer is a full success).
            let http = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
            if let Some(addr) = args.http {
                let listener = tokio::net::TcpListener::bind(addr).await?;
                let http = Arc::clone(&http);
                let accept = move |body: axum::body::Bytes| {
                    http.0.fetch_add(1, Ordering::Relaxed);
                    http.1.fetch_add(body.len() as u64, Ordering::Relaxed);
                    std::future::ready(())
                };
                let router = Router::new()
                    .route("/v1/traces", post(accept.clone()))
                    .route("/v1/logs", post(accept));
                tokio::spawn(async move { axum::serve(listener, router).await });
            }
            let router = Router::new().route(
                "/stats",
                get(move || {
                    std::future::ready(format!(
                        "spans {}\nlogs {}\nexports {}\nhttp_exports {}\nhttp_bytes {}\n",
                        sink.span_count(),
                        sink.log_count(),
                        sink.export_count(),
                        http.0.load(Ordering::Relaxed),
                        http.1.load(Ordering::Relaxed)
                    ))
                }),
            );
            axum::serve(stats, router)
                .with_graceful_shutdown(soma_observability::shutdown_signal())
                .await?;
        }
        other => {
            return Err(
                format!("--mode must be bare, metrics, full, otel_tower, axum_prometheus or receiver, not {other:?}").into(),
            )
        }
    }
    Ok(())
}
