//! Secure export: OTLP over TLS (`https://` endpoints), a private CA and mTLS.
//!
//! # The rules
//!
//! - The endpoint's scheme decides: `https://` is TLS, `http://` is plain text. An endpoint
//!   without a scheme is rejected at startup (OpenTelemetry's gRPC exporter would take
//!   `collector:4317` to mean `https`), so what is written is what is used.
//! - An `https://` endpoint is verified with the system roots (the platform's verifier for
//!   HTTP/protobuf, the system certificate store for gRPC; `SSL_CERT_FILE` and `SSL_CERT_DIR`
//!   are honoured), unless `OTEL_EXPORTER_OTLP_CERTIFICATE` names a PEM file of CA
//!   certificates: then those, and only those, verify the collector, as in the other
//!   OpenTelemetry SDKs.
//! - `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `OTEL_EXPORTER_OTLP_CLIENT_KEY` (PEM files of a
//!   certificate chain and its private key: PKCS#8, PKCS#1 or SEC1) give this service a client
//!   certificate for a collector that requires mTLS. One without the other is an error.
//! - Each has a per-signal form (`OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`, `..._LOGS_...`,
//!   `..._METRICS_...`) that beats the generic one, as the endpoint's does.
//! - Every file is read and checked at startup, for gRPC and HTTP/protobuf alike: a file that is
//!   missing, unreadable, not PEM, or holds no certificate (no private key) is a
//!   [`ConfigError::TlsFile`] naming the variable, the path and what the file must hold. A TLS
//!   file set for an `http://` endpoint is an error too ([`ConfigError::InvalidValue`]): it would
//!   do nothing, and the telemetry would travel in plain text.
//!
//! # When the handshake fails
//!
//! A failed export is counted (`otel_sdk_exporter_span_exported_total{error_type="export_failed"}`,
//! the same for log records) and logged once per failure as a warning that says what failed: an
//! untrusted collector certificate (`invalid peer certificate: UnknownIssuer`, check
//! `OTEL_EXPORTER_OTLP_CERTIFICATE`), a client certificate the collector requires or refuses, or
//! another TLS error. Requests to the service are not slowed: exports run on their own thread.
//!
//! The OTLP/HTTP exporter reports every failed request as `network error`, without its cause.
//! The client built here for it keeps the cause of the last failed request of the export thread
//! it runs on, and the warning, written on that thread right after the export, reads it.
//!
//! # Crypto
//!
//! rustls with the aws-lc-rs provider, for both transports: reqwest 0.13's default TLS (so an
//! application that already uses reqwest with its defaults adds nothing) and tonic's
//! `tls-aws-lc`. ring would need reqwest's `rustls-no-provider`, which makes every other
//! `reqwest::Client` of the process panic at construction unless a process-wide provider was
//! installed first.

// Without `otlp` nothing is exported, so nothing here is used but the variable names.
#![cfg_attr(not(feature = "otlp"), allow(dead_code, unused_imports))]

use std::path::Path;

use crate::error::ConfigError;
#[cfg(feature = "otlp")]
use crate::error::{SetupError, Signal};

/// The variables (or, set in code, the fields) one signal's TLS files come from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vars {
    pub(crate) certificate: &'static str,
    pub(crate) client_certificate: &'static str,
    pub(crate) client_key: &'static str,
}

impl Vars {
    /// The fields of configuration set in code.
    #[cfg(feature = "otlp")]
    fn fields(signal: Signal) -> Self {
        match signal {
            Signal::Logs => Self {
                certificate: "ObservabilityConfig::logs.certificate",
                client_certificate: "ObservabilityConfig::logs.client_certificate",
                client_key: "ObservabilityConfig::logs.client_key",
            },
            Signal::Metrics => Self {
                certificate: "ObservabilityConfig::metrics.certificate",
                client_certificate: "ObservabilityConfig::metrics.client_certificate",
                client_key: "ObservabilityConfig::metrics.client_key",
            },
            _ => Self {
                certificate: "ObservabilityConfig::traces.certificate",
                client_certificate: "ObservabilityConfig::traces.client_certificate",
                client_key: "ObservabilityConfig::traces.client_key",
            },
        }
    }
}

/// One signal's TLS settings, borrowed from its configuration
/// ([`OtlpConfig::tls`](crate::config::OtlpConfig::tls)): the endpoint and the three files.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings<'a> {
    pub(crate) endpoint: &'a str,
    pub(crate) certificate: Option<&'a Path>,
    pub(crate) client_certificate: Option<&'a Path>,
    pub(crate) client_key: Option<&'a Path>,
}

