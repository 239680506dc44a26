//! Delivery: what the span and log processors share (queue admission, their counters, shutdown's
//! deadline and what it lost), and when another export attempt is no longer worth starting.
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
//! same way. The guard then logs and keeps
//! [`Undelivered`](crate::Undelivered) with the counts, on time.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry::metrics::{Counter, Meter};
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

/// The items of `signal`, as messages count them.
fn items(signal: Signal) -> &'static str {
    match signal {
        Signal::Logs => "log records",
        _ => "spans",
    }
}

/// The counters of one signal's processor: export outcomes
/// (`otel.sdk.exporter.{span,log}.exported`) and drops (`otel.sdk.{span,log}.dropped`).
#[derive(Clone, Debug)]
pub(crate) struct Counters {
    pub(crate) exported: Counter<u64>,
    pub(crate) dropped: Counter<u64>,
}

impl Counters {
    pub(crate) fn new(meter: &Meter, signal: Signal) -> Self {
        let (exported, dropped, unit, exported_help, dropped_help) = match signal {
            Signal::Logs => (
                "otel.sdk.exporter.log.exported",
                "otel.sdk.log.dropped",
                "{log_record}",
                "Log records handed to the exporter, by outcome (error_type set when the export failed).",
                "Log records dropped: the export queue was full, or (error_type=shutdown_deadline) the shutdown deadline left no time to export them.",
            ),
            _ => (
                "otel.sdk.exporter.span.exported",
                "otel.sdk.span.dropped",
                "{span}",
                "Spans handed to the exporter, by outcome (error_type set when the export failed).",
                "Finished spans dropped: the export queue was full, or (error_type=shutdown_deadline) the shutdown deadline left no time to export them, (throttled) the collector asked for a pause, (too_large) the span alone was larger than an export request may be.",
            ),
        };
        Self {
            exported: meter
                .u64_counter(exported)
                .with_unit(unit)
                .with_description(exported_help)
                .build(),
            dropped: meter
                .u64_counter(dropped)
                .with_unit(unit)
                .with_description(dropped_help)
                .build(),
        }
    }
}

/// Says how many items a full export queue dropped: at most once per
/// [`SDK_LOG_INTERVAL`](crate::subscriber::SDK_LOG_INTERVAL), with the count since the last time
/// (the counter `otel_sdk_{span,log}_dropped_total` has every one). Dropping stays cheap: a
/// counter increment, and a lock only tried.
#[derive(Debug, Default)]
pub(crate) struct QueueFullWarning {
    dropped: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl QueueFullWarning {
    /// Notes one item of `signal` dropped because `limit` items were already queued.
    pub(crate) fn dropped(&self, signal: Signal, limit: usize) {
        self.dropped.fetch_add(1, Ordering::AcqRel);
        let Ok(mut last) = self.last.try_lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < crate::subscriber::SDK_LOG_INTERVAL) {
            return;
        }
        *last = Some(now);
        drop(last);
        let n = self.dropped.swap(0, Ordering::AcqRel);
        let (items, variable) = match signal {
            Signal::Logs => ("log records", "OTEL_BLRP_MAX_QUEUE_SIZE"),
            _ => ("spans", "OTEL_BSP_MAX_QUEUE_SIZE"),
        };
        tracing::warn!(
            target: "soma_observability::delivery",
            dropped = n,
            limit,
            "{n} {items} dropped since the last warning: the export queue is full ({limit}, \
             {variable}); the collector is slower than the service or unreachable (said at most \
             every {:?})",
            crate::subscriber::SDK_LOG_INTERVAL
        );
    }
}

/// Admits one more item while fewer than `limit` are `pending` (queued or being exported);
/// `false`: the queue is full and the item is to be dropped (and counted).
pub(crate) fn admit(pending: &AtomicUsize, limit: usize) -> bool {
    pending
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
}

/// Waits on `condvar` until `done` holds or `deadline` passes; `false` on time-out.
pub(crate) fn wait_until<'a, T>(
    condvar: &Condvar,
    mut state: MutexGuard<'a, T>,
    deadline: Instant,
    done: impl Fn(&T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    while !done(&state) {
        let now = Instant::now();
        if now >= deadline {
            return (state, false);
        }
        state = condvar
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    (state, true)
}

/// Shutdown as one processor sees it: its deadline and what it lost. Kept under the processor's
/// lock, where the count of pending items is decremented too, so a shutdown that stops waiting
/// counts exactly what was not delivered.
#[derive(Debug, Default)]
pub(crate) struct Shutdown {
    /// Set by shutdown: its deadline.
    pub(crate) deadline: Option<Instant>,
    /// Items lost since shutdown began: failed, not attempted, or ended too late.
    lost: usize,
    /// Why the last of them were lost.
    pub(crate) cause: Option<String>,
    /// Shutdown stopped waiting at its deadline and counted what was left itself.
    pub(crate) abandoned: bool,
}

impl Shutdown {
    /// Whether shutdown has begun.
    pub(crate) fn began(&self) -> bool {
        self.deadline.is_some()
    }

    /// Counts `n` items as lost during shutdown, unless shutdown already counted them.
    pub(crate) fn lose(&mut self, n: usize, cause: String) {
        if self.began() && !self.abandoned {
            self.lost += n;
            self.cause = Some(cause);
        }
    }

    /// The last cause, to be continued: `"<cause>; "`, or nothing.
    fn so_far(&self) -> String {
        self.cause
            .as_ref()
            .map(|c| format!("{c}; "))
            .unwrap_or_default()
    }

    /// Counts `n` queued items that shutdown has no time left to export (`last_failure`: how
    /// long the last failed export took) and returns the warning to print, or `None` if
    /// shutdown already counted them.
    pub(crate) fn give_up(
        &mut self,
        signal: Signal,
        n: usize,
        last_failure: Option<Duration>,
    ) -> Option<String> {
        if self.abandoned {
            return None;
        }
        let left = self.deadline.map_or(Duration::ZERO, |d| {
            d.saturating_duration_since(Instant::now())
        });
        let items = items(signal);
        let last = self.so_far();
        let Some(took) = last_failure else {
            self.lose(
                n,
                format!("{last}{n} queued {items} dropped: the shutdown deadline passed"),
            );
            return Some(format!(
                "shutdown: {n} queued {items} dropped: the deadline passed"
            ));
        };
        self.lose(
            n,
            format!(
                "{last}{n} queued {items} dropped without another attempt: the last export \
                 failed after {took:.1?} and {left:.1?} of the shutdown deadline was left"
            ),
        );
        Some(format!(
            "shutdown: {n} queued {items} dropped without another attempt; the collector is \
             down (the last export failed after {took:.1?}) and only {left:.1?} of the \
             deadline is left"
        ))
    }

    /// Shutdown stops waiting at its `timeout`: the `left` items still queued or in the export
    /// in flight are lost too, and nothing is counted after this.
    pub(crate) fn abandon(&mut self, signal: Signal, left: usize, timeout: Duration) {
        let last = self.so_far();
        self.abandoned = true;
        self.lost += left;
        self.cause = Some(format!(
            "{last}{left} {} were still queued or being exported when the {timeout:.1?} \
             deadline passed (the collector did not answer in time)",
            items(signal)
        ));
    }

    /// Reports what was lost to the guard.
    pub(crate) fn report(&mut self, signal: Signal, losses: &Losses) {
        losses.add(signal, self.lost);
        if let Some(cause) = self.cause.take() {
            losses.set_cause(signal, cause);
        }
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
