//! The capsule marketplace: a built-in catalog, search, and paid executions.
//!
//! Executing a capsule asks the policy engine (`capsule.execute`), then has slm-service run the
//! capsule's prompt on the caller's input. Two capsules fail on purpose, so error panels always
//! have data: `crypto-miner` is on the policy engine's denylist (403), and `deep-research` needs
//! the `soma-xl` model, which slm-service does not load (its 503 becomes the gateway's 502).

use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::KeyValue;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use soma_example_support::{post_json, ApiError, JsonBody, Reply};

use crate::app::{authorize, AppState, Refusal};
use crate::auth::User;

/// Search is in-memory here (tens of microseconds); the alert threshold is 1 s.
const SEARCH_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A capsule: a priced prompt with a purpose.
#[derive(Debug, Serialize)]
pub(crate) struct Capsule {
    pub(crate) id: &'static str,
    name: &'static str,
    description: &'static str,
    tags: &'static [&'static str],
    price_usd: f64,
    #[serde(skip)]
    model: Option<&'static str>,
    #[serde(skip)]
    prompt: &'static str,
    #[serde(skip)]
    max_tokens: u32,
}

/// The longest capsule input accepted, in characters.
const MAX_INPUT_CHARS: usize = 2_000;
/// The longest search query accepted, in characters.
const MAX_QUERY_CHARS: usize = 200;

const fn capsule(
    id: &'static str,
    name: &'static str,
    description: &'static str,
    tags: &'static [&'static str],
    price_usd: f64,
    prompt: &'static str,
) -> Capsule {
    Capsule {
        id,
        name,
        description,
        tags,
        price_usd,
        model: None,
        prompt,
        max_tokens: 48,
    }
}

/// The catalog. Capsule ids are the only values of the `capsule_id` label.
pub(crate) const CATALOG: &[Capsule] = &[
    capsule(
        "summarize-text",
        "Text Summarizer",
        "Condenses a long text into a short summary.",
        &["summary", "text", "writing"],
        0.02,
        "Summarize the following text: {input}",
    ),
    capsule(
        "translate-es",
        "Spanish Translator",
        "Drafts a Spanish translation of an English text.",
        &["translation", "spanish", "language"],
        0.03,
        "Translate into Spanish: {input}",
    ),
    capsule(
        "code-review",
        "Code Reviewer",
        "Reviews a code snippet and lists its risky parts.",
        &["code", "review", "quality"],
        0.10,
        "Review this code and list the risks: {input}",
    ),
    capsule(
        "sql-helper",
        "SQL Helper",
        "Turns a question about your data into a SQL query.",
        &["sql", "data", "query"],
        0.05,
        "Write a SQL query that answers: {input}",
    ),
    capsule(
        "email-drafter",
        "Email Drafter",
        "Writes a polite email from a few bullet points.",
        &["email", "writing", "communication"],
        0.01,
        "Write a polite email from these points: {input}",
    ),
    capsule(
        "sentiment-analyzer",
        "Sentiment Analyzer",
        "Tells whether customer feedback is positive, negative or mixed.",
        &["sentiment", "feedback", "analysis"],
        0.01,
        "Classify the sentiment of this feedback: {input}",
    ),
    capsule(
        "meeting-notes",
        "Meeting Notes",
        "Turns a meeting transcript into notes and action items.",
        &["meetings", "notes", "summary"],
        0.04,
        "Write notes and action items for this meeting: {input}",
    ),
    capsule(
        "release-notes",
        "Release Notes Writer",
        "Writes release notes from a list of changes.",
        &["release", "changelog", "writing"],
        0.05,
        "Write release notes for these changes: {input}",
    ),
    Capsule {
        model: Some("soma-xl"),
        max_tokens: 128,
        ..capsule(
            "deep-research",
            "Deep Research",
            "A long research report written by the large soma-xl model.",
            &["research", "report", "analysis"],
            0.25,
            "Write a research report about: {input}",
        )
    },
    capsule(
        "crypto-miner",
        "Crypto Miner",
        "Mines cryptocurrency with spare agent capacity.",
        &["crypto", "mining"],
        0.50,
        "Mine with: {input}",
    ),
];

/// The gateway's business metrics (see docs/metrics-catalog.md).
#[derive(Clone, Debug)]
pub(crate) struct MarketplaceMetrics {
    executions: Counter<u64>,
    failures: Counter<u64>,
    revenue: Counter<f64>,
    search_duration: Histogram<f64>,
}

impl MarketplaceMetrics {
    pub(crate) fn new(meter: &Meter) -> Self {
        Self {
            executions: meter
                .u64_counter("marketplace.capsule.executions")
                .with_unit("{execution}")
                .with_description("Capsule executions, by capsule and outcome (success, failure).")
                .build(),
            failures: meter
                .u64_counter("marketplace.capsule.execution.failures")
                .with_unit("{execution}")
                .with_description(
                    "Failed capsule executions, by capsule and reason (denied, invalid_input, \
                     upstream_error).",
                )
                .build(),
            revenue: meter
                .f64_counter("marketplace.revenue.usd")
                .with_unit("{USD}")
                .with_description("Revenue from successful capsule executions, in US dollars.")
                .build(),
            search_duration: meter
                .f64_histogram("marketplace.search.duration")
                .with_unit("s")
                .with_boundaries(SEARCH_BUCKETS.to_vec())
                .with_description("Time taken to search the capsule catalog.")
                .build(),
        }
    }
}

