//! An `https://` endpoint without `OTEL_EXPORTER_OTLP_CERTIFICATE` is verified with the system
//! roots. The test's CA is made the system store with `SSL_CERT_FILE`, which both transports'
//! root loading (rustls-native-certs, as the OpenSSL tools do) honours.
//!
//! Own test binary: it sets `SSL_CERT_FILE` for the whole process before anything loads roots.

mod common;
mod secure;

use common::build;
use secure::{config, hit, routes, ClientAuth, Pki, TlsOtlp, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_endpoint_is_verified_with_the_system_roots() {
    let pki = Pki::generate();
    // The only test of this process; nothing has loaded the system roots yet.
    std::env::set_var("SSL_CERT_FILE", &pki.ca);
    let receiver = TlsOtlp::start(&pki, ClientAuth::None).await;
    let mut protocols = vec!["http/protobuf"];
    if cfg!(feature = "grpc") {
        protocols.push("grpc");
    }
    let mut expected = 0;
    for protocol in protocols {
        let cfg = config(&receiver.http_endpoint(), protocol, &[]);
        assert_eq!(cfg.traces.certificate, None);
        let parts = build("tls-system-roots", cfg);
        let app = parts.instrument(routes()).unwrap();
        hit(&app, 2).await;
        expected += 2;
        let spans = receiver
            .otlp
            .wait_for_spans(WAIT, |s| s.len() >= expected)
            .await;
        assert_eq!(spans.len(), expected, "{protocol}: spans did not arrive");
    }
    assert!(
        receiver.handshake_errors().is_empty(),
        "{:?}",
        receiver.handshake_errors()
    );
}
