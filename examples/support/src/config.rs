//! `LISTEN_ADDR` and the peers' base URLs, read once at start.

use std::net::SocketAddr;

/// The address a service listens on (default `0.0.0.0:<the service's port>`).
pub const LISTEN_ADDR: &str = "LISTEN_ADDR";
/// Base URL of the orchestrator (default `http://orchestrator:8000`).
pub const ORCHESTRATOR_URL: &str = "ORCHESTRATOR_URL";
/// Base URL of the policy engine (default `http://policy-engine:8001`).
pub const POLICY_ENGINE_URL: &str = "POLICY_ENGINE_URL";
/// Base URL of the identity service (default `http://identity-service:8002`).
pub const IDENTITY_SERVICE_URL: &str = "IDENTITY_SERVICE_URL";
/// Base URL of the SLM service (default `http://slm-service:8003`).
pub const SLM_SERVICE_URL: &str = "SLM_SERVICE_URL";

/// A variable holds a value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{var}={value:?} is not valid: expected {expected}")]
pub struct ConfigError {
    var: &'static str,
    value: String,
    expected: &'static str,
}

/// One peer service: its name (for error messages) and base URL, without a trailing slash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    name: &'static str,
    base: String,
}

impl Peer {
    /// A peer called `name` at `base` (e.g. `http://127.0.0.1:8001`).
    ///
    /// # Errors
    ///
    /// If `base` is not an `http://` or `https://` URL with a host.
    pub fn new(name: &'static str, base: &str) -> Result<Self, ConfigError> {
        Self::parse(name, name, base)
    }

    fn parse(name: &'static str, var: &'static str, base: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError {
            var,
            value: base.to_owned(),
            expected: "an http:// or https:// base URL, e.g. http://policy-engine:8001",
        };
        let url = url::Url::parse(base).map_err(|_| invalid())?;
        if !matches!(url.scheme(), "http" | "https")
            || url.host_str().is_none()
            || url.query().is_some()
        {
            return Err(invalid());
        }
        Ok(Self {
            name,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// The peer's name, e.g. `policy-engine`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The URL of `path` (which starts with `/`) on this peer.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The four peers a service may call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peers {
    /// `ORCHESTRATOR_URL`.
    pub orchestrator: Peer,
    /// `POLICY_ENGINE_URL`.
    pub policy_engine: Peer,
    /// `IDENTITY_SERVICE_URL`.
    pub identity_service: Peer,
    /// `SLM_SERVICE_URL`.
    pub slm_service: Peer,
}

/// Where a service listens and where its peers are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// The service's name, as given to `setup_observability`.
    pub name: &'static str,
    /// `LISTEN_ADDR`.
    pub listen_addr: SocketAddr,
    /// The peers' base URLs.
    pub peers: Peers,
}

impl ServiceConfig {
    /// Reads `LISTEN_ADDR` (default `0.0.0.0:<default_port>`) and the peer URLs from the
    /// environment. An empty variable counts as unset.
    ///
    /// # Errors
    ///
    /// The first variable whose value cannot be used.
    pub fn from_env(name: &'static str, default_port: u16) -> Result<Self, ConfigError> {
        Self::from_lookup(name, default_port, |var| std::env::var(var).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    ///
    /// # Errors
    ///
    /// The first variable whose value cannot be used.
    pub fn from_lookup(
        name: &'static str,
        default_port: u16,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());
        let listen_addr = match get(LISTEN_ADDR) {
            Some(value) => value.trim().parse().map_err(|_| ConfigError {
                var: LISTEN_ADDR,
                value,
                expected: "an ip:port socket address, e.g. 0.0.0.0:8080 or 127.0.0.1:8080",
            })?,
            None => SocketAddr::from(([0, 0, 0, 0], default_port)),
        };
        let peer = |peer_name: &'static str, var: &'static str, default: &str| {
            let value = get(var).unwrap_or_else(|| default.to_owned());
            Peer::parse(peer_name, var, value.trim())
        };
        Ok(Self {
            name,
            listen_addr,
            peers: Peers {
                orchestrator: peer("orchestrator", ORCHESTRATOR_URL, "http://orchestrator:8000")?,
                policy_engine: peer(
                    "policy-engine",
                    POLICY_ENGINE_URL,
                    "http://policy-engine:8001",
                )?,
                identity_service: peer(
                    "identity-service",
                    IDENTITY_SERVICE_URL,
                    "http://identity-service:8002",
                )?,
                slm_service: peer("slm-service", SLM_SERVICE_URL, "http://slm-service:8003")?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_use_the_kubernetes_service_names() {
        let config = ServiceConfig::from_lookup("gateway", 8080, |_| None).unwrap();
        assert_eq!(config.listen_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(
            config.peers.policy_engine.url("/v1/evaluate"),
            "http://policy-engine:8001/v1/evaluate"
        );
        assert_eq!(config.peers.slm_service.name(), "slm-service");
    }

    #[test]
    fn variables_override_the_defaults() {
        let config = ServiceConfig::from_lookup("gateway", 8080, |var| match var {
            LISTEN_ADDR => Some("127.0.0.1:18080".to_owned()),
            ORCHESTRATOR_URL => Some("http://127.0.0.1:8000/".to_owned()),
            SLM_SERVICE_URL => Some(String::new()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:18080");
        assert_eq!(
            config.peers.orchestrator.url("/v1/workflows"),
            "http://127.0.0.1:8000/v1/workflows"
        );
        assert_eq!(config.peers.slm_service.url(""), "http://slm-service:8003");
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let err = ServiceConfig::from_lookup("gateway", 8080, |var| {
            (var == POLICY_ENGINE_URL).then(|| "policy-engine:8001".to_owned())
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with(r#"POLICY_ENGINE_URL="policy-engine:8001" is not valid"#),
            "{err}"
        );
        let err = ServiceConfig::from_lookup("gateway", 8080, |var| {
            (var == LISTEN_ADDR).then(|| "8080".to_owned())
        })
        .unwrap_err();
        assert!(err.to_string().contains("LISTEN_ADDR"), "{err}");
    }
}
