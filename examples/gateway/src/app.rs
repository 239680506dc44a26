//! Routes and what they share. The marketplace lives in [`crate::marketplace`], tokens in
//! [`crate::auth`].

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry::metrics::Meter;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use soma_example_support::{get_json, health_routes, post_json, ApiError, JsonBody, Peers, Reply};
use soma_observability::genai::GenAiMetrics;
use soma_observability::HttpClient;

use crate::auth::{issue_token, User};
use crate::marketplace::{self, MarketplaceMetrics};

/// What every request shares.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) client: HttpClient,
    pub(crate) peers: Peers,
    pub(crate) marketplace: MarketplaceMetrics,
    /// The generate route as the gateway sees it (time to its client's first token).
    pub(crate) genai: GenAiMetrics,
}

/// The model slm-service serves by default (the gateway does not choose one).
const SLM_MODEL: &str = "soma-markov-1";

impl AppState {
    pub(crate) fn new(meter: &Meter, client: HttpClient, peers: Peers) -> Self {
        Self {
            client,
            peers,
            marketplace: MarketplaceMetrics::new(meter),
            genai: GenAiMetrics::new(meter, "soma", &[SLM_MODEL]),
        }
    }
}

pub(crate) fn app() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/token", post(issue_token))
        .route("/v1/workflows", post(create_workflow))
        .route("/v1/workflows/{id}", get(get_workflow))
        .route("/v1/marketplace/capsules", get(marketplace::search))
        .route(
            "/v1/marketplace/capsules/{id}/executions",
            post(marketplace::execute),
        )
        .route("/v1/generate", post(generate))
        .merge(health_routes())
}

/// Why the policy engine did not allow a request.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Denied by a rule: 403.
    Denied(String),
    /// The policy engine could not evaluate the request: 400.
    Invalid(String),
    /// The policy engine failed or could not be reached: 502.
    Unavailable(String),
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Denied(reason) => ApiError::forbidden(reason),
            Refusal::Invalid(reason) => ApiError::bad_request(reason),
            Refusal::Unavailable(reason) => ApiError::bad_gateway(reason),
        }
    }
}

/// Asks the policy engine whether `subject` may do `action` (on `resource`, with `input`).
pub(crate) async fn authorize(
    state: &AppState,
    subject: &str,
    action: &str,
    resource: Option<&str>,
    input: &str,
) -> Result<(), Refusal> {
    let question = json!({
        "subject": subject,
        "action": action,
        "resource": resource,
        "input": input,
    });
    let policy = &state.peers.policy_engine;
    match post_json::<_, Value>(&state.client, policy, "/v1/evaluate", &question).await {
        Ok(Reply::Ok(_)) => Ok(()),
        Ok(Reply::Refused {
            status: StatusCode::FORBIDDEN,
            error,
        }) => Err(Refusal::Denied(error)),
        Ok(Reply::Refused {
            status: StatusCode::BAD_REQUEST,
            error,
        }) => Err(Refusal::Invalid(error)),
        Ok(Reply::Refused { status, error }) => Err(Refusal::Unavailable(format!(
            "policy-engine answered {status}: {error}"
        ))),
        Err(err) => Err(Refusal::Unavailable(err.to_string())),
    }
}

/// A peer's refusal as the gateway's answer: its 400s and 404s pass through (they are about the
/// caller's request), anything else is the gateway's 502.
fn passthrough(peer: &str, status: StatusCode, error: String) -> ApiError {
    if status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND {
        ApiError::new(status, error)
    } else {
        ApiError::bad_gateway(format!("{peer} answered {status}: {error}"))
    }
}

#[derive(Deserialize)]
struct NewWorkflow {
    goal: String,
    /// The SLM model for the tasks; the SLM service's default when absent.
    #[serde(default)]
    model: Option<String>,
}

