//! A real Prometheus server on loopback, started and stopped by the test: Prometheus 3 built from
//! its Go module (`scripts/backends.sh`) with its default scrape protocols, or, for the one
//! compatibility test, Debian's Prometheus 2.42.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

/// A scrape target: the job name (as the ServiceMonitors name it) and its `host:port`.
#[derive(Clone, Debug)]
pub struct Target {
    /// The `job` label.
    pub job: String,
    /// `127.0.0.1:port`.
    pub address: String,
}

/// One exemplar read back from Prometheus.
#[derive(Clone, Debug)]
pub struct Exemplar {
    /// The `job` of the series it belongs to.
    pub job: String,
    /// The bucket's `le` label, if the series is a histogram bucket.
    pub le: String,
    /// Its `trace_id` label (32 hex digits).
    pub trace_id: String,
    /// Its `span_id` label (16 hex digits).
    pub span_id: String,
    /// The measured value.
    pub value: f64,
}

/// Which Prometheus to start, and how.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Debian's Prometheus 2.42 (`prometheus` on `PATH`) instead of the pinned Prometheus 3.
    pub debian: bool,
    /// Extra command-line arguments (e.g. `--web.enable-otlp-receiver`).
    pub args: Vec<String>,
    /// Extra top-level configuration, appended to `prometheus.yml` as is (e.g. an `otlp:` block).
    pub config: String,
    /// The loopback port to listen on (default: a free one).
    pub port: Option<u16>,
}

/// A running `prometheus` process; killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    child: tokio::process::Child,
    /// Its HTTP API base URL.
    pub url: String,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus 3 scraping `targets` every second, with the recording and alerting
    /// rules of `servicemonitors/prometheus-rules.yaml` (the PrometheusRule's `spec`) loaded, and
    /// exemplar storage on (`--enable-feature=exemplar-storage`), so that it keeps the exemplars
    /// it reads. The scrape protocols are Prometheus' defaults (OpenMetrics first; no fallback
    /// for a missing or unexpected Content-Type).
    pub async fn start(targets: &[Target]) -> Self {
        Self::start_with(targets, &Options::default()).await
    }

    /// [`Prometheus::start`] with `options`.
    pub async fn start_with(targets: &[Target], options: &Options) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let rules = rules_file(&crate::repo_root().join("servicemonitors/prometheus-rules.yaml"));
        let rules_path = dir.path().join("rules.yaml");
        std::fs::write(&rules_path, rules).expect("write rules");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  scrape_timeout: 1s\n",
        );
        let _ = write!(
            config,
            "rule_files:\n  - {}\nscrape_configs:\n",
            rules_path.display()
        );
        for target in targets {
            let _ = write!(
                config,
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{address}']\n        labels:\n          namespace: soma-agent\n",
                job = target.job,
                address = target.address
            );
        }
        config.push_str(&options.config);
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write config");
        let port = options.port.unwrap_or_else(crate::free_port);
        let binary = if options.debian {
            which("prometheus")
        } else {
            crate::backend("prometheus")
        };
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = tokio::process::Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=exemplar-storage")
            .args(&options.args)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start prometheus");
        let prometheus = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            client: reqwest::Client::new(),
        };
        let ready = format!("{}/-/ready", prometheus.url);
        let client = prometheus.client.clone();
        crate::wait_for("Prometheus to be ready", Duration::from_secs(30), || {
            let (client, ready) = (client.clone(), ready.clone());
            async move {
                let response = client.get(&ready).send().await.ok()?;
                response.status().is_success().then_some(())
            }
        })
        .await;
        prometheus
    }

    /// Runs an instant query; `Err` holds Prometheus' error message for an invalid query.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let response = self
            .client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        let data = &body["data"];
        Ok(match data["resultType"].as_str() {
            Some("vector" | "matrix") => data["result"].as_array().cloned().unwrap_or_default(),
            Some("scalar" | "string") => vec![data["result"].clone()],
            _ => Vec::new(),
        })
    }

    /// The state of every active target (`job`, `health`).
    pub async fn targets(&self) -> Vec<(String, String)> {
        self.target_field("health").await
    }

    /// Every active target's `job` and its last scrape error (empty when the scrape worked).
    pub async fn scrape_errors(&self) -> Vec<(String, String)> {
        self.target_field("lastError").await
    }

    /// Every active target's `job` and the string `field` of `/api/v1/targets`.
    async fn target_field(&self, field: &str) -> Vec<(String, String)> {
        let body: Value = self
            .client
            .get(format!("{}/api/v1/targets", self.url))
            .send()
            .await
            .expect("targets API")
            .json()
            .await
            .expect("targets JSON");
        body["data"]["activeTargets"]
            .as_array()
            .map(|targets| {
                targets
                    .iter()
                    .map(|t| {
                        (
                            t["labels"]["job"].as_str().unwrap_or_default().to_owned(),
                            t[field].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `/api/v1/query_exemplars` over the last `minutes`: every exemplar's labels
    /// (`trace_id`, `span_id`) and value, with the series' `job`.
    pub async fn query_exemplars(&self, query: &str, minutes: u64) -> Vec<Exemplar> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let start = now.saturating_sub(minutes * 60).to_string();
        let end = (now + 60).to_string();
        let body: Value = self
            .client
            .get(format!("{}/api/v1/query_exemplars", self.url))
            .query(&[("query", query), ("start", &start), ("end", &end)])
            .send()
            .await
            .expect("exemplars API")
            .json()
            .await
            .expect("exemplars JSON");
        assert_eq!(body["status"], "success", "query_exemplars: {body}");
        let mut exemplars = Vec::new();
        for series in body["data"].as_array().into_iter().flatten() {
            let job = series["seriesLabels"]["job"].as_str().unwrap_or_default();
            for exemplar in series["exemplars"].as_array().into_iter().flatten() {
                let label = |name: &str| {
                    exemplar["labels"][name]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                };
                exemplars.push(Exemplar {
                    job: job.to_owned(),
                    trace_id: label("trace_id"),
                    span_id: label("span_id"),
                    value: exemplar["value"]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(f64::NAN),
                    le: series["seriesLabels"]["le"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
        }
        exemplars
    }

    /// What the server logged so far (for a failing assertion's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `/api/v1/status/buildinfo`'s `version` (`3.16.0`, `2.42.0`).
    pub async fn version(&self) -> String {
        let body: Value = self
            .client
            .get(format!("{}/api/v1/status/buildinfo", self.url))
            .send()
            .await
            .expect("buildinfo API")
            .json()
            .await
            .expect("buildinfo JSON");
        body["data"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The plain Prometheus rule file inside a `PrometheusRule` manifest (its `spec`).
pub fn rules_file(path: &Path) -> String {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let manifest: serde_yaml::Value = serde_yaml::from_str(&text).expect("rules YAML");
    serde_yaml::to_string(&manifest["spec"]).expect("rules spec")
}

/// Every `expr` and `record` of a PrometheusRule manifest.
pub fn rule_expressions(path: &Path) -> (Vec<String>, Vec<String>) {
    let manifest: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).expect("read rules")).expect("YAML");
    let mut exprs = Vec::new();
    let mut records = Vec::new();
    for group in manifest["spec"]["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        for rule in group["rules"].as_sequence().into_iter().flatten() {
            if let Some(expr) = rule["expr"].as_str() {
                exprs.push(expr.to_owned());
            }
            if let Some(record) = rule["record"].as_str() {
                records.push(record.to_owned());
            }
        }
    }
    (exprs, records)
}

fn which(binary: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(binary))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("`{binary}` not found: install Debian's `prometheus` package (scripts/install-deps.sh does)")
        })
}
