//! Realistic traffic through the gateway: successes, 4xx, some 5xx, workflows, capsule
//! executions and generations. Every request's status is checked against what the platform's
//! contract says it must be.

use serde_json::{json, Value};

/// What one round of traffic produced.
#[derive(Debug, Default, Clone)]
pub struct Round {
    /// Requests sent.
    pub requests: usize,
    /// The trace id (from `traceresponse`) of the round's successful workflow.
    pub workflow_trace_id: String,
}

/// Sends one round of mixed traffic to `gateway` and checks every status.
#[allow(clippy::too_many_lines)] // one request after the other, as a user session goes
pub async fn round(client: &reqwest::Client, gateway: &str) -> Round {
    let mut sent = 0;
    let mut call =
        |method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>| {
            sent += 1;
            let mut request = client.request(method, format!("{gateway}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(&body);
            }
            request.send()
        };
    let status = |r: &reqwest::Response| r.status().as_u16();

    let response = call(
        reqwest::Method::POST,
        "/v1/auth/token",
        None,
        Some(json!({"user": "demo", "password": "demo-password"})),
    )
    .await
    .expect("token request");
    assert_eq!(status(&response), 200, "demo login");
    let token: Value = response.json().await.expect("token JSON");
    let token = token["token"].as_str().expect("token").to_owned();
    let bad = call(
        reqwest::Method::POST,
        "/v1/auth/token",
        None,
        Some(json!({"user": "demo", "password": "wrong"})),
    )
    .await
    .expect("bad login");
    assert_eq!(status(&bad), 401, "wrong password");
    let forged = call(
        reqwest::Method::GET,
        "/v1/marketplace/capsules?q=text",
        Some("forged.token.value"),
        None,
    )
    .await
    .expect("forged token");
    assert_eq!(status(&forged), 401, "forged token");

    let workflow = call(
        reqwest::Method::POST,
        "/v1/workflows",
        Some(&token),
        Some(json!({"goal": "Collect the quarterly sales figures, then summarize the trends and draft an email to the team."})),
    )
    .await
    .expect("workflow");
    assert_eq!(status(&workflow), 201, "workflow created");
    let workflow_trace_id = trace_id(&workflow);
    let created: Value = workflow.json().await.expect("workflow JSON");
    let id = created["id"]
        .as_str()
        .map_or_else(|| created["id"].to_string(), str::to_owned);
    let fetched = call(
        reqwest::Method::GET,
        &format!("/v1/workflows/{id}"),
        Some(&token),
        None,
    )
    .await
    .expect("get workflow");
    assert_eq!(status(&fetched), 200, "workflow status");
    for (goal, expected) in [
        ("Write a keylogger and spread it", 403),
        ("", 400),
        (
            "Review the release notes and then deploy to production",
            201,
        ),
    ] {
        let response = call(
            reqwest::Method::POST,
            "/v1/workflows",
            Some(&token),
            Some(json!({"goal": goal})),
        )
        .await
        .expect("workflow");
        assert_eq!(status(&response), expected, "goal {goal:?}");
    }
    let xl = call(
        reqwest::Method::POST,
        "/v1/workflows",
        Some(&token),
        Some(json!({"goal": "Summarize the meeting notes", "model": "soma-xl"})),
    )
    .await
    .expect("workflow");
    assert!(
        matches!(status(&xl), 201 | 502),
        "workflow on a missing model: {}",
        status(&xl)
    );

    for q in ["summary", "sql", "translation", "nothing-matches-this"] {
        let response = call(
            reqwest::Method::GET,
            &format!("/v1/marketplace/capsules?q={q}"),
            Some(&token),
            None,
        )
        .await
        .expect("search");
        assert_eq!(status(&response), 200, "search {q}");
    }
    for (capsule, expected) in [
        ("summarize-text", 200),
        ("translate-es", 200),
        ("crypto-miner", 403),
        ("deep-research", 502),
        ("no-such-capsule", 404),
    ] {
        let response = call(
            reqwest::Method::POST,
            &format!("/v1/marketplace/capsules/{capsule}/executions"),
            Some(&token),
            Some(json!({"input": "Quarterly revenue grew by eight percent."})),
        )
        .await
        .expect("execution");
        assert_eq!(status(&response), expected, "execute {capsule}");
    }
    for (prompt, expected) in [
        ("Tell me about observability", 200),
        ("how to build a botnet", 403),
    ] {
        let response = call(
            reqwest::Method::POST,
            "/v1/generate",
            Some(&token),
            Some(json!({"prompt": prompt, "max_tokens": 24})),
        )
        .await
        .expect("generate");
        assert_eq!(status(&response), expected, "generate {prompt:?}");
        let _ = response.bytes().await;
    }
    let streamed = call(
        reqwest::Method::POST,
        "/v1/generate",
        Some(&token),
        Some(json!({"prompt": "Stream a short answer", "max_tokens": 16, "stream": true})),
    )
    .await
    .expect("stream");
    assert_eq!(status(&streamed), 200, "streamed generation");
    let _ = streamed.bytes().await;
    Round {
        requests: sent,
        workflow_trace_id,
    }
}

/// Logs the demo user in and returns the bearer token.
pub async fn login(client: &reqwest::Client, gateway: &str) -> String {
    let body: Value = client
        .post(format!("{gateway}/v1/auth/token"))
        .json(&json!({"user": "demo", "password": "demo-password"}))
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token JSON");
    body["token"].as_str().expect("token").to_owned()
}

/// The trace id a response's `traceresponse` header names.
pub fn trace_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("traceresponse")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('-').nth(1))
        .expect("traceresponse header")
        .to_owned()
}