/// `POST /v1/workflows`: policy check of the goal, then the orchestrator runs the workflow
/// (synchronously) and the finished workflow is answered with 201, completed or failed.
async fn create_workflow(
    State(state): State<AppState>,
    user: User,
    JsonBody(request): JsonBody<NewWorkflow>,
) -> Result<Response, ApiError> {
    if request.goal.trim().is_empty() {
        return Err(ApiError::bad_request("goal must not be empty"));
    }
    authorize(
        &state,
        &user.subject,
        "workflow.create",
        None,
        &request.goal,
    )
    .await?;
    let body = json!({ "goal": request.goal, "subject": user.subject, "model": request.model });
    let orchestrator = &state.peers.orchestrator;
    match post_json::<_, Value>(&state.client, orchestrator, "/v1/workflows", &body).await? {
        Reply::Ok(workflow) => {
            let location = format!("/v1/workflows/{}", workflow["id"].as_str().unwrap_or(""));
            Ok((
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(workflow),
            )
                .into_response())
        }
        Reply::Refused { status, error } => Err(passthrough("orchestrator", status, error)),
    }
}

/// `GET /v1/workflows/{id}`: the caller's own workflows only.
async fn get_workflow(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !valid {
        return Err(ApiError::bad_request("invalid workflow id"));
    }
    let orchestrator = &state.peers.orchestrator;
    let path = format!("/v1/workflows/{id}");
    match get_json::<Value>(&state.client, orchestrator, &path).await? {
        Reply::Ok(workflow) if workflow["subject"] == user.subject.as_str() => Ok(Json(workflow)),
        Reply::Ok(_) => Err(ApiError::not_found("no such workflow")),
        Reply::Refused { status, error } => Err(passthrough("orchestrator", status, error)),
    }
}

#[derive(Deserialize, Serialize)]
struct GenerateRequest {
    prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(default)]
    stream: bool,
}

/// `POST /v1/generate`: policy check of the prompt, then slm-service; a streamed answer
/// (`"stream": true`, server-sent events) is relayed as it arrives.
async fn generate(
    State(state): State<AppState>,
    user: User,
    JsonBody(request): JsonBody<GenerateRequest>,
) -> Result<Response, ApiError> {
    if request.prompt.trim().is_empty() {
        return Err(ApiError::bad_request("prompt must not be empty"));
    }
    authorize(&state, &user.subject, "generate", None, &request.prompt).await?;
    let slm = &state.peers.slm_service;
    // The gateway's own view: time to the first token frame leaving for its client, relayed.
    let input_tokens = request.prompt.split_whitespace().count() as u64;
    let genai = state
        .genai
        .start("text_completion", SLM_MODEL, input_tokens);
    if !request.stream {
        return match post_json::<_, Value>(&state.client, slm, "/v1/generate", &request).await {
            Ok(Reply::Ok(generated)) => {
                let response = Json(generated).into_response();
                Ok(response.map(|body| Body::new(genai.wrap(body))))
            }
            Ok(Reply::Refused { status, error }) => {
                genai.fail("upstream_error");
                Err(passthrough("slm-service", status, error))
            }
            Err(err) => {
                genai.fail("upstream_error");
                Err(err.into())
            }
        };
    }
    let Ok(upstream) = state
        .client
        .post(slm.url("/v1/generate"))
        .json(&request)
        .send()
        .await
    else {
        genai.fail("upstream_error");
        return Err(ApiError::bad_gateway(
            "slm-service is unavailable: request failed",
        ));
    };
    let status = upstream.status();
    if !status.is_success() {
        genai.fail("upstream_error");
        let body: Value = upstream.json().await.unwrap_or_default();
        let error = body["error"].as_str().unwrap_or("no details").to_owned();
        return Err(passthrough("slm-service", status, error));
    }
    let content_type = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(header::HeaderValue::from_static("text/event-stream"));
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::new(genai.wrap(Body::from_stream(upstream.bytes_stream()))),
    )
        .into_response())
}
