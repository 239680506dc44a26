//! Request data cannot forge stdout lines: control characters are escaped in text mode, the
//! trace and span ids cannot be planted from a field, and a panic goes through the same
//! formatter instead of the default hook's raw stderr.
//!
//! The service runs as a child process (this test binary, `child` test) so that its real stdout
//! and stderr can be read, as `kubectl logs` reads them.

use std::process::Command;

const FORGED: &str =
    "\u{1b}]0;pwned\u{7} trace_id=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa span_id=bbbbbbbbbbbbbbbb";
const CHILD: &str = "SOMA_LOG_FORGING_CHILD";

/// The service: one request whose handler logs attacker data, one log outside any span, and a
/// thread that panics with it.
#[test]
fn child() {
    use tower::ServiceExt as _;
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let app = axum::Router::new().route(
            "/log",
            axum::routing::get(|| async {
                tracing::info!(user = %FORGED, "in a request");
                "ok"
            }),
        );
        let (app, guard) = soma_observability::setup_observability("forging", app).unwrap();
        let request = axum::http::Request::get("/log")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
        tracing::info!(user = %FORGED, "outside any span");
        let _ = std::thread::spawn(|| panic!("bad input: {FORGED}")).join();
        drop(guard);
    });
}

#[test]
fn request_data_cannot_forge_log_lines() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env("OTEL_TRACES_EXPORTER", "console")
        .env("OTEL_LOGS_EXPORTER", "none")
        .env("OTEL_METRICS_EXPORTER", "prometheus")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'),
        "a raw escape reached the terminal:\nstdout: {stdout:?}\nstderr: {stderr:?}"
    );
    let line = |needle: &str| {
        stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{stdout}\nstderr: {stderr}"))
            .to_owned()
    };
    let in_request = line("in a request");
    assert_eq!(
        in_request.matches("trace_id=").count(),
        1,
        "one trace id, the real one: {in_request}"
    );
    assert!(!in_request.contains("trace_id=aaaa"), "{in_request}");
    assert!(in_request.contains(r"trace_id\=aaaa"), "{in_request}");
    let outside = line("outside any span");
    assert!(!outside.contains("trace_id="), "{outside}");
    let panicked = line("thread panicked");
    assert!(panicked.contains("ERROR"), "{panicked}");
    assert!(panicked.contains(r"\x1b]0;pwned\x07"), "{panicked}");
    assert!(
        !stderr.contains("pwned"),
        "the default panic hook printed: {stderr}"
    );
}
