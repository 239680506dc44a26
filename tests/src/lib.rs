//! System tests of the `SomaAgent` reference services with real parts: the five service binaries
//! on loopback, a real Prometheus 3 server (built from its Go module by `scripts/backends.sh`)
//! scraping them, a real OpenTelemetry Collector, and an OTLP receiver built on the official
//! protobuf definitions.
//!
//! The service binaries must be built before the tests run (`cargo build --workspace --bins`;
//! `scripts/test.sh` does it). The helpers here are also used by the library's own tests
//! ([`otlp::FakeOtlp`]).

// Test support: failing loudly (panicking) is what these helpers are for.
#![allow(
    clippy::missing_panics_doc,
    clippy::missing_errors_doc,
    clippy::doc_markdown
)]

pub mod collector;
pub mod otlp;
pub mod prometheus;
pub mod promql;
pub mod services;
pub mod tls;
pub mod traffic;

/// An environment of `vars` alone, for `ObservabilityConfig::from_lookup`: the process's
/// environment is not read.
pub fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// The repository's root directory.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

/// The path of a backend binary built from `tools/backends` (`prometheus`, `promtool`,
/// `otelcol-soma`): `scripts/backends.sh` (run by `scripts/install-deps.sh`) builds them into its
/// cache and links `target/backends` there. This is the one place the tests look for them.
pub fn backend(name: &str) -> std::path::PathBuf {
    let path = repo_root().join("target/backends/bin").join(name);
    assert!(
        path.is_file(),
        "{} not found: run `bash scripts/install-deps.sh` (it builds the pinned Prometheus 3 and \
         Collector from tools/backends once)",
        path.display()
    );
    path
}

/// `GET {base}/metrics`, as Prometheus scrapes it.
pub async fn scrape(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape /metrics")
        .text()
        .await
        .expect("/metrics body")
}

/// The sum of the samples of the series whose line starts with `name` and contains `label`
/// (`""` for all of them).
pub fn sum_of(exposition: &str, name: &str, label: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
