//! A real OpenTelemetry Collector on loopback (`otelcol-soma`, the minimal build of the
//! collector's core modules made by `scripts/backends.sh`), started and stopped by the test with
//! a configuration the test writes: its OTLP receiver in front, its OTLP/HTTP exporter behind,
//! and its own metrics (`otelcol_*`) on a Prometheus endpoint the test reads.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// A running collector; killed on drop.
#[derive(Debug)]
pub struct Collector {
    child: Option<tokio::process::Child>,
    config: PathBuf,
    log: PathBuf,
    /// Its OTLP/gRPC receiver, `http://127.0.0.1:port` (or `https://` with TLS).
    pub grpc_endpoint: String,
    /// Its OTLP/HTTP receiver's base URL.
    pub http_endpoint: String,
    /// Its own metrics (`otelcol_receiver_accepted_spans_total`, ...), Prometheus text.
    pub metrics_url: String,
    _dir: tempfile::TempDir,
}

/// The ports one collector listens on.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// OTLP/gRPC.
    pub grpc: u16,
    /// OTLP/HTTP.
    pub http: u16,
    /// The collector's own metrics.
    pub metrics: u16,
}

impl Ports {
    /// Three free loopback ports.
    pub fn free() -> Self {
        Self {
            grpc: crate::free_port(),
            http: crate::free_port(),
            metrics: crate::free_port(),
        }
    }
}

/// A collector configuration: the OTLP receiver on `ports` (with `receiver_tls`, a YAML
/// mapping indented for the `tls:` key, when not empty), `processors` in every pipeline, and
/// `exporters` (YAML of the `exporters:` section's entries) with `pipeline_exporters` named in
/// every pipeline.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Lines under `tls:` for both receivers (e.g. `cert_file: ...`), empty for plain text.
    pub receiver_tls: Vec<String>,
    /// The `processors:` section's entries, as YAML lines indented by 2.
    pub processors: Vec<String>,
    /// The processor names of every pipeline, in order.
    pub pipeline_processors: Vec<String>,
    /// The `exporters:` section's entries, as YAML lines indented by 2.
    pub exporters: Vec<String>,
    /// The exporter names of every pipeline.
    pub pipeline_exporters: Vec<String>,
}

impl Config {
    /// Everything received is forwarded with the OTLP/HTTP exporter to `base` (the project's
    /// receiver, [`crate::otlp::FakeOtlp::http_endpoint`]), through `batch`.
    pub fn forward_to(base: &str) -> Self {
        Self {
            processors: vec!["  batch:".into(), "    timeout: 200ms".into()],
            pipeline_processors: vec!["batch".into()],
            exporters: vec!["  otlp_http:".into(), format!("    endpoint: {base}")],
            pipeline_exporters: vec!["otlp_http".into()],
            ..Self::default()
        }
    }

    fn render(&self, ports: Ports) -> String {
        let mut out = String::from("receivers:\n  otlp:\n    protocols:\n");
        for (protocol, port) in [("grpc", ports.grpc), ("http", ports.http)] {
            let _ = write!(
                out,
                "      {protocol}:\n        endpoint: 127.0.0.1:{port}\n"
            );
            if !self.receiver_tls.is_empty() {
                out.push_str("        tls:\n");
                for line in &self.receiver_tls {
                    let _ = writeln!(out, "          {line}");
                }
            }
        }
        if !self.processors.is_empty() {
            out.push_str("processors:\n");
            for line in &self.processors {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push_str("exporters:\n");
        for line in &self.exporters {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("service:\n  telemetry:\n    logs:\n      level: info\n");
        out.push_str("    metrics:\n      level: detailed\n      readers:\n        - pull:\n");
        out.push_str("            exporter:\n              prometheus:\n");
        let _ = write!(
            out,
            "                host: 127.0.0.1\n                port: {}\n",
            ports.metrics
        );
        out.push_str("  pipelines:\n");
        for signal in ["traces", "logs", "metrics"] {
            let _ = write!(
                out,
                "    {signal}:\n      receivers: [otlp]\n      processors: [{}]\n      exporters: [{}]\n",
                self.pipeline_processors.join(", "),
                self.pipeline_exporters.join(", ")
            );
        }
        out
    }
}

impl Collector {
    /// Starts `otelcol-soma` with `config` on `ports`, and waits until its metrics endpoint and
    /// its OTLP/HTTP port answer.
    pub async fn start(config: &Config, ports: Ports) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config_path = dir.path().join("collector.yaml");
        std::fs::write(&config_path, config.render(ports)).expect("write collector config");
        let scheme = if config.receiver_tls.is_empty() {
            "http"
        } else {
            "https"
        };
        let mut collector = Self {
            child: None,
            config: config_path,
            log: dir.path().join("collector.log"),
            grpc_endpoint: format!("{scheme}://127.0.0.1:{}", ports.grpc),
            http_endpoint: format!("{scheme}://127.0.0.1:{}", ports.http),
            metrics_url: format!("http://127.0.0.1:{}/metrics", ports.metrics),
            _dir: dir,
        };
        collector.restart().await;
        collector
    }

    /// Starts the process again (after [`Collector::kill`]) with the same configuration and
    /// ports, and waits until it serves.
    pub async fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("collector log");
        let child = tokio::process::Command::new(crate::backend("otelcol-soma"))
            .arg(format!("--config=file:{}", self.config.display()))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start otelcol-soma");
        self.child = Some(child);
        let client = reqwest::Client::new();
        let url = self.metrics_url.clone();
        let log = self.log.clone();
        crate::wait_for("the collector to serve", Duration::from_secs(30), || {
            let (client, url, log) = (client.clone(), url.clone(), log.clone());
            async move {
                let up = client.get(&url).send().await.ok()?.status().is_success();
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                (up && text.matches("Everything is ready").count() > 0).then_some(())
            }
        })
        .await;
    }

    /// Kills the process (SIGKILL: a crash, nothing flushed).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
        // The next start appends; a fresh "ready" line must come from it.
        let _ = std::fs::write(
            &self.log,
            self.output().replace("Everything is ready", "(was ready)"),
        );
    }

    /// What the collector logged so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The sum of the collector's own metric `name` (all label sets) now; 0 when absent.
    pub async fn metric(&self, name: &str) -> f64 {
        let Ok(response) = reqwest::get(&self.metrics_url).await else {
            return 0.0;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}
