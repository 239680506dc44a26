//! Routes: `POST /v1/evaluate`: 200 when allowed, 403 when denied (with the rule and reason),
//! 400 for a request that cannot be evaluated.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use opentelemetry::metrics::{Counter, Histogram};
use opentelemetry::KeyValue;
use serde_json::json;
use soma_example_support::{health_routes, ApiError, JsonBody};

use crate::rules::{evaluate, PolicyRequest};

/// Rule evaluation takes microseconds.
const EVALUATION_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.1,
];

/// The service's business metrics (see docs/metrics-catalog.md).
#[derive(Clone, Debug)]
struct Metrics {
    decisions: Counter<u64>,
    evaluation_duration: Histogram<f64>,
}

/// What every request shares.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    metrics: Metrics,
}

impl AppState {
    /// The state with its instruments, made before setup as a team's state is: they bind to
    /// what setup installs (or to a test's `TestTelemetry`).
    pub(crate) fn new() -> Self {
        let meter = soma_observability::get_meter("policy-engine");
        Self {
            metrics: Metrics {
                decisions: meter
                    .u64_counter("policy.decisions")
                    .with_unit("{decision}")
                    .with_description(
                        "Policy decisions, by outcome (allow, deny) and deciding rule.",
                    )
                    .build(),
                evaluation_duration: meter
                    .f64_histogram("policy.evaluation.duration")
                    .with_unit("s")
                    .with_boundaries(EVALUATION_BUCKETS.to_vec())
                    .with_description("Time taken to evaluate one request against the rule set.")
                    .build(),
            },
        }
    }
}

pub(crate) fn app() -> Router<AppState> {
    Router::new()
        .route("/v1/evaluate", post(evaluate_request))
        .merge(health_routes())
}

async fn evaluate_request(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<PolicyRequest>,
) -> Result<Response, ApiError> {
    if request.subject.trim().is_empty() {
        return Err(ApiError::bad_request("subject is required"));
    }
    let start = Instant::now();
    let decision = evaluate(&request);
    state
        .metrics
        .evaluation_duration
        .record(start.elapsed().as_secs_f64(), &[]);
    let outcome = if decision.allowed { "allow" } else { "deny" };
    state.metrics.decisions.add(
        1,
        &[
            KeyValue::new("outcome", outcome),
            KeyValue::new("rule", decision.rule),
        ],
    );
    tracing::debug!(outcome, rule = decision.rule, action = ?request.action, "evaluated");
    let body = json!({ "decision": outcome, "rule": decision.rule, "reason": decision.reason });
    Ok(if decision.allowed {
        Json(body).into_response()
    } else {
        let mut body = body;
        body["error"] = json!(format!(
            "denied by rule {}: {}",
            decision.rule, decision.reason
        ));
        (StatusCode::FORBIDDEN, Json(body)).into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use soma_example_support::testing::{post_json, test_telemetry};

    async fn evaluate(app: &Router, body: Value) -> (StatusCode, Value) {
        let (status, bytes) = post_json(app, "/v1/evaluate", &body).await;
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn allows_and_denies_with_the_deciding_rule() {
        let telemetry = test_telemetry("policy-engine");
        let app = app().with_state(AppState::new());

        let (status, body) = evaluate(
            &app,
            json!({"subject": "demo", "action": "generate", "input": "a poem about tea"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["decision"], "allow");

        let (status, body) = evaluate(
            &app,
            json!({"subject": "demo", "action": "capsule.execute", "resource": "crypto-miner", "input": "go"}),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["rule"], "capsule_denylist");
        assert!(body["error"].as_str().unwrap().contains("denylist"));

        let allowed = [
            KeyValue::new("outcome", "allow"),
            KeyValue::new("rule", "default"),
        ];
        let denied = [
            KeyValue::new("outcome", "deny"),
            KeyValue::new("rule", "capsule_denylist"),
        ];
        assert_eq!(telemetry.sum("policy.decisions", &allowed), Some(1.0));
        assert_eq!(telemetry.sum("policy.decisions", &denied), Some(1.0));
        assert_eq!(
            telemetry
                .histogram("policy.evaluation.duration", &[])
                .map(|h| h.count),
            Some(2)
        );
    }

    #[tokio::test]
    async fn requests_that_cannot_be_evaluated_are_400s() {
        let telemetry = test_telemetry("policy-engine");
        let app = app().with_state(AppState::new());
        for body in [
            json!({"subject": "demo", "action": "launch.rocket", "input": "x"}),
            json!({"subject": "", "action": "generate", "input": "x"}),
            json!({"action": "generate"}),
        ] {
            let (status, response) = evaluate(&app, body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(response["error"].is_string(), "{response}");
        }
        assert_eq!(telemetry.sum("policy.decisions", &[]), None);
    }
}
