//! Sends a fixed number of in-process requests through one stack, for instruction counts:
//!
//! ```text
//! bench-driver <bare|noop_layer|metrics|traces_sampled|traces_unsampled> <hello|users> <requests>
//! valgrind --tool=callgrind --toggle-collect='*measured_loop*' target/release/bench-driver metrics hello 20000
//! ```
//!
//! Only `measured_loop` is counted with `--toggle-collect`; setup and shutdown are not.

use std::time::Instant;

use axum::Router;
use soma_benches::{drain, OtlpSink, Stack, HELLO, USER};

#[inline(never)]
fn measured_loop(runtime: &tokio::runtime::Runtime, router: &Router, uri: &'static str, n: u64) {
    runtime.block_on(async {
        for _ in 0..n {
            std::hint::black_box(drain(router, uri).await);
        }
    });
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: bench-driver <bare|noop_layer|metrics|traces_sampled|traces_unsampled> <hello|users> <requests>";
    let [_, stack, route, n] = args.as_slice() else {
        return Err(usage.into());
    };
    let stack = Stack::from_name(stack).ok_or(usage)?;
    let uri = match route.as_str() {
        "hello" => HELLO,
        "users" => USER,
        _ => return Err(usage.into()),
    };
    let n: u64 = n.parse()?;
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let sink = background.block_on(OtlpSink::start("127.0.0.1:0".parse()?))?;
    let (router, parts) = {
        let _entered = background.enter();
        stack.build(&sink.endpoint())?
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    // Warm up: first requests intern the route and create the series.
    runtime.block_on(async {
        for _ in 0..100 {
            drain(&router, uri).await;
        }
    });
    let start = Instant::now();
    measured_loop(&runtime, &router, uri, n);
    let elapsed = start.elapsed();
    #[allow(clippy::cast_precision_loss)]
    let per_request = elapsed.as_nanos() as f64 / n as f64;
    println!(
        "{} {route}: {n} requests, {per_request:.0} ns/request",
        stack.name()
    );
    drop(parts);
    drop(background);
    Ok(())
}
