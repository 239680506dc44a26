//! Delivery at shutdown: what the span and log processors could not deliver, and when another
//! export attempt is no longer worth starting.
//!
//! # A collector that is down at shutdown
//!
//! [`ObservabilityGuard::shutdown`](crate::ObservabilityGuard::shutdown) gives the span and log
//! processors one deadline. They keep exporting what is queued while an attempt can still finish
//! in time. Once an export has failed (refused connection, no answer, `503`) and the time left is
//! shorter than that failed attempt took, a new attempt would only run into the deadline: the
//! processor stops trying, counts every span or log record still queued as dropped
//! (`otel_sdk_span_dropped_total{error_type="shutdown_deadline"}`,
//! `otel_sdk_log_dropped_total{error_type="shutdown_deadline"}`) and reports the total here.
//! An export still in flight when the deadline passes is abandoned and its items are counted the
//! same way. The guard then returns
//! [`ShutdownError::Undelivered`](crate::ShutdownError::Undelivered) with the counts, on time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkError;

use crate::error::Signal;

/// The `error.type` of items dropped because the shutdown deadline left no time to export them.
pub(crate) const SHUTDOWN_DEADLINE: &str = "shutdown_deadline";

/// The attributes of a drop at shutdown.
pub(crate) fn shutdown_drop_attributes() -> [KeyValue; 1] {
    [KeyValue::new("error.type", SHUTDOWN_DEADLINE)]
}

/// Kept free at the end of the deadline, so a processor reports before the guard stops waiting.
pub(crate) const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

/// What the processors could not deliver during shutdown; shared with the guard.
#[derive(Debug, Default)]
pub(crate) struct Losses {
    spans: AtomicU64,
    log_records: AtomicU64,
    causes: Mutex<Causes>,
}

#[derive(Debug, Default)]
struct Causes {
    traces: Option<String>,
    logs: Option<String>,
}

impl Losses {
    /// Adds `n` items of `signal` lost during shutdown.
    pub(crate) fn add(&self, signal: Signal, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        match signal {
            Signal::Logs => self.log_records.fetch_add(n, Ordering::AcqRel),
            _ => self.spans.fetch_add(n, Ordering::AcqRel),
        };
    }

    /// Remembers why `signal` lost items (the latest reason wins).
    pub(crate) fn set_cause(&self, signal: Signal, cause: String) {
        let mut causes = self.causes.lock().unwrap_or_else(PoisonError::into_inner);
        match signal {
            Signal::Logs => causes.logs = Some(cause),
            _ => causes.traces = Some(cause),
        }
    }

    pub(crate) fn spans(&self) -> u64 {
        self.spans.load(Ordering::Acquire)
    }

    pub(crate) fn log_records(&self) -> u64 {
        self.log_records.load(Ordering::Acquire)
    }

    /// `traces: ...`, `logs: ...`, for the signals that lost something.
    pub(crate) fn causes(&self) -> Vec<String> {
        let causes = self.causes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        if self.spans() > 0 {
            out.push(format!(
                "traces: {}",
                causes.traces.as_deref().unwrap_or("not exported in time")
            ));
        }
        if self.log_records() > 0 {
            out.push(format!(
                "logs: {}",
                causes.logs.as_deref().unwrap_or("not exported in time")
            ));
        }
        out
    }
}

/// Whether an export started now can still finish before `deadline`, given how long the last
/// failed export took (`None`: the last export succeeded, or none was made yet).
pub(crate) fn worth_an_attempt(last_failure: Option<Duration>, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    match last_failure {
        None => !left.is_zero(),
        Some(took) => took + DEADLINE_MARGIN < left,
    }
}

/// Says what a failed export means, in words an operator can act on. `took` is how long the
/// export ran, `timeout` the exporter's (`OTEL_EXPORTER_OTLP_*TIMEOUT`).
///
/// The exporters call a refused connection and an answer that never came alike "network
/// error"; the time the attempt took tells them apart.
///
/// The OTLP/HTTP exporter calls every failed request "network error": the cause its client
/// kept on this thread (see [`tls`](crate::tls)) is added, so a TLS failure reads as one.
pub(crate) fn describe_failure(err: &OTelSdkError, took: Duration, timeout: Duration) -> String {
    let mut detail = match err {
        OTelSdkError::InternalFailure(message) => message.clone(),
        other => other.to_string(),
    };
    if let Some(cause) = crate::tls::take_transport_failure() {
        detail = format!("{detail}: {cause}");
    }
    let detail = without_repeats(&detail);
    if let Some(tls) = describe_tls_failure(&detail) {
        tls
    } else if took + Duration::from_millis(100) >= timeout {
        format!(
            "the collector did not answer within the export timeout ({timeout:?}, \
             OTEL_EXPORTER_OTLP_TIMEOUT): it accepts connections but hangs, or is unreachable \
             ({detail})"
        )
    } else if detail.contains("network error")
        || detail.contains("transport error")
        || detail.to_ascii_lowercase().contains("connect")
    {
        format!(
            "the collector could not be reached (connection refused or reset; {detail}); \
             check OTEL_EXPORTER_OTLP_ENDPOINT and that the collector is running"
        )
    } else {
        format!("the collector rejected the export ({detail})")
    }
}

