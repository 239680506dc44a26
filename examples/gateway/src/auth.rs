//! Authentication: `POST /v1/auth/token` and the [`User`] extractor, both backed by
//! identity-service.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use soma_example_support::{post_json, ApiError, JsonBody, Reply};

use crate::app::AppState;

/// The caller, as identity-service vouched for its bearer token.
#[derive(Clone, Debug)]
pub(crate) struct User {
    /// The token's subject (the user name).
    pub(crate) subject: String,
}

#[derive(Deserialize)]
struct Verified {
    sub: String,
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("missing bearer token (Authorization: Bearer <token>)")
            })?;
        let identity = &state.peers.identity_service;
        let body = json!({ "token": token });
        match post_json::<_, Verified>(&state.client, identity, "/v1/tokens/verify", &body).await? {
            Reply::Ok(verified) => Ok(User {
                subject: verified.sub,
            }),
            Reply::Refused {
                status: StatusCode::UNAUTHORIZED,
                error,
            } => Err(ApiError::unauthorized(error)),
            Reply::Refused { status, error } => Err(ApiError::bad_gateway(format!(
                "identity-service answered {status}: {error}"
            ))),
        }
    }
}

#[derive(Deserialize, Serialize)]
pub(crate) struct Credentials {
    user: String,
    password: String,
}

#[derive(Deserialize)]
struct Issued {
    token: String,
    token_type: String,
    expires_in: u64,
}

/// `POST /v1/auth/token`: exchanges a user name and password for a bearer token.
pub(crate) async fn issue_token(
    State(state): State<AppState>,
    JsonBody(credentials): JsonBody<Credentials>,
) -> Result<Json<Value>, ApiError> {
    let identity = &state.peers.identity_service;
    match post_json::<_, Issued>(&state.client, identity, "/v1/tokens", &credentials).await? {
        Reply::Ok(issued) => Ok(Json(json!({
            "token": issued.token,
            "token_type": issued.token_type,
            "expires_in": issued.expires_in,
        }))),
        Reply::Refused { status, error }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST =>
        {
            Err(ApiError::new(status, error))
        }
        Reply::Refused { status, error } => Err(ApiError::bad_gateway(format!(
            "identity-service answered {status}: {error}"
        ))),
    }
}