/// The PEM contents of one signal's TLS files, checked.
#[derive(Default)]
pub(crate) struct Files {
    /// CA certificates that verify the collector (`None`: the system roots).
    ca: Option<Vec<u8>>,
    /// Client certificate chain and private key.
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Reads and checks the TLS files of `otlp` (see the [module docs](self)); `vars` name where
/// each came from.
///
/// # Errors
///
/// [`ConfigError::TlsFile`] for a file that cannot be used, [`ConfigError::InvalidValue`] for a
/// certificate without its key (or the reverse), or for TLS files with an `http://` endpoint.
#[cfg(feature = "otlp")]
pub(crate) fn check(otlp: Settings<'_>, vars: &Vars) -> Result<(), ConfigError> {
    load(otlp, vars).map(drop)
}

/// Without `otlp` nothing is exported: the files are never read.
#[cfg(not(feature = "otlp"))]
#[allow(clippy::unnecessary_wraps)] // the signature of the `otlp` build's
pub(crate) fn check(_otlp: Settings<'_>, _vars: &Vars) -> Result<(), ConfigError> {
    Ok(())
}

#[cfg(feature = "otlp")]
fn load(otlp: Settings<'_>, vars: &Vars) -> Result<Files, ConfigError> {
    let set = [
        (vars.certificate, otlp.certificate),
        (vars.client_certificate, otlp.client_certificate),
        (vars.client_key, otlp.client_key),
    ];
    if let Some((var, _)) = set.iter().find(|(_, path)| path.is_some()) {
        if !is_https(otlp.endpoint) {
            return Err(ConfigError::InvalidValue {
                setting: var,
                reason: format!(
                    "it is set, but the endpoint {} is not https://: TLS settings apply to \
                     secure connections only; use an https:// endpoint, or unset {var}",
                    otlp.endpoint
                ),
            });
        }
    }
    let identity = match (otlp.client_certificate, otlp.client_key) {
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            let (set, missing) = if otlp.client_key.is_none() {
                (vars.client_certificate, vars.client_key)
            } else {
                (vars.client_key, vars.client_certificate)
            };
            return Err(ConfigError::InvalidValue {
                setting: set,
                reason: format!(
                    "it is set but {missing} is not: a client certificate (mTLS) needs both the \
                     certificate and its private key"
                ),
            });
        }
        (Some(cert), Some(key)) => Some((
            read_certificates(
                vars.client_certificate,
                cert,
                "this service's client certificate (chain)",
                Check::EndEntity,
            )?,
            read_key(vars.client_key, key)?,
        )),
    };
    let ca = otlp
        .certificate
        .map(|path| {
            read_certificates(
                vars.certificate,
                path,
                "the CA certificate(s) that signed the collector's certificate",
                Check::TrustAnchor,
            )
        })
        .transpose()?;
    Ok(Files { ca, identity })
}

fn is_https(endpoint: &str) -> bool {
    endpoint
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

#[cfg(feature = "otlp")]
fn read(setting: &'static str, path: &Path, holding: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|err| ConfigError::TlsFile {
        setting,
        path: path.to_owned(),
        problem: format!("cannot read it ({err}); it must be a PEM file holding {holding}"),
    })
}

/// How the certificates of a file are used.
#[cfg(feature = "otlp")]
#[derive(Clone, Copy)]
enum Check {
    /// Each one verifies the collector.
    TrustAnchor,
    /// The first one is this service's; the others are its chain.
    EndEntity,
}

/// The file's bytes, once it is known to hold at least one PEM certificate, each of them X.509,
/// and nothing broken.
#[cfg(feature = "otlp")]
fn read_certificates(
    setting: &'static str,
    path: &Path,
    holding: &str,
    check: Check,
) -> Result<Vec<u8>, ConfigError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::CertificateDer;

    let pem = read(setting, path, holding)?;
    let problem = |what: String| ConfigError::TlsFile {
        setting,
        path: path.to_owned(),
        problem: format!("{what}; it must be a PEM file holding {holding}"),
    };
    let mut found = 0_usize;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate =
            certificate.map_err(|err| problem(format!("it is not valid PEM ({err})")))?;
        found += 1;
        let parsed = match check {
            Check::TrustAnchor => webpki::anchor_from_trusted_cert(&certificate).map(drop),
            Check::EndEntity if found == 1 => {
                webpki::EndEntityCert::try_from(&certificate).map(drop)
            }
            Check::EndEntity => Ok(()),
        };
        parsed.map_err(|err| {
            problem(format!(
                "certificate {found} in it is not a valid X.509 certificate ({err})"
            ))
        })?;
    }
    if found == 0 {
        return Err(problem(
            "it holds no PEM certificate (no -----BEGIN CERTIFICATE----- block)".to_owned(),
        ));
    }
    Ok(pem)
}

