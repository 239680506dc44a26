//! TLS for tests: certificates generated in the test ([`Pki`], rcgen) and an OTLP receiver
//! over TLS ([`TlsOtlp`]) that serves the same services as [`FakeOtlp`] (gRPC and HTTP/protobuf
//! on one port, told apart by ALPN and the HTTP/2 preface), optionally requiring a client
//! certificate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::otlp::FakeOtlp;

/// A CA, a server certificate it signed for `127.0.0.1` and `localhost`, a client certificate
/// it signed, and an unrelated CA: PEM files in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// A CA that signed nothing here: the wrong one to trust.
    pub other_ca: PathBuf,
    /// The server certificate (for `127.0.0.1`, `::1` and `localhost`) and its key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate signed by [`Pki::ca`] and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate signed by [`Pki::other_ca`] and its key.
    pub other_client_cert: PathBuf,
    pub other_client_key: PathBuf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let pem = params.self_signed(&key).unwrap().pem();
    (params, key, pem)
}

fn leaf(
    issuer: &Issuer<'_, &KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("client"),
    );
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// Generates the certificates and writes them as PEM files.
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let (ca_params, ca_key, ca_pem) = ca("soma test CA");
        let (other_params, other_key, other_pem) = ca("some other CA");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let other_issuer = Issuer::from_params(&other_params, &other_key);
        let (server_cert, server_key) = leaf(
            &issuer,
            &["localhost", "127.0.0.1", "::1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            &issuer,
            &["soma-service"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (other_client_cert, other_client_key) = leaf(
            &other_issuer,
            &["stranger"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Self {
            ca: write("ca.pem", &ca_pem),
            other_ca: write("other-ca.pem", &other_pem),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
            other_client_cert: write("other-client.pem", &other_client_cert),
            other_client_key: write("other-client.key", &other_client_key),
            dir,
        }
    }

    /// Writes `contents` to a file in the same directory (for broken files).
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

/// Whether the receiver asks the client for a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Server-side TLS only.
    None,
    /// mTLS: a client certificate signed by [`Pki::ca`] is required.
    Required,
}

/// An OTLP receiver over TLS on 127.0.0.1: gRPC and HTTP/protobuf on one port.
#[derive(Clone, Debug)]
pub struct TlsOtlp {
    /// What arrived (spans, logs), as for the plain receiver.
    pub otlp: FakeOtlp,
    pub addr: SocketAddr,
    handshake_errors: Arc<Mutex<Vec<String>>>,
}

impl TlsOtlp {
    /// Starts the receiver with `pki`'s server certificate.
    pub async fn start(pki: &Pki, client_auth: ClientAuth) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Required => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(&pki.ca).unwrap() {
                    roots.add(cert.unwrap()).unwrap();
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let certs = CertificateDer::pem_file_iter(&pki.server_cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
        let mut config = builder.with_single_cert(certs, key).unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let otlp = FakeOtlp::with_addrs(addr, addr);
        let app = otlp
            .http_router()
            .merge(otlp.grpc_routes().into_axum_router());
        let receiver = Self {
            otlp,
            addr,
            handshake_errors: Arc::default(),
        };
        let errors = Arc::clone(&receiver.handshake_errors);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                let errors = Arc::clone(&errors);
                tokio::spawn(async move {
                    let tls = match acceptor.accept(stream).await {
                        Ok(tls) => tls,
                        Err(err) => {
                            errors.lock().unwrap().push(err.to_string());
                            return;
                        }
                    };
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                        .await;
                });
            }
        });
        receiver
    }

    /// `https://127.0.0.1:PORT`, for gRPC.
    pub fn grpc_endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `https://127.0.0.1:PORT`: the base for HTTP/protobuf (`/v1/traces`, `/v1/logs`).
    pub fn http_endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `https://localhost:PORT`: the same receiver by name.
    pub fn localhost_endpoint(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Why handshakes failed, in the order they did (e.g. a client without a certificate).
    pub fn handshake_errors(&self) -> Vec<String> {
        self.handshake_errors.lock().unwrap().clone()
    }

    /// Waits until a handshake has failed (or `timeout` passes) and returns the errors.
    pub async fn wait_for_handshake_error(&self, timeout: std::time::Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let errors = self.handshake_errors();
            if !errors.is_empty() || tokio::time::Instant::now() >= deadline {
                return errors;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
