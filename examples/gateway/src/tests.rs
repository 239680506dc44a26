//! The gateway's routes against stand-in peers on 127.0.0.1.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry::metrics::MeterProvider as _;
use serde_json::{json, Value};
use soma_example_support::testing::{metric_value, test_telemetry};
use soma_example_support::{
    http_client, spawn_local, ServiceConfig, IDENTITY_SERVICE_URL, ORCHESTRATOR_URL,
    POLICY_ENGINE_URL, SLM_SERVICE_URL,
};
use soma_observability::ObservabilityParts;
use tower::ServiceExt;

use crate::app::{app, AppState};
use crate::marketplace::search_catalog;

/// Stand-ins with the real services' contracts: identity accepts demo/demo-password and the
/// token "good"; policy denies the crypto-miner capsule; the SLM fails for soma-xl.
async fn gateway(parts: &ObservabilityParts) -> Router {
    let identity = Router::new()
        .route(
            "/v1/tokens",
            post(|Json(q): Json<Value>| async move {
                if q["password"] == "demo-password" {
                    let token = json!({"token": "good", "token_type": "Bearer", "expires_in": 900});
                    (StatusCode::CREATED, Json(token))
                } else {
                    let error = json!({"error": "invalid user or password"});
                    (StatusCode::UNAUTHORIZED, Json(error))
                }
            }),
        )
        .route(
            "/v1/tokens/verify",
            post(|Json(q): Json<Value>| async move {
                if q["token"] == "good" {
                    (StatusCode::OK, Json(json!({"sub": "demo", "exp": 1})))
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        Json(json!({"error": "invalid token"})),
                    )
                }
            }),
        );
    let policy = Router::new().route(
        "/v1/evaluate",
        post(|Json(q): Json<Value>| async move {
            if q["resource"] == "crypto-miner" {
                let error = json!({"error": "denied by rule capsule_denylist"});
                (StatusCode::FORBIDDEN, Json(error))
            } else {
                (StatusCode::OK, Json(json!({"decision": "allow"})))
            }
        }),
    );
    let slm = soma_example_support::testing::stand_in_slm("a b c");
    let orchestrator = Router::new()
        .route(
            "/v1/workflows",
            post(|Json(q): Json<Value>| async move {
                let workflow =
                    json!({"id": "wf-1", "subject": q["subject"], "status": "completed"});
                (StatusCode::CREATED, Json(workflow))
            }),
        )
        .route(
            "/v1/workflows/{id}",
            get(|| async { Json(json!({"id": "wf-1", "subject": "someone-else"})) }),
        );
    let identity = spawn_local(identity).await.unwrap();
    let policy = spawn_local(policy).await.unwrap();
    let slm = spawn_local(slm).await.unwrap();
    let orchestrator = spawn_local(orchestrator).await.unwrap();
    let peers = ServiceConfig::from_lookup("gateway", 8080, |var| match var {
        IDENTITY_SERVICE_URL => Some(identity.clone()),
        POLICY_ENGINE_URL => Some(policy.clone()),
        SLM_SERVICE_URL => Some(slm.clone()),
        ORCHESTRATOR_URL => Some(orchestrator.clone()),
        _ => None,
    })
    .unwrap()
    .peers;
    let meter = parts.meter_provider().meter("gateway");
    app().with_state(AppState::new(&meter, http_client().unwrap(), peers))
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if !token.is_empty() {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    };
    let response = app.clone().oneshot(request.unwrap()).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn tokens_are_issued_and_required() {
    let parts = test_telemetry("gateway");
    let app = gateway(&parts).await;
    let credentials = json!({"user": "demo", "password": "demo-password"});
    let (status, body) = call(&app, "POST", "/v1/auth/token", "", Some(credentials)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token"], "good");

    let wrong = json!({"user": "demo", "password": "nope"});
    let (status, _) = call(&app, "POST", "/v1/auth/token", "", Some(wrong)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    for token in ["", "forged"] {
        let (status, body) = call(&app, "GET", "/v1/marketplace/capsules?q=x", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert!(body["error"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn search_finds_capsules_and_is_timed() {
    let parts = test_telemetry("gateway");
    let app = gateway(&parts).await;
    let (status, body) = call(
        &app,
        "GET",
        "/v1/marketplace/capsules?q=summary",
        "good",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<&str> = body["capsules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["summarize-text", "meeting-notes"]);
    assert!(body["capsules"][0].get("prompt").is_none());

    let (_, all) = call(&app, "GET", "/v1/marketplace/capsules", "good", None).await;
    assert_eq!(all["count"], 10);

    let metrics = parts.render_metrics().unwrap();
    let searches = metric_value(&metrics, "marketplace_search_duration_seconds_count", &[]);
    assert_eq!(searches, Some(2.0));
}

#[tokio::test]
async fn executions_record_outcomes_revenue_and_failure_reasons() {
    let parts = test_telemetry("gateway");
    let app = gateway(&parts).await;
    let input = Some(json!({"input": "A long text about rivers."}));
    let uri = |id: &str| format!("/v1/marketplace/capsules/{id}/executions");

    let (status, body) = call(&app, "POST", &uri("summarize-text"), "good", input.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], "a b c");
    let (status, _) = call(&app, "POST", &uri("crypto-miner"), "good", input.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = call(&app, "POST", &uri("deep-research"), "good", input.clone()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        body["error"].as_str().unwrap().contains("soma-xl"),
        "{body}"
    );
    let (status, _) = call(
        &app,
        "POST",
        &uri("summarize-text"),
        "good",
        Some(json!({"input": " "})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(
        &app,
        "POST",
        &uri("summarize-text"),
        "good",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(&app, "POST", &uri("no-such-capsule"), "good", input).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let metrics = parts.render_metrics().unwrap();
    let value = |name, labels: &[(&str, &str)]| metric_value(&metrics, name, labels);
    let executions = "marketplace_capsule_executions_total";
    let failures = "marketplace_capsule_execution_failures_total";
    assert_eq!(value(executions, &[("outcome", "success")]), Some(1.0));
    assert_eq!(value(executions, &[("outcome", "failure")]), Some(4.0));
    assert_eq!(
        value(
            failures,
            &[("reason", "denied"), ("capsule_id", "crypto-miner")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            failures,
            &[
                ("reason", "upstream_error"),
                ("capsule_id", "deep-research")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(value(failures, &[("reason", "invalid_input")]), Some(2.0));
    assert_eq!(
        value(
            "marketplace_revenue_usd_total",
            &[("capsule_id", "summarize-text")]
        ),
        Some(0.02)
    );
    assert!(!metrics.contains("no-such-capsule"));
}

#[tokio::test]
async fn workflows_go_to_the_orchestrator_as_the_caller() {
    let parts = test_telemetry("gateway");
    let app = gateway(&parts).await;
    let goal = Some(json!({"goal": "Write the notes, then review them"}));
    let (status, body) = call(&app, "POST", "/v1/workflows", "good", goal).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["subject"], "demo");
    let (status, _) = call(
        &app,
        "POST",
        "/v1/workflows",
        "good",
        Some(json!({"goal": ""})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The stand-in's workflow belongs to someone else: not visible to demo.
    let (status, _) = call(&app, "GET", "/v1/workflows/wf-1", "good", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&app, "GET", "/v1/workflows/..%2Fadmin", "good", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[test]
fn search_ranks_names_above_tags_above_descriptions() {
    let ids: Vec<&str> = search_catalog("release notes")
        .iter()
        .map(|(c, _)| c.id)
        .collect();
    assert_eq!(ids[0], "release-notes");
    assert!(search_catalog("zzz").is_empty());
}
