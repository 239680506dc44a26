//! Requests over a real socket, with `reqwest`.

/// `GET url` and the response's text.
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// `GET /metrics` from the server at `addr`, as Prometheus would scrape it over the network.
pub async fn scrape_socket(client: &reqwest::Client, addr: std::net::SocketAddr) -> String {
    get_text(client, &format!("http://{addr}/metrics")).await
}

/// The status of `GET url`.
pub async fn get_status(client: &reqwest::Client, url: &str) -> reqwest::StatusCode {
    client.get(url).send().await.unwrap().status()
}

/// An HTTP/2 connection with prior knowledge (h2c) to `addr`, and the task that drives it.
pub async fn h2c_connect(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    (sender, tokio::spawn(connection))
}