/// The file's bytes, once it is known to hold a PEM private key.
#[cfg(feature = "otlp")]
fn read_key(setting: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    use rustls_pki_types::pem::{self, PemObject as _};
    use rustls_pki_types::PrivateKeyDer;

    let holding = "the private key of the client certificate (PKCS#8, PKCS#1 or SEC1)";
    let pem = read(setting, path, holding)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| ConfigError::TlsFile {
        setting,
        path: path.to_owned(),
        problem: match err {
            pem::Error::NoItemsFound => format!(
                "it holds no PEM private key (no -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or \
                 EC PRIVATE KEY block); it must be a PEM file holding {holding}"
            ),
            other => {
                format!("it is not valid PEM ({other}); it must be a PEM file holding {holding}")
            }
        },
    })?;
    Ok(pem)
}

/// Configures TLS on a gRPC exporter builder for an `https://` endpoint: the configured CA or
/// the system roots, and the client certificate. An `http://` endpoint is left plain.
///
/// # Errors
///
/// [`SetupError::Config`] when a TLS file cannot be used (it changed since the configuration
/// was read, or was set in code).
#[cfg(feature = "grpc")]
pub(crate) fn tonic<B: opentelemetry_otlp::WithTonicConfig>(
    builder: B,
    otlp: Settings<'_>,
    signal: Signal,
) -> Result<B, SetupError> {
    Ok(match tonic_config(otlp, signal)? {
        Some(tls) => builder.with_tls_config(tls),
        None => builder,
    })
}

/// The TLS of a gRPC connection to an `https://` endpoint (`None` for `http://`): the
/// configured CA or the system roots, and the client certificate. The one place it is built,
/// for the exporters of `opentelemetry-otlp` ([`tonic`]) and the span exporter's channel.
///
/// # Errors
///
/// [`SetupError::Config`] when a TLS file cannot be used.
#[cfg(feature = "grpc")]
pub(crate) fn tonic_config(
    otlp: Settings<'_>,
    signal: Signal,
) -> Result<Option<::tonic::transport::ClientTlsConfig>, SetupError> {
    use ::tonic::transport::{Certificate, ClientTlsConfig, Identity};

    if !is_https(otlp.endpoint) {
        return Ok(None);
    }
    let files = load(otlp, &Vars::fields(signal))?;
    let mut tls = ClientTlsConfig::new();
    tls = match files.ca {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
        None => tls.with_native_roots(),
    };
    if let Some((cert, key)) = files.identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Ok(Some(tls))
}

/// Gives an HTTP/protobuf exporter builder its client: reqwest's blocking client (the exporter
/// runs on its own thread), with the configured TLS for an `https://` endpoint and the export
/// timeout, wrapped to keep the cause of a failed request (see the [module docs](self)).
///
/// # Errors
///
/// [`SetupError::Config`] when a TLS file cannot be used, [`SetupError::Exporter`] when the
/// client cannot be built (for example a key that does not match its certificate).
#[cfg(feature = "otlp")]
pub(crate) fn http<B: opentelemetry_otlp::WithHttpConfig>(
    builder: B,
    otlp: Settings<'_>,
    timeout: std::time::Duration,
    signal: Signal,
) -> Result<B, SetupError> {
    Ok(builder.with_http_client(RecordingClient(http_client(otlp, timeout, signal)?)))
}

