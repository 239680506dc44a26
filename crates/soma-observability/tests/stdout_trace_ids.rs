//! Stdout log lines carry the trace and span id of the span they were emitted in, in text and
//! in JSON, so that `kubectl logs` lines can be joined to traces.
//!
//! The stdout layer writes to the process's real stdout, so each test runs this binary's
//! `child` test again in a child process, with the format in an environment variable, and reads
//! what it printed.

mod common;

use std::process::Command;

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use common::{config, send, FakeOtlp};

const CHILD: &str = "SOMA_TEST_STDOUT_FORMAT";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// What the child printed: its stdout lines, the server span id (from `traceresponse`).
fn run_child(format: &str) -> (Vec<String>, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD, format)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let traceresponse = stdout
        .lines()
        .find_map(|l| l.strip_prefix("TRACERESPONSE="))
        .unwrap_or_else(|| panic!("no traceresponse in {stdout}"));
    let parts: Vec<&str> = traceresponse.split('-').collect();
    assert_eq!(
        parts[1], TRACE_ID,
        "the request continued the caller's trace"
    );
    let server_span_id = parts[2].to_owned();
    // libtest prints `test child ... ` before the child's first line.
    let lines = stdout
        .lines()
        .map(|l| l.trim_start_matches("test child ... ").to_owned())
        .collect();
    (lines, server_span_id)
}

fn line_with<'a>(lines: &'a [String], text: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no line with {text:?} in {lines:#?}"))
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[test]
fn text_lines_carry_trace_and_span_ids() {
    let (lines, server_span_id) = run_child("text");
    let server = line_with(&lines, "in the server span");
    assert!(
        server.ends_with(&format!(" trace_id={TRACE_ID} span_id={server_span_id}")),
        "{server}"
    );
    let handler = line_with(&lines, "in a handler span");
    let (before, ids) = handler.split_once(" trace_id=").unwrap();
    assert!(before.contains("in a handler span"), "{handler}");
    let (trace_id, span_id) = ids.split_once(" span_id=").unwrap();
    assert_eq!(trace_id, TRACE_ID, "{handler}");
    assert!(is_hex(span_id, 16), "{handler}");
    assert_ne!(
        span_id, server_span_id,
        "the handler span's own id: {handler}"
    );
    let outside = line_with(&lines, "outside any span");
    assert!(!outside.contains(" trace_id="), "{outside}");
}

#[test]
fn json_lines_carry_trace_and_span_ids() {
    let (lines, server_span_id) = run_child("json");
    let parse = |text: &str| -> serde_json::Value {
        serde_json::from_str(line_with(&lines, text)).unwrap()
    };
    let server = parse("in the server span");
    assert_eq!(server["trace_id"], TRACE_ID, "{server}");
    assert_eq!(server["span_id"], server_span_id.as_str(), "{server}");
    assert_eq!(server["message"], "in the server span", "{server}");
    let handler = parse("in a handler span");
    assert_eq!(handler["trace_id"], TRACE_ID, "{handler}");
    let span_id = handler["span_id"].as_str().unwrap();
    assert!(is_hex(span_id, 16), "{handler}");
    assert_ne!(span_id, server_span_id, "{handler}");
    let outside = parse("outside any span");
    assert!(outside.get("trace_id").is_none(), "{outside}");
}

/// Runs only as the child of the tests above (a no-op otherwise).
#[test]
fn child() {
    let Ok(format) = std::env::var(CHILD) else {
        return;
    };
    // The receiver keeps answering on the worker while the providers flush on drop.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let otlp = FakeOtlp::start().await;
            let endpoint = otlp.http_endpoint();
            let parts = common::build(
                "stdout",
                config(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                    ("SOMA_LOG_FORMAT", &format),
                    ("RUST_LOG", "info,axum::serve=off"),
                ]),
            );
            let _default = tracing::subscriber::set_default(parts.subscriber());
            let app = parts
                .instrument(Router::new().route(
                    "/work",
                    get(|| async {
                        tracing::info!("in the server span");
                        let span = tracing::info_span!("load");
                        let _entered = span.enter();
                        tracing::info!(rows = 3, "in a handler span");
                        "done"
                    }),
                ))
                .unwrap();
            let request = Request::get("/work")
                .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
                .body(Body::empty())
                .unwrap();
            let (_, headers, _) = send(&app, request).await;
            println!(
                "TRACERESPONSE={}",
                headers["traceresponse"].to_str().unwrap()
            );
            tracing::info!("outside any span");
        });
}
