//! Routes: `POST /v1/tokens` (issue) and `POST /v1/tokens/verify`.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use opentelemetry::metrics::{Counter, Meter};
use opentelemetry::KeyValue;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use soma_example_support::{health_routes, ApiError, JsonBody};

use crate::token::{Signer, TokenError};

/// The variable holding the signing key; the default is for local demos only.
const TOKEN_SECRET_VAR: &str = "IDENTITY_TOKEN_SECRET";
const DEMO_SECRET: &str = "soma-demo-secret-change-me";
/// How long a token is valid.
const TOKEN_TTL_SECS: u64 = 15 * 60;
/// The built-in users (`user`, `password`): demo accounts, documented in the README.
const USERS: &[(&str, &str)] = &[("demo", "demo-password"), ("alice", "alice-password")];

/// The service's business metrics (see docs/metrics-catalog.md).
#[derive(Clone, Debug)]
struct Metrics {
    issued: Counter<u64>,
    verifications: Counter<u64>,
}

impl Metrics {
    fn new(meter: &Meter) -> Self {
        Self {
            issued: meter
                .u64_counter("identity.tokens.issued")
                .with_unit("{token}")
                .with_description("Bearer tokens issued to users who presented valid credentials.")
                .build(),
            verifications: meter
                .u64_counter("identity.token.verifications")
                .with_unit("{verification}")
                .with_description("Token verifications, by result (valid, invalid, expired).")
                .build(),
        }
    }
}

/// What every request shares.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    signer: Signer,
    metrics: Metrics,
}

impl AppState {
    fn new(meter: &Meter, signer: Signer) -> Self {
        Self {
            signer,
            metrics: Metrics::new(meter),
        }
    }

    /// Signs with `IDENTITY_TOKEN_SECRET` (a fixed demo key when unset).
    pub(crate) fn from_env(meter: &Meter) -> Self {
        let secret = std::env::var(TOKEN_SECRET_VAR)
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                tracing::warn!("{TOKEN_SECRET_VAR} is not set: signing with the public demo key");
                DEMO_SECRET.to_owned()
            });
        Self::new(meter, Signer::new(secret.as_bytes(), TOKEN_TTL_SECS))
    }
}

pub(crate) fn app() -> axum::Router<AppState> {
    Router::new()
        .route("/v1/tokens", post(issue))
        .route("/v1/tokens/verify", post(verify))
        .merge(health_routes())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Compares digests, so the time taken says nothing about how much of the password matched.
fn credentials_valid(user: &str, password: &str) -> bool {
    let given = Sha256::digest(password.as_bytes());
    USERS
        .iter()
        .find(|(name, _)| *name == user)
        .is_some_and(|(_, expected)| Sha256::digest(expected.as_bytes()) == given)
}

#[derive(Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

async fn issue(
    State(state): State<AppState>,
    JsonBody(credentials): JsonBody<Credentials>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if credentials.user.is_empty() || credentials.password.is_empty() {
        return Err(ApiError::bad_request("user and password are required"));
    }
    if !credentials_valid(&credentials.user, &credentials.password) {
        tracing::info!("rejected credentials");
        return Err(ApiError::unauthorized("invalid user or password"));
    }
    let token = state.signer.issue(&credentials.user, now());
    state.metrics.issued.add(1, &[]);
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "token_type": "Bearer",
            "expires_in": state.signer.ttl_secs(),
        })),
    ))
}

#[derive(Deserialize)]
struct VerifyRequest {
    token: String,
}

async fn verify(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<VerifyRequest>,
) -> Result<Json<Value>, ApiError> {
    let result = state.signer.verify(&request.token, now());
    let label = match result {
        Ok(_) => "valid",
        Err(TokenError::Invalid) => "invalid",
        Err(TokenError::Expired) => "expired",
    };
    state
        .metrics
        .verifications
        .add(1, &[KeyValue::new("result", label)]);
    match result {
        Ok(claims) => Ok(Json(json!({ "sub": claims.sub, "exp": claims.exp }))),
        Err(TokenError::Invalid) => Err(ApiError::unauthorized("invalid token")),
        Err(TokenError::Expired) => Err(ApiError::unauthorized("token expired")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use soma_example_support::testing::{self, metric_value, test_telemetry};
    use soma_observability::ObservabilityParts;

    fn router(parts: &ObservabilityParts) -> Router {
        use opentelemetry::metrics::MeterProvider as _;
        let meter = parts.meter_provider().meter("identity-service");
        app().with_state(AppState::new(&meter, Signer::new(b"test key", 60)))
    }

    async fn post_json(app: &Router, path: &str, body: Value) -> (StatusCode, Value) {
        let (status, bytes) = testing::post_json(app, path, &body).await;
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn the_demo_user_gets_a_token_that_verifies() {
        let parts = test_telemetry("identity-service");
        let app = router(&parts);
        let (status, body) = post_json(
            &app,
            "/v1/tokens",
            json!({"user": "demo", "password": "demo-password"}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let token = body["token"].as_str().unwrap();

        let (status, body) = post_json(&app, "/v1/tokens/verify", json!({ "token": token })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["sub"], "demo");

        let metrics = parts.render_metrics().unwrap();
        assert_eq!(
            metric_value(&metrics, "identity_tokens_issued_total", &[]),
            Some(1.0)
        );
        assert_eq!(
            metric_value(
                &metrics,
                "identity_token_verifications_total",
                &[("result", "valid")]
            ),
            Some(1.0)
        );
    }

    #[tokio::test]
    async fn wrong_passwords_and_bad_tokens_are_401s() {
        let parts = test_telemetry("identity-service");
        let app = router(&parts);
        let (status, body) = post_json(
            &app,
            "/v1/tokens",
            json!({"user": "demo", "password": "guess"}),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "invalid user or password");

        let (status, body) = post_json(&app, "/v1/tokens/verify", json!({"token": "a.b.c"})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "invalid token");

        let expired = Signer::new(b"test key", 60).issue("demo", now() - 3600);
        let (status, body) =
            post_json(&app, "/v1/tokens/verify", json!({ "token": expired })).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "token expired");

        let (status, _) = post_json(&app, "/v1/tokens", json!({"user": "demo"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        let metrics = parts.render_metrics().unwrap();
        for result in ["invalid", "expired"] {
            let verifications = metric_value(
                &metrics,
                "identity_token_verifications_total",
                &[("result", result)],
            );
            assert_eq!(verifications, Some(1.0), "{result}");
        }
        assert_eq!(
            metric_value(&metrics, "identity_tokens_issued_total", &[]),
            None
        );
    }
}
