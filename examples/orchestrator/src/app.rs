//! Routes: `POST /v1/workflows` (decompose the goal, run every task, answer 201 with the
//! finished workflow, completed or failed) and `GET /v1/workflows/{id}`.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry::metrics::{Counter, Histogram, Meter, UpDownCounter};
use opentelemetry::KeyValue;
use serde::Deserialize;
use serde_json::{json, Value};
use soma_example_support::{health_routes, post_json, ApiError, JsonBody, Peers, Reply};
use soma_observability::HttpClient;
use tracing::Instrument as _;

use crate::decompose::{decompose, MAX_TASKS};
use crate::workflow::{FailureReason, Store, TaskStatus, Workflow, WorkflowStatus};

/// Decomposition takes well under a millisecond here, but a planner backed by a model can take
/// minutes: fine buckets at the bottom, and room above the 30 s alert threshold.
const DECOMPOSITION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

/// The longest goal accepted, in characters.
const MAX_GOAL_CHARS: usize = 4_000;
/// How many words the SLM writes per task.
const TASK_MAX_TOKENS: u32 = 24;
/// Boundaries of `kamachiq.workflow.tasks` (see docs/metrics-catalog.md).
const TASK_COUNT_BUCKETS: [f64; 10] = [1., 2., 3., 4., 5., 6., 8., 10., 15., 20.];

/// The service's business metrics (see docs/metrics-catalog.md).
#[derive(Clone, Debug)]
struct Metrics {
    started: Counter<u64>,
    completed: Counter<u64>,
    failed: Counter<u64>,
    decomposition_duration: Histogram<f64>,
    tasks: Histogram<u64>,
    active: UpDownCounter<i64>,
}

impl Metrics {
    fn new(meter: &Meter) -> Self {
        Self {
            started: meter
                .u64_counter("kamachiq.workflows.started")
                .with_unit("{workflow}")
                .with_description("Workflows started (their goal decomposed into 1 to 20 tasks).")
                .build(),
            completed: meter
                .u64_counter("kamachiq.workflows.completed")
                .with_unit("{workflow}")
                .with_description("Workflows whose every task completed.")
                .build(),
            failed: meter
                .u64_counter("kamachiq.workflows.failed")
                .with_unit("{workflow}")
                .with_description(
                    "Workflows that stopped at a failed task, by reason (policy_denied, \
                     policy_error, slm_error).",
                )
                .build(),
            decomposition_duration: meter
                .f64_histogram("kamachiq.decomposition.duration")
                .with_unit("s")
                .with_boundaries(DECOMPOSITION_BUCKETS.to_vec())
                .with_description("Time taken to decompose a goal into tasks.")
                .build(),
            tasks: meter
                .u64_histogram("kamachiq.workflow.tasks")
                .with_unit("{task}")
                .with_boundaries(TASK_COUNT_BUCKETS.to_vec())
                .with_description("Number of tasks per started workflow.")
                .build(),
            active: meter
                .i64_up_down_counter("kamachiq.workflows.active")
                .with_unit("{workflow}")
                .with_description("Workflows running now.")
                .build(),
        }
    }
}

/// Counts a workflow as active until dropped, even if the request is abandoned.
struct Active(UpDownCounter<i64>);

impl Active {
    fn start(gauge: &UpDownCounter<i64>) -> Self {
        gauge.add(1, &[]);
        Self(gauge.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.add(-1, &[]);
    }
}

/// What every request shares.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    client: HttpClient,
    peers: Peers,
    store: Store,
    metrics: Metrics,
}

impl AppState {
    pub(crate) fn new(meter: &Meter, client: HttpClient, peers: Peers) -> Self {
        Self {
            client,
            peers,
            store: Store::default(),
            metrics: Metrics::new(meter),
        }
    }
}

pub(crate) fn app() -> Router<AppState> {
    Router::new()
        .route("/v1/workflows", post(create_workflow))
        .route("/v1/workflows/{id}", get(get_workflow))
        .merge(health_routes())
}

#[derive(Deserialize)]
struct NewWorkflow {
    goal: String,
    subject: String,
    /// The SLM model for every task (the SLM service's default when absent).
    #[serde(default)]
    model: Option<String>,
}

