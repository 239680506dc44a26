//! Routes: `POST /v1/generate` (JSON, or server-sent events with `"stream": true`) and
//! `GET /v1/models`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use opentelemetry::metrics::{Counter, Histogram, Meter};
use serde::Deserialize;
use serde_json::{json, Value};
use soma_example_support::{health_routes, ApiError, JsonBody};
use soma_observability::genai::{GenAiMetrics, TokenCounter};

use crate::markov::Markov;

/// The model this instance serves.
const MODEL: &str = "soma-markov-1";
/// A model the service knows but has not loaded: requests for it fail with 503. The gateway's
/// `deep-research` capsule uses it, which gives the demo a deterministic upstream failure.
const UNLOADED_MODEL: &str = "soma-xl";
const DEFAULT_MAX_TOKENS: u32 = 32;
const MAX_TOKENS_LIMIT: u32 = 256;
const MAX_PROMPT_CHARS: usize = 8_000;
/// Pacing, so latency panels have a shape: reading the prompt takes a fixed 3 ms plus 10 µs per
/// character (at most 50 ms), and each generated word 2 ms.
const PREFILL_BASE: Duration = Duration::from_millis(3);
const PREFILL_PER_CHAR: Duration = Duration::from_micros(10);
const PREFILL_MAX: Duration = Duration::from_millis(50);
const DECODE_PER_TOKEN: Duration = Duration::from_millis(2);

/// The service's business metrics (see docs/metrics-catalog.md).
#[derive(Clone, Debug)]
struct Metrics {
    tokens: Counter<u64>,
    time_to_first_token: Histogram<f64>,
    generation_duration: Histogram<f64>,
}

/// What every request shares.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    markov: Arc<Markov>,
    metrics: Metrics,
    /// The `genai` semantic-convention metrics (`gen_ai_server_*`, `gen_ai_client_token_usage`).
    genai: GenAiMetrics,
}

impl AppState {
    pub(crate) fn new(meter: &Meter) -> Self {
        Self {
            markov: Arc::new(Markov::builtin()),
            genai: GenAiMetrics::new(meter, "soma", &[MODEL, UNLOADED_MODEL]),
            metrics: Metrics {
                tokens: meter
                    .u64_counter("slm.tokens.generated")
                    .with_unit("{token}")
                    .with_description("Tokens (words) generated, streamed or not.")
                    .build(),
                time_to_first_token: meter
                    .f64_histogram("slm.time_to_first_token")
                    .with_unit("s")
                    .with_description("Time from the request to the first generated token.")
                    .build(),
                generation_duration: meter
                    .f64_histogram("slm.generation.duration")
                    .with_unit("s")
                    .with_description("Time from the request to the last generated token.")
                    .build(),
            },
        }
    }
}

pub(crate) fn app() -> Router<AppState> {
    Router::new()
        .route("/v1/generate", post(generate))
        .route("/v1/models", get(models))
        .merge(health_routes())
}

async fn models() -> Json<Value> {
    Json(json!({ "models": [
        { "id": MODEL, "status": "loaded" },
        { "id": UNLOADED_MODEL, "status": "not_loaded" },
    ]}))
}

#[derive(Deserialize)]
struct GenerateRequest {
    prompt: String,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: bool,
}

/// A validated request.
struct Job {
    prompt: String,
    max_tokens: usize,
}

fn validate(request: GenerateRequest) -> Result<Job, ApiError> {
    if request.prompt.trim().is_empty() {
        return Err(ApiError::bad_request("prompt must not be empty"));
    }
    if request.prompt.chars().count() > MAX_PROMPT_CHARS {
        return Err(ApiError::bad_request(format!(
            "prompt is longer than {MAX_PROMPT_CHARS} characters"
        )));
    }
    let max_tokens = request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if !(1..=MAX_TOKENS_LIMIT).contains(&max_tokens) {
        return Err(ApiError::bad_request(format!(
            "max_tokens must be between 1 and {MAX_TOKENS_LIMIT}"
        )));
    }
    match request.model.as_deref() {
        None | Some(MODEL) => {}
        Some(UNLOADED_MODEL) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("model {UNLOADED_MODEL} is not loaded on this instance"),
            ))
        }
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "unknown model; this instance serves {MODEL}"
            )))
        }
    }
    Ok(Job {
        prompt: request.prompt,
        max_tokens: max_tokens as usize,
    })
}