/// `detail` with a `: `-separated run that repeats right after itself said once: error chains
/// often end in a cause whose message its wrapper already included (`transport error: invalid
/// peer certificate: UnknownIssuer: invalid peer certificate: UnknownIssuer`).
fn without_repeats(detail: &str) -> String {
    let mut parts: Vec<&str> = detail.split(": ").collect();
    let mut i = 0;
    while i < parts.len() {
        let repeated =
            (1..=(parts.len() - i) / 2).find(|&k| parts[i..i + k] == parts[i + k..i + 2 * k]);
        match repeated {
            Some(k) => drop(parts.drain(i + k..i + 2 * k)),
            None => i += 1,
        }
    }
    parts.join(": ")
}

/// A TLS failure in `detail` (rustls' error and alert names), in words an operator can act on.
fn describe_tls_failure(detail: &str) -> Option<String> {
    let lower = detail.to_ascii_lowercase();
    let has = |marks: &[&str]| marks.iter().any(|mark| lower.contains(mark));
    if has(&[
        "invalid peer certificate",
        "unknownissuer",
        "notvalidforname",
    ]) {
        Some(format!(
            "the collector's TLS certificate is not trusted ({detail}); check \
             OTEL_EXPORTER_OTLP_CERTIFICATE (or its per-signal form): it must name the CA that \
             signed the collector's certificate (unset: the system roots), and the endpoint's \
             host must be in the certificate"
        ))
    } else if has(&[
        "certificaterequired",
        "certificate required",
        "peer sent no certificates",
        "badcertificate",
        "unknownca",
        "certificateunknown",
    ]) {
        Some(format!(
            "the collector refused this service's TLS client certificate, or needs one \
             ({detail}); set OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and \
             OTEL_EXPORTER_OTLP_CLIENT_KEY (or their per-signal forms) to a certificate the \
             collector's CA signed"
        ))
    } else if has(&[
        "tls",
        "handshake",
        "received fatal alert",
        "invalidcontenttype",
    ]) {
        Some(format!(
            "the TLS handshake with the collector failed ({detail}); check that the collector \
             serves TLS on this https:// endpoint, and OTEL_EXPORTER_OTLP_CERTIFICATE"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_attempt_that_cannot_finish_before_the_deadline() {
        let deadline = Instant::now() + Duration::from_secs(2);
        assert!(worth_an_attempt(None, deadline));
        assert!(worth_an_attempt(Some(Duration::from_millis(800)), deadline));
        assert!(!worth_an_attempt(Some(Duration::from_secs(3)), deadline));
        assert!(!worth_an_attempt(None, Instant::now()));
    }

    #[test]
    fn a_hung_collector_is_not_called_a_network_error() {
        let err = OTelSdkError::InternalFailure("HTTP export failed: network error".into());
        let timeout = Duration::from_secs(10);
        let hung = describe_failure(&err, Duration::from_secs(10), timeout);
        assert!(hung.contains("did not answer within"), "{hung}");
        let refused = describe_failure(&err, Duration::from_millis(700), timeout);
        assert!(refused.contains("could not be reached"), "{refused}");
        let status =
            OTelSdkError::InternalFailure("HTTP export failed with status code: 503".into());
        let rejected = describe_failure(&status, Duration::from_secs(4), timeout);
        assert!(rejected.contains("rejected the export"), "{rejected}");
    }

    #[test]
    fn tls_failures_say_which_certificate_to_check() {
        let timeout = Duration::from_secs(10);
        let untrusted = OTelSdkError::InternalFailure(
            "TonicTracesClient export failed with gRPC code: Unavailable: transport error: \
             invalid peer certificate: UnknownIssuer: invalid peer certificate: UnknownIssuer"
                .into(),
        );
        let why = describe_failure(&untrusted, Duration::from_millis(5), timeout);
        assert_eq!(why.matches("UnknownIssuer").count(), 1, "{why}");
        assert!(
            why.starts_with("the collector's TLS certificate is not trusted"),
            "{why}"
        );
        assert!(why.contains("UnknownIssuer") && why.contains("OTEL_EXPORTER_OTLP_CERTIFICATE"));
        let refused = OTelSdkError::InternalFailure(
            "HTTP export failed: network error: received fatal alert: CertificateRequired".into(),
        );
        let why = describe_failure(&refused, Duration::from_millis(5), timeout);
        assert!(
            why.contains("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
            "{why}"
        );
        // A refused TCP connection is still one, TLS or not.
        let down = OTelSdkError::InternalFailure(
            "HTTP export failed: network error: error sending request: tcp connect error: \
             Connection refused (os error 111)"
                .into(),
        );
        let why = describe_failure(&down, Duration::from_millis(5), timeout);
        assert!(why.contains("could not be reached"), "{why}");
    }

    #[test]
    fn repeated_causes_are_said_once() {
        assert_eq!(without_repeats("a: b: c: b: c"), "a: b: c");
        assert_eq!(without_repeats("a: a: a"), "a");
        assert_eq!(without_repeats("a: b: a"), "a: b: a");
        assert_eq!(without_repeats("network error"), "network error");
    }

    #[test]
    fn causes_name_only_the_signals_that_lost_something() {
        let undelivered = Losses::default();
        undelivered.set_cause(Signal::Logs, "never sent".into());
        assert!(undelivered.causes().is_empty());
        undelivered.add(Signal::Traces, 3);
        assert_eq!(undelivered.causes(), ["traces: not exported in time"]);
        undelivered.add(Signal::Logs, 1);
        assert_eq!(undelivered.causes()[1], "logs: never sent");
    }
}
