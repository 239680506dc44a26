//! The benchmark routes over HTTP, for `benches/load.sh`.
//!
//! ```text
//! bench-server --mode bare|metrics|full [--addr 127.0.0.1:8080] [--otlp http://127.0.0.1:4317]
//! bench-server --mode receiver [--addr 127.0.0.1:4317] [--stats 127.0.0.1:4319]
//! ```
//!
//! - `bare`: plain axum;
//! - `metrics`: our setup with traces and OTLP logs off (`/metrics` served);
//! - `full`: our setup with every trace sampled, traces and logs sent over OTLP/gRPC to
//!   `--otlp` (or to a receiver started in this process when none is given); other `OTEL_*`
//!   variables are read from the environment as usual;
//! - `receiver`: a counting OTLP/gRPC receiver; `GET /stats` on `--stats` answers
//!   `spans N`, `logs N` and `exports N` lines.
//!
//! Stops on SIGTERM or Ctrl-C, flushing telemetry first.

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use soma_benches::{app, full_config, metrics_config, OtlpSink};
use soma_observability::Observability;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    mode: String,
    addr: SocketAddr,
    otlp: Option<String>,
    stats: SocketAddr,
}

fn args() -> Result<Args, Error> {
    let mut args = Args {
        mode: String::new(),
        addr: "127.0.0.1:8080".parse()?,
        otlp: None,
        stats: "127.0.0.1:4319".parse()?,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--mode" => args.mode = value,
            "--addr" => args.addr = value.parse()?,
            "--otlp" => args.otlp = Some(value),
            "--stats" => args.stats = value.parse()?,
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
        "metrics" | "full" => {
            let (config, sink) = if args.mode == "metrics" {
                (metrics_config()?, None)
            } else {
                let (endpoint, sink) = if let Some(endpoint) = args.otlp {
                    (endpoint, None)
                } else {
                    let sink = OtlpSink::start("127.0.0.1:0".parse()?).await?;
                    (sink.endpoint(), Some(sink))
                };
                (full_config(&endpoint, true)?, sink)
            };
            let (router, mut guard) = Observability::builder("bench-server")
                .with_config(config)
                .install(app())?;
            axum::serve(listener, router)
                .with_graceful_shutdown(soma_observability::shutdown_signal())
                .await?;
            guard.shutdown().await?;
            if let Some(sink) = sink {
                eprintln!("in-process receiver: {} spans", sink.received().spans());
            }
        }
        "receiver" => {
            drop(listener);
            let sink = OtlpSink::start(args.addr).await?;
            let stats = tokio::net::TcpListener::bind(args.stats).await?;
            let router = Router::new().route(
                "/stats",
                get(move || {
                    let received = sink.received();
                    std::future::ready(format!(
                        "spans {}\nlogs {}\nexports {}\n",
                        received.spans(),
                        received.logs(),
                        received.exports()
                    ))
                }),
            );
            axum::serve(stats, router)
                .with_graceful_shutdown(soma_observability::shutdown_signal())
                .await?;
        }
        other => {
            return Err(
                format!("--mode must be bare, metrics, full or receiver, not {other:?}").into(),
            )
        }
    }
    Ok(())
}
