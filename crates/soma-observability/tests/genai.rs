//! The `genai` metrics on a real streamed response over a socket.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use common::{build, metrics_only, sample};
use soma_observability::genai::GenAiMetrics;

/// `/stream/{n}`: waits 200 ms, then sends `n` token frames 20 ms apart.
fn app(genai: GenAiMetrics) -> Router {
    Router::new().route(
        "/stream/{n}",
        get(
            move |axum::extract::Path(n): axum::extract::Path<u64>| async move {
                let model = if n == 3 { "tiny" } else { "somebody-elses" };
                let request = genai.start("text_completion", model, 7);
                let tokens = request.token_counter();
                let frames = futures_util::stream::unfold(0, move |i| {
                    let tokens = tokens.clone();
                    async move {
                        if i == n {
                            return None;
                        }
                        let pause = if i == 0 { 200 } else { 20 };
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                        tokens.add(1);
                        let frame = Bytes::from(format!("data: {{\"token\": {i}}}\n\n"));
                        Some((Ok::<_, Infallible>(frame), i + 1))
                    }
                });
                Response::new(Body::new(request.wrap(Body::from_stream(frames))))
            },
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_to_first_token_is_the_first_frame_whatever_the_length() {
    let parts = build("slm", metrics_only());
    let genai = GenAiMetrics::new(&parts.meter("slm"), "soma", &["tiny"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(genai)).await.unwrap() });
    let client = reqwest::Client::new();
    for n in [3, 25] {
        let body = common::get_text(&client, &format!("http://{addr}/stream/{n}")).await;
        assert_eq!(body.matches("data:").count(), usize::try_from(n).unwrap());
    }
    let metrics = parts.render_metrics().unwrap();
    for (model, tokens) in [("tiny", 3.0), ("_OTHER", 25.0)] {
        let labels = [
            r#"gen_ai_operation_name="text_completion""#,
            r#"gen_ai_provider_name="soma""#,
            &*format!(r#"gen_ai_request_model="{model}""#),
        ];
        let ttft = sample(
            &metrics,
            "gen_ai_server_time_to_first_token_seconds_sum",
            &labels,
        )
        .unwrap();
        assert!(
            (0.19..0.35).contains(&ttft),
            "{model}: time to first token {ttft}"
        );
        let count = sample(
            &metrics,
            "gen_ai_server_time_to_first_token_seconds_count",
            &labels,
        );
        assert_eq!(count, Some(1.0));
        let duration = sample(
            &metrics,
            "gen_ai_server_request_duration_seconds_sum",
            &labels,
        )
        .unwrap();
        let expected = 0.2 + 0.02 * (tokens - 1.0);
        assert!(
            duration >= expected - 0.01 && duration < expected + 0.5,
            "{model}: {duration}"
        );
        let per_token = sample(
            &metrics,
            "gen_ai_server_time_per_output_token_seconds_sum",
            &labels,
        )
        .unwrap();
        assert!(
            (0.019..0.1).contains(&per_token),
            "{model}: {per_token} s per token"
        );
        let mut output = labels.to_vec();
        output.push(r#"gen_ai_token_type="output""#);
        assert_eq!(
            sample(&metrics, "gen_ai_client_token_usage_sum", &output),
            Some(tokens)
        );
        let mut input = labels.to_vec();
        input.push(r#"gen_ai_token_type="input""#);
        assert_eq!(
            sample(&metrics, "gen_ai_client_token_usage_sum", &input),
            Some(7.0)
        );
    }
    // The semantic conventions' buckets.
    assert!(metrics.contains("gen_ai_server_time_to_first_token_seconds_bucket{"));
    for le in ["0.001", "0.25", "7.5"] {
        assert!(
            metrics.lines().any(|l| l
                .starts_with("gen_ai_server_time_to_first_token_seconds_bucket")
                && l.contains(&format!("le=\"{le}\""))),
            "le {le}"
        );
    }
    assert!(metrics
        .lines()
        .any(|l| l.starts_with("gen_ai_client_token_usage_bucket")
            && l.contains("le=\"6.7108864e+07\"")));
    assert!(metrics.lines().any(|l| l
        .starts_with("gen_ai_server_request_duration_seconds_bucket")
        && l.contains("le=\"81.92\"")));
}

#[tokio::test(flavor = "current_thread")]
async fn a_body_dropped_before_its_end_is_a_cancelled_request() {
    let parts = build("slm", metrics_only());
    let genai = GenAiMetrics::new(&parts.meter("slm"), "soma", &["tiny"]);
    let body = genai.start("chat", "tiny", 1).wrap(Body::from("x"));
    drop(body);
    genai.start("chat", "tiny", 1).fail("upstream_error");
    drop(genai.start("chat", "tiny", 1)); // never answered: nothing
    let metrics = parts.render_metrics().unwrap();
    let count = |error: &str| {
        sample(
            &metrics,
            "gen_ai_server_request_duration_seconds_count",
            &[&format!(r#"error_type="{error}""#)],
        )
    };
    assert_eq!(count("cancelled"), Some(1.0));
    assert_eq!(count("upstream_error"), Some(1.0));
    let total: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("gen_ai_server_request_duration_seconds_count{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 2, "the unanswered request records nothing");
    assert!(!metrics.contains("gen_ai_server_time_to_first_token_seconds_count"));
}