async fn create_workflow(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<NewWorkflow>,
) -> Result<impl IntoResponse, ApiError> {
    if request.subject.trim().is_empty() {
        return Err(ApiError::bad_request("subject is required"));
    }
    if request.goal.trim().is_empty() {
        return Err(ApiError::bad_request("goal must not be empty"));
    }
    if request.goal.chars().count() > MAX_GOAL_CHARS {
        return Err(ApiError::bad_request(format!(
            "goal is longer than {MAX_GOAL_CHARS} characters"
        )));
    }
    let start = Instant::now();
    let plan = tracing::info_span!("kamachiq.decompose").in_scope(|| decompose(&request.goal));
    let metrics = &state.metrics;
    metrics
        .decomposition_duration
        .record(start.elapsed().as_secs_f64(), &[]);
    if plan.is_empty() {
        return Err(ApiError::bad_request(
            "the goal has no actionable clause (e.g. \"Research X, then write Y\")",
        ));
    }
    if plan.len() > MAX_TASKS {
        return Err(ApiError::bad_request(format!(
            "the goal has {} tasks; at most {MAX_TASKS} are allowed",
            plan.len()
        )));
    }
    metrics.started.add(1, &[]);
    metrics.tasks.record(plan.len() as u64, &[]);
    let _active = Active::start(&metrics.active);

    let mut workflow = Workflow::new(state.store.next_id(), request.subject, request.goal, plan);
    state.store.put(&workflow);
    run(&state, &mut workflow, request.model.as_deref()).await;
    match workflow.failure_reason {
        None => metrics.completed.add(1, &[]),
        Some(reason) => metrics
            .failed
            .add(1, &[KeyValue::new("reason", reason.as_str())]),
    }
    tracing::info!(
        workflow = %workflow.id,
        status = ?workflow.status,
        tasks = workflow.tasks.len(),
        "workflow finished"
    );
    state.store.put(&workflow);
    let location = format!("/v1/workflows/{}", workflow.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(workflow),
    ))
}

