//! The five reference service binaries, started on free loopback ports.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::prometheus::Target;

/// The services: binary name and the `job` label the ServiceMonitors give it.
pub const SERVICES: &[(&str, &str)] = &[
    ("identity-service", "identity-service"),
    ("policy-engine", "policy-engine"),
    ("slm-service", "slm-service"),
    ("orchestrator", "orchestrator"),
    ("gateway", "gateway-api"),
];

/// One running service; killed on drop if still running.
#[derive(Debug)]
pub struct Service {
    /// The binary name.
    pub name: &'static str,
    /// The Prometheus job name.
    pub job: &'static str,
    /// Its base URL, `http://127.0.0.1:port`.
    pub url: String,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    child: tokio::process::Child,
}

impl Service {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }

    /// Sends SIGTERM (the Kubernetes stop signal).
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits for the process to exit, up to `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()?
            .ok()
    }

    /// What the service printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Service {
    /// Starts one service binary alone on a free loopback port, with `env` added (e.g. the
    /// `OTEL_*` variables), and waits for `/readyz`. Its peers point at a closed port.
    pub async fn start_alone(
        name: &'static str,
        env: &[(&str, &str)],
        logs: &std::path::Path,
    ) -> Self {
        let nowhere = format!("http://127.0.0.1:{}", crate::free_port());
        let mut vars: Vec<(&str, &str)> = [
            "ORCHESTRATOR_URL",
            "POLICY_ENGINE_URL",
            "IDENTITY_SERVICE_URL",
            "SLM_SERVICE_URL",
        ]
        .into_iter()
        .map(|var| (var, nowhere.as_str()))
        .collect();
        vars.extend_from_slice(env);
        Self::start_program(name, &binary(name), &vars, logs, "/readyz").await
    }

    /// Starts `program` on a free loopback port (`LISTEN_ADDR`, unless `env` gives one), with
    /// `RUST_LOG=info` and `env` added, and waits until `GET ready_path` answers 2xx.
    pub async fn start_program(
        name: &'static str,
        program: &std::path::Path,
        env: &[(&str, &str)],
        logs: &std::path::Path,
        ready_path: &str,
    ) -> Self {
        let address = env
            .iter()
            .find(|(var, _)| *var == "LISTEN_ADDR")
            .map_or_else(
                || format!("127.0.0.1:{}", crate::free_port()),
                |(_, a)| (*a).to_owned(),
            );
        let log = logs.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut command = tokio::process::Command::new(program);
        command
            .env("LISTEN_ADDR", &address)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let job = SERVICES
            .iter()
            .find(|(binary, _)| *binary == name)
            .map_or(name, |(_, job)| job);
        let service = Self {
            name,
            job,
            url: format!("http://{address}"),
            log,
            child,
        };
        let client = reqwest::Client::new();
        let ready = format!("{}{ready_path}", service.url);
        crate::wait_for(
            &format!("{name} to be ready"),
            Duration::from_secs(30),
            || {
                let (client, ready) = (client.clone(), ready.clone());
                async move {
                    let response = client.get(&ready).send().await.ok()?;
                    response.status().is_success().then_some(())
                }
            },
        )
        .await;
        service
    }
}

/// The five services, wired to each other.
#[derive(Debug)]
pub struct System {
    /// In start order: identity, policy, slm, orchestrator, gateway.
    pub services: Vec<Service>,
    _logs: tempfile::TempDir,
}

/// Where `cargo build` put the binaries: `target/debug`, or `target/$SOMA_BIN_PROFILE`
/// (e.g. `release` for load runs).
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::repo_root().join("target"), PathBuf::from);
    let profile = std::env::var("SOMA_BIN_PROFILE").unwrap_or_else(|_| "debug".to_owned());
    let path = target.join(profile).join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the services first with `cargo build --workspace --bins` (scripts/test.sh does)",
        path.display()
    );
    path
}

impl System {
    /// Starts the five services; traces and logs go to `otlp_grpc` when given.
    pub async fn start(otlp_grpc: Option<&str>) -> Self {
        let logs = tempfile::tempdir().expect("log directory");
        let ports: Vec<u16> = SERVICES.iter().map(|_| crate::free_port()).collect();
        let url = |binary: &str| {
            let index = SERVICES
                .iter()
                .position(|(name, _)| *name == binary)
                .unwrap_or(0);
            format!("http://127.0.0.1:{}", ports[index])
        };
        let mut services = Vec::new();
        for (index, (name, job)) in SERVICES.iter().enumerate() {
            let log = logs.path().join(format!("{name}.log"));
            let out = std::fs::File::create(&log).expect("log file");
            let err = out.try_clone().expect("log file");
            let mut command = tokio::process::Command::new(binary(name));
            command
                .env("LISTEN_ADDR", format!("127.0.0.1:{}", ports[index]))
                .env("ORCHESTRATOR_URL", url("orchestrator"))
                .env("POLICY_ENGINE_URL", url("policy-engine"))
                .env("IDENTITY_SERVICE_URL", url("identity-service"))
                .env("SLM_SERVICE_URL", url("slm-service"))
                .env("RUST_LOG", "info")
                .env("OTEL_BSP_SCHEDULE_DELAY", "100")
                .env("OTEL_BLRP_SCHEDULE_DELAY", "100")
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .kill_on_drop(true);
            match otlp_grpc {
                Some(endpoint) => {
                    command
                        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
                        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
                }
                None => {
                    command
                        .env("OTEL_TRACES_EXPORTER", "none")
                        .env("OTEL_LOGS_EXPORTER", "none");
                }
            }
            let child = command
                .spawn()
                .unwrap_or_else(|e| panic!("start {name}: {e}"));
            services.push(Service {
                name,
                job,
                url: format!("http://127.0.0.1:{}", ports[index]),
                log,
                child,
            });
        }
        let system = Self {
            services,
            _logs: logs,
        };
        let client = reqwest::Client::new();
        for service in &system.services {
            let ready = format!("{}/readyz", service.url);
            let client = client.clone();
            let name = service.name;
            crate::wait_for(
                &format!("{name} to be ready"),
                Duration::from_secs(30),
                || {
                    let (client, ready) = (client.clone(), ready.clone());
                    async move {
                        let response = client.get(&ready).send().await.ok()?;
                        response.status().is_success().then_some(())
                    }
                },
            )
            .await;
        }
        system
    }

    /// The service with this binary name.
    pub fn service(&self, name: &str) -> &Service {
        self.services
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    /// The service with this binary name, to wait for it.
    pub fn service_mut(&mut self, name: &str) -> &mut Service {
        self.services
            .iter_mut()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    /// The gateway's base URL.
    pub fn gateway(&self) -> String {
        self.service("gateway").url.clone()
    }

    /// Prometheus scrape targets for every service.
    pub fn targets(&self) -> Vec<Target> {
        self.services
            .iter()
            .map(|s| Target {
                job: s.job.to_owned(),
                address: s.url.trim_start_matches("http://").to_owned(),
            })
            .collect()
    }
}
