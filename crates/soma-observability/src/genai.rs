//! GenAI metrics after the OpenTelemetry GenAI semantic conventions, for services that generate
//! text and stream it.
//!
//! | OpenTelemetry name | Prometheus name | unit, buckets | attributes |
//! |---|---|---|---|
//! | `gen_ai.server.time_to_first_token` | `gen_ai_server_time_to_first_token_seconds_*` | s, [`TIME_TO_FIRST_TOKEN_BUCKETS`] | operation, provider, model |
//! | `gen_ai.server.time_per_output_token` | `gen_ai_server_time_per_output_token_seconds_*` | s, [`TIME_PER_OUTPUT_TOKEN_BUCKETS`] | operation, provider, model |
//! | `gen_ai.server.request.duration` | `gen_ai_server_request_duration_seconds_*` | s, [`REQUEST_DURATION_BUCKETS`] | operation, provider, model, `error.type` when the response did not finish |
//! | `gen_ai.client.token.usage` | `gen_ai_client_token_usage_*` | `{token}`, [`TOKEN_USAGE_BUCKETS`] | operation, provider, model, `gen_ai.token.type` (`input`, `output`) |
//!
//! Attributes are bounded: `gen_ai.operation.name` and `gen_ai.provider.name` are fixed strings
//! of the service, and `gen_ai.request.model` is one of the models given to
//! [`GenAiMetrics::new`], any other name becoming `_OTHER`.
//!
//! **Time to first token is measured on the response stream**: [`GenAiRequest::wrap`] wraps the
//! response body, and the first non-empty data frame polled out of it (by the server, to write
//! it to the socket) records it. Whatever the handler did before, however long the rest of the
//! stream, the figure is what the client waited for its first byte of content (the SSE frame of
//! the first token). The request duration is recorded when the body ends; the time per output
//! token is `(end - first token) / (output tokens - 1)`, from the count the stream reports with
//! [`TokenCounter::add`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let config = soma_observability::ObservabilityConfig::from_lookup(|name| match name {
//! #     "OTEL_TRACES_EXPORTER" | "OTEL_LOGS_EXPORTER" => Some("none".to_owned()),
//! #     _ => None,
//! # })?;
//! use soma_observability::genai::GenAiMetrics;
//!
//! let parts = soma_observability::Observability::builder("slm").with_config(config).build()?;
//! let genai = GenAiMetrics::new(&parts.meter("slm"), "soma", &["markov-small"]);
//!
//! // In a handler: one request, its input tokens, a body that streams the output.
//! let request = genai.start("text_completion", "markov-small", 12);
//! let tokens = request.token_counter();
//! tokens.add(2); // the stream counts what it emits
//! let body = request.wrap(axum::body::Body::from("data: hello world\n\n"));
//! axum::body::to_bytes(axum::body::Body::new(body), usize::MAX).await?; // sent: recorded
//!
//! let metrics = parts.render_metrics()?;
//! assert!(metrics.contains("gen_ai_server_time_to_first_token_seconds_count"));
//! assert!(metrics.contains(r#"gen_ai_token_type="input""#));
//! # Ok(()) }
//! ```

#![allow(clippy::doc_markdown)] // "GenAI" is the conventions' name, not code

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use opentelemetry::metrics::{Histogram, Meter};
use opentelemetry::{KeyValue, StringValue};
use opentelemetry_semantic_conventions::attribute::ERROR_TYPE;

/// The GenAI names, written out: `opentelemetry-semantic-conventions` 0.33 marks its GenAI
/// constants deprecated (they moved to the GenAI conventions repository), the names are unchanged.
mod names {
    pub(super) const GEN_AI_SERVER_TIME_TO_FIRST_TOKEN: &str = "gen_ai.server.time_to_first_token";
    pub(super) const GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN: &str =
        "gen_ai.server.time_per_output_token";
    pub(super) const GEN_AI_SERVER_REQUEST_DURATION: &str = "gen_ai.server.request.duration";
    pub(super) const GEN_AI_CLIENT_TOKEN_USAGE: &str = "gen_ai.client.token.usage";
}

