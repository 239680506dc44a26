//! Helpers for the services' unit tests: their own telemetry (`soma_observability::testing`),
//! and reading a scrape.

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use axum::Router;
use soma_observability::testing::TestTelemetry;
use tower::ServiceExt;

/// The test's own telemetry for `service` (nothing global, nothing exported): the state the
/// test builds afterwards on its thread (`get_meter`, `HttpClient::new`) records into it, and it
/// reads back metrics, spans and logs. It is the parts too (`render_metrics`, `instrument`).
///
/// # Panics
///
/// If the telemetry cannot be built (a bug in the library).
pub fn test_telemetry(service: &'static str) -> TestTelemetry {
    TestTelemetry::new(service).expect("test telemetry builds")
}

/// The sum of the samples of `name` (exact series name, e.g. `policy_decisions_total`) whose
/// labels include every `labels` pair, in a Prometheus text exposition; `None` if none matched.
pub fn metric_value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, l)) => (n, l),
                None => (series, ""),
            };
            (series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .reduce(|a, b| a + b)
}

/// Sends `POST path` with a JSON body through `app` and returns the status and the whole body.
///
/// # Panics
///
/// If the request cannot be built or the body cannot be read.
pub async fn post_json(app: &Router, path: &str, body: &serde_json::Value) -> (StatusCode, Bytes) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("a valid request");
    let response = app
        .clone()
        .oneshot(request)
        .await
        .expect("infallible router");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a readable body");
    (status, bytes)
}

/// A stand-in slm-service for the callers' tests: `POST /v1/generate` answers `text` (one token
/// per word), except for the unloaded model `soma-xl`, which gets 503 as the real service gives.
pub fn stand_in_slm(text: &'static str) -> Router {
    use axum::routing::post;
    use axum::Json;
    use serde_json::{json, Value};
    Router::new().route(
        "/v1/generate",
        post(move |Json(request): Json<Value>| async move {
            if request["model"] == "soma-xl" {
                let error = json!({"error": "model soma-xl is not loaded"});
                (StatusCode::SERVICE_UNAVAILABLE, Json(error))
            } else {
                let tokens = text.split_whitespace().count();
                (
                    StatusCode::OK,
                    Json(json!({"text": text, "tokens": tokens})),
                )
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_value_sums_matching_series() {
        let text = "# HELP x_total X.\n\
                    x_total{a=\"1\",b=\"2\"} 3\n\
                    x_total{a=\"1\",b=\"3\"} 4\n\
                    x_total_other{a=\"1\"} 100\n\
                    y 7\n";
        assert_eq!(metric_value(text, "x_total", &[("a", "1")]), Some(7.0));
        assert_eq!(metric_value(text, "x_total", &[("b", "3")]), Some(4.0));
        assert_eq!(metric_value(text, "y", &[]), Some(7.0));
        assert_eq!(metric_value(text, "x_total", &[("a", "2")]), None);
    }
}