/// The blocking reqwest client of the HTTP/protobuf exporters (see [`http`]): the configured
/// TLS for an `https://` endpoint, and the export timeout per request.
///
/// # Errors
///
/// As [`http`].
#[cfg(feature = "otlp")]
pub(crate) fn http_client(
    otlp: Settings<'_>,
    timeout: std::time::Duration,
    signal: Signal,
) -> Result<reqwest::blocking::Client, SetupError> {
    let files = if is_https(otlp.endpoint) {
        load(otlp, &Vars::fields(signal))?
    } else {
        Files::default()
    };
    let failed = |reason: String| SetupError::Exporter {
        signal,
        source: opentelemetry_otlp::ExporterBuildError::InternalFailure(reason),
    };
    let build = move || -> Result<reqwest::blocking::Client, String> {
        let mut client = reqwest::blocking::Client::builder().timeout(timeout);
        if let Some(ca) = &files.ca {
            let roots = reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|err| format!("the CA certificates cannot be used: {}", chain(&err)))?;
            client = client.tls_certs_only(roots);
        }
        if let Some((cert, key)) = &files.identity {
            let pem = [cert.as_slice(), b"\n", key.as_slice()].concat();
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|err| format!("the client certificate cannot be used: {}", chain(&err)))?;
            client = client.identity(identity);
        }
        client
            .build()
            .map_err(|err| format!("cannot build the HTTP client: {}", chain(&err)))
    };
    // The blocking client starts a runtime of its own, which must not happen on (nor be dropped
    // from) an async worker thread: build it on a thread of its own, as the exporter does.
    let client = std::thread::Builder::new()
        .name("otel-http-client".to_owned())
        .spawn(build)
        .map_err(|err| {
            failed(format!(
                "cannot start a thread to build the HTTP client: {err}"
            ))
        })?
        .join()
        .map_err(|_| failed("building the HTTP client panicked".to_owned()))?
        .map_err(failed)?;
    Ok(client)
}

/// `error`'s message and its causes, `: `-separated (reqwest hides the TLS error in its causes).
#[cfg(feature = "otlp")]
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    use std::fmt::Write as _;
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(source) = cause {
        let text = source.to_string();
        if !out.contains(&text) {
            let _ = write!(out, ": {text}");
        }
        cause = source.source();
    }
    out
}

#[cfg(feature = "otlp")]
std::thread_local! {
    /// Why the last request of this thread's HTTP exporter failed (see the [module docs](self)).
    static LAST_FAILURE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Takes the cause of the last failed HTTP export request made on this thread, if any.
#[cfg(feature = "otlp")]
pub(crate) fn take_transport_failure() -> Option<String> {
    LAST_FAILURE.with(|last| last.borrow_mut().take())
}

/// Keeps `cause`, why the HTTP export request just made on this thread failed (`None`: it did
/// not), for [`take_transport_failure`].
#[cfg(feature = "otlp")]
pub(crate) fn record_transport_failure(cause: Option<String>) {
    LAST_FAILURE.with(|last| *last.borrow_mut() = cause);
}

/// Without `otlp` there is no exporter.
#[cfg(not(feature = "otlp"))]
pub(crate) fn take_transport_failure() -> Option<String> {
    None
}

/// The blocking reqwest client, keeping why its last request failed for the warning.
#[cfg(feature = "otlp")]
#[derive(Debug)]
struct RecordingClient(reqwest::blocking::Client);

#[cfg(feature = "otlp")]
#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for RecordingClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let result = send_bounded(&self.0, request);
        record_transport_failure(result.as_ref().err().map(|err| chain(err.as_ref())));
        result
    }
}

/// The most of a collector's answer that is read, for every signal: an OTLP export response is
/// a count and a message.
#[cfg(feature = "otlp")]
pub(crate) const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// Sends `request` and reads at most [`MAX_RESPONSE_BYTES`] of the answer (an OTLP export
/// response is a count and a message; opentelemetry-http would read 4 MiB): a longer answer
/// is left unread and the body given back empty, as the span exporter does.
#[cfg(feature = "otlp")]
fn send_bounded(
    client: &reqwest::blocking::Client,
    request: http::Request<bytes::Bytes>,
) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
    use std::io::Read as _;
    let limit = MAX_RESPONSE_BYTES;
    let mut response = client.execute(request.try_into()?)?;
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    let mut body = Vec::new();
    let len = response.take(limit + 1).read_to_end(&mut body)?;
    if len as u64 > limit {
        body = Vec::new();
    }
    let mut answer = http::Response::builder()
        .status(status)
        .body(bytes::Bytes::from(body))?;
    *answer.headers_mut() = headers;
    Ok(answer)
}

#[cfg(all(test, feature = "otlp"))]
mod tests {
    use super::*;

    #[test]
    fn only_an_https_scheme_is_tls() {
        assert!(is_https("https://collector:4318/v1/traces"));
        assert!(is_https("HTTPS://collector:4317"));
        assert!(!is_https("http://collector:4318"));
        assert!(!is_https("http"));
    }

    #[test]
    fn a_chain_shows_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Outer(#[source] std::io::Error);
        let err = Outer(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        ));
        assert_eq!(
            chain(&err),
            "error sending request: invalid peer certificate: UnknownIssuer"
        );
    }
}