fn normalize(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Capsules matching `query`, best first: a query word scores 3 in the name or id, 2 in a tag
/// and 1 in the description (prefixes count). An empty query lists the whole catalog.
pub(crate) fn search_catalog(query: &str) -> Vec<(&'static Capsule, u32)> {
    let terms: Vec<String> = query
        .split_whitespace()
        .map(normalize)
        .filter(|t| !t.is_empty())
        .collect();
    let words = |text: &str| -> Vec<String> { text.split([' ', '-']).map(normalize).collect() };
    let mut results: Vec<(&'static Capsule, u32)> = CATALOG
        .iter()
        .filter_map(|capsule| {
            if terms.is_empty() {
                return Some((capsule, 0));
            }
            let name = words(&format!("{} {}", capsule.name, capsule.id));
            let description = words(capsule.description);
            let hit = |words: &[String], term: &str| words.iter().any(|w| w.starts_with(term));
            let score: u32 = terms
                .iter()
                .map(|term| {
                    let mut score = 0;
                    if hit(&name, term) {
                        score += 3;
                    }
                    if capsule
                        .tags
                        .iter()
                        .any(|tag| tag.starts_with(term.as_str()))
                    {
                        score += 2;
                    }
                    if hit(&description, term) {
                        score += 1;
                    }
                    score
                })
                .sum();
            (score > 0).then_some((capsule, score))
        })
        .collect();
    results.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.id.cmp(b.0.id)));
    results
}

#[derive(Deserialize)]
pub(crate) struct SearchParams {
    #[serde(default)]
    q: String,
}

/// `GET /v1/marketplace/capsules?q=...`.
pub(crate) async fn search(
    State(state): State<AppState>,
    _user: User,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    if params.q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::bad_request(format!(
            "q is longer than {MAX_QUERY_CHARS} characters"
        )));
    }
    let start = Instant::now();
    let results = search_catalog(&params.q);
    state
        .marketplace
        .search_duration
        .record(start.elapsed().as_secs_f64(), &[]);
    let capsules: Vec<Value> = results
        .iter()
        .map(|(capsule, score)| {
            let mut value = json!(capsule);
            value["score"] = json!(score);
            value
        })
        .collect();
    Ok(Json(
        json!({ "count": capsules.len(), "capsules": capsules }),
    ))
}

#[derive(Deserialize)]
pub(crate) struct ExecuteRequest {
    input: String,
}

/// Why an execution failed: the `reason` label.
#[derive(Clone, Copy, Debug)]
enum Failure {
    Denied,
    InvalidInput,
    UpstreamError,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Self::Denied => "denied",
            Self::InvalidInput => "invalid_input",
            Self::UpstreamError => "upstream_error",
        }
    }
}

/// `POST /v1/marketplace/capsules/{id}/executions` with `{"input": "..."}`.
pub(crate) async fn execute(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    body: Result<JsonBody<ExecuteRequest>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let capsule = CATALOG
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(|| ApiError::not_found("no such capsule"))?;
    let capsule_id = KeyValue::new("capsule.id", capsule.id);
    let metrics = &state.marketplace;
    match run(&state, &user, capsule, body).await {
        Ok(output) => {
            metrics.executions.add(
                1,
                &[capsule_id.clone(), KeyValue::new("outcome", "success")],
            );
            metrics.revenue.add(capsule.price_usd, &[capsule_id]);
            Ok(Json(output))
        }
        Err((failure, error)) => {
            metrics.executions.add(
                1,
                &[capsule_id.clone(), KeyValue::new("outcome", "failure")],
            );
            metrics
                .failures
                .add(1, &[capsule_id, KeyValue::new("reason", failure.as_str())]);
            tracing::info!(
                capsule = capsule.id,
                reason = failure.as_str(),
                "execution failed"
            );
            Err(error)
        }
    }
}

#[derive(Deserialize)]
struct Generated {
    text: String,
    tokens: u64,
}

async fn run(
    state: &AppState,
    user: &User,
    capsule: &Capsule,
    body: Result<JsonBody<ExecuteRequest>, ApiError>,
) -> Result<Value, (Failure, ApiError)> {
    let JsonBody(request) = body.map_err(|err| (Failure::InvalidInput, err))?;
    let input = request.input.trim();
    if input.is_empty() || input.chars().count() > MAX_INPUT_CHARS {
        let error = format!("input must have 1 to {MAX_INPUT_CHARS} characters");
        return Err((Failure::InvalidInput, ApiError::bad_request(error)));
    }
    let subject = &user.subject;
    authorize(state, subject, "capsule.execute", Some(capsule.id), input)
        .await
        .map_err(|refusal| {
            let failure = match refusal {
                Refusal::Denied(_) => Failure::Denied,
                Refusal::Invalid(_) => Failure::InvalidInput,
                Refusal::Unavailable(_) => Failure::UpstreamError,
            };
            (failure, ApiError::from(refusal))
        })?;
    let prompt = json!({
        "prompt": capsule.prompt.replace("{input}", input),
        "max_tokens": capsule.max_tokens,
        "model": capsule.model,
    });
    let slm = &state.peers.slm_service;
    let upstream_failed = |detail: String| {
        let error = ApiError::bad_gateway(format!("capsule execution failed upstream: {detail}"));
        (Failure::UpstreamError, error)
    };
    match post_json::<_, Generated>(&state.client, slm, "/v1/generate", &prompt).await {
        Ok(Reply::Ok(generated)) => Ok(json!({
            "capsule_id": capsule.id,
            "output": generated.text,
            "tokens": generated.tokens,
            "price_usd": capsule.price_usd,
        })),
        Ok(Reply::Refused { status, error }) => Err(upstream_failed(format!(
            "slm-service answered {status}: {error}"
        ))),
        Err(err) => Err(upstream_failed(err.to_string())),
    }
}
