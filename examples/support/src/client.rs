//! Service-to-service calls through [`soma_observability::HttpClient`]: each call is a `CLIENT`
//! span carrying `traceparent`, and is measured as `http_client_request_duration_seconds`.

use std::time::Duration;

use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use soma_observability::{HttpClient, RequestBuilder};

use crate::config::Peer;
use crate::error::ApiError;

/// How long one call to a peer may take, response body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The instrumented client every service uses for its peers.
///
/// Create it after `setup_observability`: it takes the global meter, tracer and propagator.
///
/// # Errors
///
/// If `reqwest` cannot build a client (no TLS backend is needed: peers speak plain HTTP).
pub fn http_client() -> Result<HttpClient, reqwest::Error> {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()?;
    Ok(HttpClient::new(client))
}

/// What a peer answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply<T> {
    /// A 2xx response, its body parsed.
    Ok(T),
    /// Any other status, with the peer's `{"error": ...}` message (or the status text).
    Refused {
        /// The peer's status.
        status: StatusCode,
        /// The peer's error message.
        error: String,
    },
}

/// A peer could not be reached, or answered something that is not the expected JSON.
#[derive(Debug, thiserror::Error)]
#[error("{peer} is unavailable: {detail}")]
pub struct UpstreamError {
    peer: &'static str,
    detail: String,
}

impl UpstreamError {
    /// The peer's name, e.g. `slm-service`.
    pub fn peer(&self) -> &'static str {
        self.peer
    }
}

impl From<UpstreamError> for ApiError {
    fn from(err: UpstreamError) -> Self {
        ApiError::bad_gateway(err.to_string())
    }
}

/// `GET path` on `peer`.
///
/// # Errors
///
/// [`UpstreamError`] if the peer cannot be reached or its 2xx body is not a `T`.
pub async fn get_json<T: DeserializeOwned>(
    client: &HttpClient,
    peer: &Peer,
    path: &str,
) -> Result<Reply<T>, UpstreamError> {
    call(client, peer, client.get(peer.url(path))).await
}

/// `POST path` on `peer` with a JSON body.
///
/// # Errors
///
/// [`UpstreamError`] if the peer cannot be reached or its 2xx body is not a `T`.
pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
    client: &HttpClient,
    peer: &Peer,
    path: &str,
    body: &B,
) -> Result<Reply<T>, UpstreamError> {
    call(client, peer, client.post(peer.url(path)).json(body)).await
}

async fn call<T: DeserializeOwned>(
    client: &HttpClient,
    peer: &Peer,
    request: RequestBuilder,
) -> Result<Reply<T>, UpstreamError> {
    let failed = |err: reqwest::Error| UpstreamError {
        peer: peer.name(),
        detail: without_url(&err),
    };
    let response = client.send(request).await.map_err(failed)?;
    let status = response.status();
    if status.is_success() {
        return response.json().await.map(Reply::Ok).map_err(failed);
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let error = body["error"]
        .as_str()
        .map_or_else(|| status.to_string(), ToOwned::to_owned);
    Ok(Reply::Refused { status, error })
}

/// The error's description without the URL, which `reqwest` appends to most messages.
fn without_url(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_decode() {
        "unexpected response body"
    } else {
        "request failed"
    };
    kind.to_owned()
}