fn prefill_time(prompt: &str) -> Duration {
    let chars = u32::try_from(prompt.chars().count()).unwrap_or(u32::MAX);
    (PREFILL_BASE + PREFILL_PER_CHAR.saturating_mul(chars)).min(PREFILL_MAX)
}

async fn generate(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<GenerateRequest>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let stream = request.stream;
    let job = validate(request)?;
    let input_tokens = job.prompt.split_whitespace().count() as u64;
    // Measured on the response body: time to first token is the first token frame leaving.
    let genai = state.genai.start("text_completion", MODEL, input_tokens);
    let tokens = genai.token_counter();
    tokio::time::sleep(prefill_time(&job.prompt)).await;
    if stream {
        let response = Sse::new(event_stream(state, &job, start, tokens)).into_response();
        return Ok(response.map(|body| Body::new(genai.wrap(body))));
    }
    let genai_tokens = tokens;
    let mut text = String::new();
    let mut tokens = 0_u64;
    for word in state.markov.generate(&job.prompt, job.max_tokens) {
        tokio::time::sleep(DECODE_PER_TOKEN).await;
        if tokens == 0 {
            let ttft = start.elapsed().as_secs_f64();
            state.metrics.time_to_first_token.record(ttft, &[]);
        }
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(word);
        tokens += 1;
    }
    state.metrics.tokens.add(tokens, &[]);
    genai_tokens.add(tokens);
    let duration = start.elapsed().as_secs_f64();
    state.metrics.generation_duration.record(duration, &[]);
    let response = Json(json!({
        "model": MODEL,
        "text": text,
        "tokens": tokens,
        "finish_reason": "length",
    }))
    .into_response();
    Ok(response.map(|body| Body::new(genai.wrap(body))))
}

