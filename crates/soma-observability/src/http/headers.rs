//! Chosen HTTP headers as span attributes, as the HTTP semantic conventions describe them:
//! `http.request.header.<name>` and `http.response.header.<name>` (the name in lower case), each
//! a string array with one element per header line.
//!
//! Nothing is captured unless listed, in the environment
//! (`OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST`, `..._SERVER_RESPONSE`,
//! `..._CLIENT_REQUEST`, `..._CLIENT_RESPONSE`: comma-separated names, case-insensitive) or in
//! code ([`ObservabilityBuilder::with_captured_headers`](crate::ObservabilityBuilder::with_captured_headers),
//! [`HttpClient::with_captured_headers`](crate::HttpClient::with_captured_headers)). Server lists
//! apply to the server span of every request, client lists to the spans of
//! [`HttpClient`](crate::HttpClient).
//!
//! - Values of headers whose name holds a secret, by the same rule as `url.query`'s parameters
//!   (`Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, and any name holding
//!   `token`, `secret`, `password`, `apikey`, `credential`, `signature`, `session`, ...: the
//!   rule and its word lists are in `http/sensitive.rs`), and of the headers named in
//!   `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS`, are recorded as `[REDACTED]`
//!   even when listed: the attribute says the header was there, not what it held.
//! - Bounded: at most [`MAX_CAPTURED_HEADERS`] names per list (more is a configuration error),
//!   at most [`MAX_VALUES_PER_HEADER`] lines per header (further lines are left out), each value
//!   cut to `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT` bytes. Values that are not UTF-8 are converted
//!   lossily.
//! - Only span attributes: a captured header never becomes a metric label.

use axum::http::{HeaderMap, HeaderName};
use opentelemetry::{Array, Key, KeyValue, StringValue, Value};

pub use crate::config::{HeaderCapture, MAX_CAPTURED_HEADERS};
use crate::error::ConfigError;

/// The most lines of one header recorded in its attribute.
pub const MAX_VALUES_PER_HEADER: usize = 16;
/// What a redacted header value is recorded as.
pub const REDACTED: &str = "[REDACTED]";

/// The header lists compiled for recording.
#[derive(Debug, Default)]
pub(crate) struct HeaderCaptures {
    pub(crate) server_request: Capture,
    pub(crate) server_response: Capture,
    #[cfg_attr(not(feature = "client"), allow(dead_code))] // read by HttpClient
    pub(crate) client_request: Capture,
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) client_response: Capture,
    /// The names the team added to the sensitive ones (`SANITIZE_FIELDS`), normalised: for
    /// query parameters too.
    pub(crate) sensitive_names: Vec<Box<[u8]>>,
}

impl HeaderCaptures {
    /// Validates and compiles `capture`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] naming `setting`, for an invalid header name or a list
    /// longer than [`MAX_CAPTURED_HEADERS`].
    pub(crate) fn new(capture: &HeaderCapture, setting: &'static str) -> Result<Self, ConfigError> {
        let sanitize = names(&capture.sanitize, setting)?;
        let compile = |list: &[String], prefix: &str| -> Result<Capture, ConfigError> {
            let headers = names(list, setting)?
                .into_iter()
                .map(|name| Captured {
                    key: Key::from(format!("{prefix}{}", name.as_str())),
                    redact: always_sensitive(name.as_str()) || sanitize.contains(&name),
                    name,
                })
                .collect();
            Ok(Capture { headers })
        };
        Ok(Self {
            server_request: compile(&capture.server_request, "http.request.header.")?,
            server_response: compile(&capture.server_response, "http.response.header.")?,
            client_request: compile(&capture.client_request, "http.request.header.")?,
            client_response: compile(&capture.client_response, "http.response.header.")?,
            sensitive_names: sanitize
                .iter()
                .map(|name| super::sensitive::normalised(name.as_str()))
                .collect(),
        })
    }
}

fn names(list: &[String], setting: &'static str) -> Result<Vec<HeaderName>, ConfigError> {
    if list.len() > MAX_CAPTURED_HEADERS {
        return Err(ConfigError::InvalidValue {
            setting,
            reason: format!(
                "{} header names given, at most {MAX_CAPTURED_HEADERS} are allowed per list",
                list.len()
            ),
        });
    }
    let mut out: Vec<HeaderName> = Vec::with_capacity(list.len());
    for name in list {
        let parsed = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            ConfigError::InvalidValue {
                setting,
                reason: format!("{name:?} is not a valid HTTP header name"),
            }
        })?;
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    Ok(out)
}

/// Credentials: recorded as [`REDACTED`] whatever the configuration says; the same rule as
/// `url.query`'s (see the module docs).
fn always_sensitive(name: &str) -> bool {
    super::sensitive::is_sensitive(name)
}

/// One list of captured headers.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    headers: Vec<Captured>,
}

#[derive(Debug)]
struct Captured {
    name: HeaderName,
    key: Key,
    redact: bool,
}

impl Capture {
    /// Calls `set` with one attribute per listed header present in `headers`.
    pub(crate) fn record(&self, headers: &HeaderMap, limit: usize, mut set: impl FnMut(KeyValue)) {
        for captured in &self.headers {
            let values: Vec<StringValue> = headers
                .get_all(&captured.name)
                .iter()
                .take(MAX_VALUES_PER_HEADER)
                .map(|value| {
                    if captured.redact {
                        StringValue::from(REDACTED)
                    } else {
                        let text = String::from_utf8_lossy(value.as_bytes());
                        StringValue::from(super::attributes::truncate(&text, limit).to_owned())
                    }
                })
                .collect();
            if !values.is_empty() {
                set(KeyValue::new(
                    captured.key.clone(),
                    Value::Array(Array::String(values)),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_always_sensitive() {
        for name in [
            "authorization",
            "proxy-authorization",
            "cookie",
            "set-cookie",
            "x-api-key",
            "api_key",
            "x-apikey",
            "x-auth-token",
            "x-client-secret",
        ] {
            assert!(always_sensitive(name), "{name}");
        }
        for name in ["accept", "x-request-id", "content-type", "user-agent"] {
            assert!(!always_sensitive(name), "{name}");
        }
    }
}