mod semconv {
    pub(super) use super::ERROR_TYPE;
    pub(super) const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
    pub(super) const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
    pub(super) const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
    pub(super) const GEN_AI_TOKEN_TYPE: &str = "gen_ai.token.type";
}

/// `gen_ai.server.time_to_first_token` boundaries (seconds), from the semantic conventions.
pub const TIME_TO_FIRST_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// `gen_ai.server.time_per_output_token` boundaries (seconds), from the semantic conventions.
pub const TIME_PER_OUTPUT_TOKEN_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
/// `gen_ai.server.request.duration` boundaries (seconds), from the semantic conventions.
pub const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// `gen_ai.client.token.usage` boundaries (tokens), from the semantic conventions.
/// The powers of four from 1 to 67 108 864 (4^13).
pub const TOKEN_USAGE_BUCKETS: &[f64] = &crate::metrics::powers_of_four::<14>(0);

/// The model name recorded for a model the service did not declare.
pub const OTHER_MODEL: &str = "_OTHER";

/// The four GenAI instruments of one service (see the [module docs](self)). Cheap to clone.
#[derive(Clone, Debug)]
pub struct GenAiMetrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    time_to_first_token: Histogram<f64>,
    time_per_output_token: Histogram<f64>,
    request_duration: Histogram<f64>,
    token_usage: Histogram<u64>,
    provider: StringValue,
    models: Vec<StringValue>,
}

impl GenAiMetrics {
    /// Creates the instruments on `meter` (from [`ObservabilityParts::meter`](crate::ObservabilityParts::meter)
    /// or [`get_meter`](crate::get_meter) after setup). `provider` is `gen_ai.provider.name`;
    /// `models` are the model names the service serves, the only values `gen_ai.request.model`
    /// takes besides [`OTHER_MODEL`].
    pub fn new(meter: &Meter, provider: &'static str, models: &[&'static str]) -> Self {
        let seconds = |name: &'static str, description: &'static str, buckets: &[f64]| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(buckets.to_vec())
                .build()
        };
        Self {
            inner: Arc::new(Inner {
                time_to_first_token: seconds(
                    names::GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
                    "Time from the request to the first token frame leaving the service.",
                    TIME_TO_FIRST_TOKEN_BUCKETS,
                ),
                time_per_output_token: seconds(
                    names::GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN,
                    "Time per output token generated after the first token.",
                    TIME_PER_OUTPUT_TOKEN_BUCKETS,
                ),
                request_duration: seconds(
                    names::GEN_AI_SERVER_REQUEST_DURATION,
                    "Time from the request to the end of the generated response.",
                    REQUEST_DURATION_BUCKETS,
                ),
                token_usage: meter
                    .u64_histogram(names::GEN_AI_CLIENT_TOKEN_USAGE)
                    .with_unit("{token}")
                    .with_description(
                        "Tokens used per request, by gen_ai.token.type (input, output).",
                    )
                    .with_boundaries(TOKEN_USAGE_BUCKETS.to_vec())
                    .build(),
                provider: StringValue::from(provider),
                models: models.iter().map(|m| StringValue::from(*m)).collect(),
            }),
        }
    }

    /// Starts measuring one request for `operation` (`gen_ai.operation.name`, e.g. `chat` or
    /// `text_completion`) on `model`, which used `input_tokens` tokens of prompt.
    pub fn start(&self, operation: &'static str, model: &str, input_tokens: u64) -> GenAiRequest {
        let model = self
            .inner
            .models
            .iter()
            .find(|known| known.as_str() == model)
            .cloned()
            .unwrap_or_else(|| StringValue::from(OTHER_MODEL));
        GenAiRequest {
            recorder: Recorder {
                metrics: Arc::clone(&self.inner),
                attributes: vec![
                    KeyValue::new(semconv::GEN_AI_OPERATION_NAME, operation),
                    KeyValue::new(semconv::GEN_AI_PROVIDER_NAME, self.inner.provider.clone()),
                    KeyValue::new(semconv::GEN_AI_REQUEST_MODEL, model),
                ],
                start: Instant::now(),
                first_token: None,
                input_tokens,
                output_tokens: Arc::new(AtomicU64::new(0)),
                // Until `wrap`: a request dropped unwrapped records nothing.
                done: true,
            },
        }
    }
}