/// One `data: {"token": ...}` event per word, then `event: done` with the count.
fn event_stream(
    state: AppState,
    job: &Job,
    start: Instant,
    genai_tokens: TokenCounter,
) -> impl Stream<Item = Result<Event, Infallible>> {
    // The words are computed up front (microseconds); their pacing is what streams.
    let words: Vec<&'static str> = state.markov.generate(&job.prompt, job.max_tokens).collect();
    let steps = words.into_iter().map(Some).chain([None]);
    stream::unfold((state, steps, 0_u64), move |(state, mut steps, emitted)| {
        let genai_tokens = genai_tokens.clone();
        async move {
            let event = if let Some(word) = steps.next()? {
                tokio::time::sleep(DECODE_PER_TOKEN).await;
                if emitted == 0 {
                    let ttft = start.elapsed().as_secs_f64();
                    state.metrics.time_to_first_token.record(ttft, &[]);
                }
                state.metrics.tokens.add(1, &[]);
                genai_tokens.add(1);
                Event::default().data(json!({ "token": word }).to_string())
            } else {
                let duration = start.elapsed().as_secs_f64();
                state.metrics.generation_duration.record(duration, &[]);
                Event::default()
                    .event("done")
                    .data(json!({ "model": MODEL, "tokens": emitted }).to_string())
            };
            Some((Ok(event), (state, steps, emitted + 1)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::metrics::MeterProvider as _;
    use soma_example_support::testing::{metric_value, post_json, test_telemetry};

    async fn generate(app: &Router, body: Value) -> (StatusCode, String) {
        let (status, bytes) = post_json(app, "/v1/generate", &body).await;
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn generates_deterministic_text_and_counts_tokens() {
        let parts = test_telemetry("slm-service");
        let app = app().with_state(AppState::new(&parts.meter_provider().meter("slm-service")));
        let request = json!({"prompt": "Plan the release", "max_tokens": 8});
        let (status, first) = generate(&app, request.clone()).await;
        assert_eq!(status, StatusCode::OK, "{first}");
        let (_, second) = generate(&app, request).await;
        assert_eq!(first, second);
        let body: Value = serde_json::from_str(&first).unwrap();
        assert_eq!(body["tokens"], 8);
        assert_eq!(body["text"].as_str().unwrap().split(' ').count(), 8);

        let metrics = parts.render_metrics().unwrap();
        assert_eq!(
            metric_value(&metrics, "slm_tokens_generated_total", &[]),
            Some(16.0)
        );
        for histogram in [
            "slm_time_to_first_token_seconds_count",
            "slm_generation_duration_seconds_count",
        ] {
            assert_eq!(
                metric_value(&metrics, histogram, &[]),
                Some(2.0),
                "{histogram}"
            );
        }
    }

    #[tokio::test]
    async fn streams_one_event_per_token_then_done() {
        let parts = test_telemetry("slm-service");
        let app = app().with_state(AppState::new(&parts.meter_provider().meter("slm-service")));
        let (status, body) = generate(
            &app,
            json!({"prompt": "Search the marketplace", "max_tokens": 5, "stream": true}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.matches("data: {\"token\"").count(), 5, "{body}");
        assert!(body.contains("event: done"), "{body}");
        let metrics = parts.render_metrics().unwrap();
        assert_eq!(
            metric_value(&metrics, "slm_tokens_generated_total", &[]),
            Some(5.0)
        );
        // The GenAI conventions' view of the same stream.
        let model = ("gen_ai_request_model", "soma-markov-1");
        for (name, expected) in [
            ("gen_ai_server_time_to_first_token_seconds_count", 1.0),
            ("gen_ai_server_request_duration_seconds_count", 1.0),
            ("gen_ai_server_time_per_output_token_seconds_count", 1.0),
        ] {
            assert_eq!(
                metric_value(&metrics, name, &[model]),
                Some(expected),
                "{name}"
            );
        }
        let output = [model, ("gen_ai_token_type", "output")];
        assert_eq!(
            metric_value(&metrics, "gen_ai_client_token_usage_sum", &output),
            Some(5.0)
        );
        let input = [model, ("gen_ai_token_type", "input")];
        assert_eq!(
            metric_value(&metrics, "gen_ai_client_token_usage_sum", &input),
            Some(3.0)
        );
    }

    #[tokio::test]
    async fn invalid_requests_are_400s_and_the_unloaded_model_is_a_503() {
        let parts = test_telemetry("slm-service");
        let app = app().with_state(AppState::new(&parts.meter_provider().meter("slm-service")));
        for (request, expected) in [
            (json!({"prompt": "  "}), StatusCode::BAD_REQUEST),
            (
                json!({"prompt": "hi", "max_tokens": 0}),
                StatusCode::BAD_REQUEST,
            ),
            (
                json!({"prompt": "hi", "max_tokens": 257}),
                StatusCode::BAD_REQUEST,
            ),
            (
                json!({"prompt": "hi", "model": "gpt-9"}),
                StatusCode::BAD_REQUEST,
            ),
            (
                json!({"prompt": "hi", "model": "soma-xl"}),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        ] {
            let (status, body) = generate(&app, request.clone()).await;
            assert_eq!(status, expected, "{request}");
            let body: Value = serde_json::from_str(&body).unwrap();
            assert!(body["error"].is_string(), "{body}");
        }
        let metrics = parts.render_metrics().unwrap();
        assert_eq!(
            metric_value(&metrics, "slm_tokens_generated_total", &[]),
            None
        );
    }
}