async fn get_workflow(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Workflow>, ApiError> {
    state
        .store
        .get(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no such workflow"))
}

/// Runs the tasks in order (each depends at most on earlier ones), stopping at the first failure.
async fn run(state: &AppState, workflow: &mut Workflow, model: Option<&str>) {
    for index in 0..workflow.tasks.len() {
        let span = tracing::info_span!(
            "kamachiq.task",
            task.index = index,
            task.kind = ?workflow.tasks[index].kind,
        );
        let task = &workflow.tasks[index];
        let outcome = run_task(state, &workflow.subject, &task.description, model)
            .instrument(span)
            .await;
        match outcome {
            Ok(output) => {
                workflow.tasks[index].status = TaskStatus::Done;
                workflow.tasks[index].output = Some(output);
            }
            Err((status, reason, error)) => {
                workflow.fail(index, status, reason, error);
                return;
            }
        }
        state.store.put(workflow);
    }
    workflow.status = WorkflowStatus::Completed;
}

#[derive(Deserialize)]
struct Generated {
    text: String,
}

/// One task: ask the policy engine, then let the SLM write the task's output.
async fn run_task(
    state: &AppState,
    subject: &str,
    description: &str,
    model: Option<&str>,
) -> Result<String, (TaskStatus, FailureReason, String)> {
    let question = json!({ "subject": subject, "action": "task.run", "input": description });
    let policy = &state.peers.policy_engine;
    match post_json::<_, Value>(&state.client, policy, "/v1/evaluate", &question).await {
        Ok(Reply::Ok(_)) => {}
        Ok(Reply::Refused {
            status: StatusCode::FORBIDDEN,
            error,
        }) => return Err((TaskStatus::Denied, FailureReason::PolicyDenied, error)),
        Ok(Reply::Refused { status, error }) => {
            let error = format!("policy-engine answered {status}: {error}");
            return Err((TaskStatus::Failed, FailureReason::PolicyError, error));
        }
        Err(err) => {
            return Err((
                TaskStatus::Failed,
                FailureReason::PolicyError,
                err.to_string(),
            ));
        }
    }
    let prompt = json!({ "prompt": description, "max_tokens": TASK_MAX_TOKENS, "model": model });
    let slm = &state.peers.slm_service;
    match post_json::<_, Generated>(&state.client, slm, "/v1/generate", &prompt).await {
        Ok(Reply::Ok(generated)) => Ok(generated.text),
        Ok(Reply::Refused { status, error }) => Err((
            TaskStatus::Failed,
            FailureReason::SlmError,
            format!("slm-service answered {status}: {error}"),
        )),
        Err(err) => Err((TaskStatus::Failed, FailureReason::SlmError, err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use opentelemetry::metrics::MeterProvider as _;
    use soma_example_support::testing::{metric_value, test_telemetry};
    use soma_example_support::{
        http_client, spawn_local, ServiceConfig, POLICY_ENGINE_URL, SLM_SERVICE_URL,
    };
    use soma_observability::ObservabilityParts;
    use tower::ServiceExt;

    /// Stand-ins: the policy engine denies tasks that deploy; the SLM fails for `soma-xl`.
    async fn fake_peers() -> Peers {
        let policy = Router::new().route(
            "/v1/evaluate",
            post(|Json(q): Json<Value>| async move {
                if q["input"].as_str().unwrap().contains("deploy") {
                    (
                        StatusCode::FORBIDDEN,
                        Json(json!({"error": "needs approval"})),
                    )
                } else {
                    (StatusCode::OK, Json(json!({"decision": "allow"})))
                }
            }),
        );
        let slm = soma_example_support::testing::stand_in_slm("done");
        let policy = spawn_local(policy).await.unwrap();
        let slm = spawn_local(slm).await.unwrap();
        ServiceConfig::from_lookup("orchestrator", 8000, |var| match var {
            POLICY_ENGINE_URL => Some(policy.clone()),
            SLM_SERVICE_URL => Some(slm.clone()),
            _ => None,
        })
        .unwrap()
        .peers
    }

    async fn orchestrator(parts: &ObservabilityParts) -> Router {
        let meter = parts.meter_provider().meter("orchestrator");
        app().with_state(AppState::new(
            &meter,
            http_client().unwrap(),
            fake_peers().await,
        ))
    }

    async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn create(body: &Value) -> Request<Body> {
        Request::post("/v1/workflows")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    #[tokio::test]
    async fn a_workflow_runs_every_task_and_can_be_read_back() {
        let parts = test_telemetry("orchestrator");
        let app = orchestrator(&parts).await;
        let goal = json!({"subject": "demo", "goal": "Write the notes and then review them"});
        let (status, workflow) = send(&app, create(&goal)).await;
        assert_eq!(status, StatusCode::CREATED, "{workflow}");
        assert_eq!(workflow["status"], "completed");
        assert_eq!(workflow["tasks"].as_array().unwrap().len(), 2);
        assert_eq!(workflow["tasks"][1]["output"], "done");

        let uri = format!("/v1/workflows/{}", workflow["id"].as_str().unwrap());
        let (status, read) = send(&app, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(read, workflow);

        let metrics = parts.render_metrics().unwrap();
        let value = |name| metric_value(&metrics, name, &[]);
        assert_eq!(value("kamachiq_workflows_started_total"), Some(1.0));
        assert_eq!(value("kamachiq_workflows_completed_total"), Some(1.0));
        assert_eq!(value("kamachiq_workflows_active"), Some(0.0));
        assert_eq!(value("kamachiq_workflow_tasks_sum"), Some(2.0));
        assert_eq!(
            value("kamachiq_decomposition_duration_seconds_count"),
            Some(1.0)
        );
        let bucket = |le| metric_value(&metrics, "kamachiq_workflow_tasks_bucket", &[("le", le)]);
        assert_eq!(bucket("1.0"), Some(0.0));
        assert_eq!(bucket("2.0"), Some(1.0));
        assert_eq!(bucket("15.0"), Some(1.0));
    }

    #[tokio::test]
    async fn denied_and_failed_tasks_fail_the_workflow_with_a_reason() {
        let parts = test_telemetry("orchestrator");
        let app = orchestrator(&parts).await;
        let goal = json!({"subject": "demo", "goal": "Write the notes, then deploy the site. Email the team"});
        let (status, workflow) = send(&app, create(&goal)).await;
        assert_eq!(status, StatusCode::CREATED, "{workflow}");
        assert_eq!(workflow["status"], "failed");
        assert_eq!(workflow["failure_reason"], "policy_denied");
        let statuses: Vec<&str> = workflow["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["done", "denied", "skipped"]);

        let goal = json!({"subject": "demo", "goal": "Write the notes", "model": "soma-xl"});
        let (_, workflow) = send(&app, create(&goal)).await;
        assert_eq!(workflow["failure_reason"], "slm_error");

        let metrics = parts.render_metrics().unwrap();
        for reason in ["policy_denied", "slm_error"] {
            let failed = metric_value(
                &metrics,
                "kamachiq_workflows_failed_total",
                &[("reason", reason)],
            );
            assert_eq!(failed, Some(1.0), "{reason}");
        }
    }

    #[tokio::test]
    async fn invalid_goals_are_400s_and_unknown_workflows_404s() {
        let parts = test_telemetry("orchestrator");
        let app = orchestrator(&parts).await;
        for goal in [
            json!({"subject": "demo", "goal": "  "}),
            json!({"subject": "demo", "goal": " ... ; then, and "}),
            json!({"subject": "", "goal": "Write it"}),
            json!({"goal": "Write it"}),
        ] {
            let (status, body) = send(&app, create(&goal)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{goal}");
            assert!(body["error"].is_string(), "{body}");
        }
        let (status, body) = send(
            &app,
            Request::get("/v1/workflows/wf-999")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "no such workflow");
        let metrics = parts.render_metrics().unwrap();
        assert_eq!(
            metric_value(&metrics, "kamachiq_workflows_started_total", &[]),
            None
        );
    }
}