/// One generation being measured; [`wrap`](Self::wrap) its response body.
#[derive(Debug)]
pub struct GenAiRequest {
    recorder: Recorder,
}

impl GenAiRequest {
    /// A counter the response stream adds its output tokens to.
    pub fn token_counter(&self) -> TokenCounter {
        TokenCounter(Arc::clone(&self.recorder.output_tokens))
    }

    /// Wraps the response body: its first non-empty data frame records the time to first token,
    /// its end the duration, time per output token and token usage.
    pub fn wrap<B>(mut self, body: B) -> GenAiBody<B> {
        self.recorder.done = false;
        GenAiBody {
            inner: body,
            recorder: self.recorder,
        }
    }

    /// Records a request that failed before any response body (`error.type` = `error_type`,
    /// e.g. `upstream_error`): only its duration. A request dropped without
    /// [`wrap`](Self::wrap) or `fail` records nothing.
    pub fn fail(mut self, error_type: &'static str) {
        self.recorder.done = false;
        self.recorder.finish(Some(error_type));
    }
}

/// Counts the output tokens of one [`GenAiRequest`].
#[derive(Clone, Debug)]
pub struct TokenCounter(Arc<AtomicU64>);

impl TokenCounter {
    /// Adds `n` output tokens.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A response body that records the GenAI metrics as it is sent (see [`GenAiRequest::wrap`]).
    #[derive(Debug)]
    pub struct GenAiBody<B> {
        #[pin]
        inner: B,
        recorder: Recorder,
    }
}

impl<B: Body> Body for GenAiBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let has_data = frame.data_ref().is_some_and(bytes::Buf::has_remaining);
                if has_data && this.recorder.first_token.is_none() {
                    this.recorder.first_token();
                }
            }
            Poll::Ready(None) => this.recorder.finish(None),
            Poll::Ready(Some(Err(_))) => this.recorder.finish(Some("body_error")),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[derive(Debug)]
struct Recorder {
    metrics: Arc<Inner>,
    attributes: Vec<KeyValue>,
    start: Instant,
    first_token: Option<Instant>,
    input_tokens: u64,
    output_tokens: Arc<AtomicU64>,
    done: bool,
}

impl Recorder {
    fn first_token(&mut self) {
        let now = Instant::now();
        self.first_token = Some(now);
        let elapsed = now.duration_since(self.start).as_secs_f64();
        self.metrics
            .time_to_first_token
            .record(elapsed, &self.attributes);
    }

    /// Records the end of the response, once; `error` when it did not complete.
    fn finish(&mut self, error: Option<&'static str>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let now = Instant::now();
        let duration = now.duration_since(self.start).as_secs_f64();
        if let Some(error) = error {
            let mut attributes = self.attributes.clone();
            attributes.push(KeyValue::new(semconv::ERROR_TYPE, error));
            self.metrics.request_duration.record(duration, &attributes);
            return;
        }
        self.metrics
            .request_duration
            .record(duration, &self.attributes);
        let output = self.output_tokens.load(Ordering::Relaxed);
        if let (Some(first), true) = (self.first_token, output > 1) {
            #[allow(clippy::cast_precision_loss)] // token counts stay far below 2^52
            let per_token = now.duration_since(first).as_secs_f64() / (output - 1) as f64;
            self.metrics
                .time_per_output_token
                .record(per_token, &self.attributes);
        }
        for (kind, tokens) in [("input", self.input_tokens), ("output", output)] {
            if tokens > 0 {
                let mut attributes = self.attributes.clone();
                attributes.push(KeyValue::new(semconv::GEN_AI_TOKEN_TYPE, kind));
                self.metrics.token_usage.record(tokens, &attributes);
            }
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // A body dropped before its end: the client went away.
        self.finish(Some("cancelled"));
    }
}
