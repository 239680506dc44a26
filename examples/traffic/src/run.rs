//! The engine: workers on a steady schedule, a shared token, and the summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::options::Options;
use crate::scenarios::{Scenario, Token};

/// A well-formed token with a signature the identity service never made.
const FORGED_TOKEN: &str =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZG1pbiIsImV4cCI6NDEwMjQ0NDgwMH0.Zm9yZ2Vk";
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Stats {
    by_status: BTreeMap<u16, u64>,
    by_scenario: BTreeMap<&'static str, u64>,
    transport_errors: u64,
    latencies_ms: Vec<u64>,
    /// A trace id from a completed `POST /v1/workflows` (spans every service), else any.
    workflow_trace: Option<String>,
    any_trace: Option<(String, String)>,
}

impl Stats {
    fn total(&self) -> u64 {
        self.by_status.values().sum::<u64>() + self.transport_errors
    }

    fn by_class(&self) -> String {
        let mut classes: BTreeMap<u16, u64> = BTreeMap::new();
        for (status, count) in &self.by_status {
            *classes.entry(status / 100).or_default() += count;
        }
        let mut line: Vec<String> = classes
            .iter()
            .map(|(class, count)| format!("{class}xx {count}"))
            .collect();
        line.push(format!("transport errors {}", self.transport_errors));
        line.join(", ")
    }
}

#[derive(Debug)]
struct Shared {
    options: Options,
    client: reqwest::Client,
    token: Mutex<String>,
    last_workflow: Mutex<Option<String>>,
    stats: Mutex<Stats>,
    next: AtomicU64,
    started: Instant,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `SplitMix64` of `x`: a well-mixed random number per request index.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The trace id of a `traceresponse: 00-<trace id>-<span id>-<flags>` header.
fn trace_id(response: &reqwest::Response) -> Option<String> {
    let value = response.headers().get("traceresponse")?.to_str().ok()?;
    let id = value.split('-').nth(1)?;
    (id.len() == 32).then(|| id.to_owned())
}

impl Shared {
    fn deadline(&self) -> Instant {
        self.started + self.options.duration
    }

    /// When request `n` is due: requests are spread evenly at the configured rate.
    fn due(&self, n: u64) -> Instant {
        if self.options.rate <= 0.0 {
            return Instant::now();
        }
        let interval = Duration::from_secs_f64(1.0 / self.options.rate);
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.started + interval.checked_mul(n).unwrap_or(self.options.duration)
    }

    async fn worker(self: Arc<Self>) {
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            if n >= self.options.requests {
                return;
            }
            let due = self.due(n);
            if due >= self.deadline() || Instant::now() >= self.deadline() {
                return;
            }
            tokio::time::sleep_until(due).await;
            let random = mix(self.options.seed ^ mix(n));
            self.send(Scenario::pick(random), random >> 8).await;
        }
    }

    async fn send(&self, scenario: Scenario, random: u64) {
        let last_workflow = lock(&self.last_workflow).clone();
        let call = scenario.call(random, last_workflow.as_deref());
        let Ok(url) = self.options.url.join(&call.path) else {
            return;
        };
        let mut request = if call.post {
            self.client.post(url)
        } else {
            self.client.get(url)
        };
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        match call.token {
            Token::Valid => request = request.bearer_auth(lock(&self.token).clone()),
            Token::Forged => request = request.bearer_auth(FORGED_TOKEN),
            Token::None => {}
        }
        let start = Instant::now();
        let Ok(response) = request.send().await else {
            let mut stats = lock(&self.stats);
            stats.transport_errors += 1;
            *stats.by_scenario.entry(scenario.name()).or_default() += 1;
            return;
        };
        let code = response.status().as_u16();
        let trace = trace_id(&response);
        // Read the whole body (streams included): the request ends when its body does.
        let body = response.bytes().await.unwrap_or_default();
        let elapsed = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        match (scenario, code) {
            (Scenario::Login, 200) => {
                if let Some(token) = json["token"].as_str() {
                    token.clone_into(&mut lock(&self.token));
                }
            }
            (Scenario::Workflow | Scenario::WorkflowTaskDenied, 201) => {
                if let Some(id) = json["id"].as_str() {
                    *lock(&self.last_workflow) = Some(id.to_owned());
                }
            }
            _ => {}
        }
        {
            let mut stats = lock(&self.stats);
            *stats.by_status.entry(code).or_default() += 1;
            *stats.by_scenario.entry(scenario.name()).or_default() += 1;
            stats.latencies_ms.push(elapsed);
            if let Some(trace) = trace {
                let completed = json["status"] == "completed";
                if scenario == Scenario::Workflow && completed && stats.workflow_trace.is_none() {
                    stats.workflow_trace = Some(trace.clone());
                }
                if stats.any_trace.is_none() {
                    let what = format!("{} {} -> {code}", scenario.name(), call.path);
                    stats.any_trace = Some((trace, what));
                }
            }
        }
        // An expired token: log in again, as a client would (counted as a login).
        if code == 401 && call.token == Token::Valid {
            Box::pin(self.send(Scenario::Login, random)).await;
        }
    }

    fn progress_line(&self) -> String {
        let stats = lock(&self.stats);
        format!(
            "[{:>5.0}s] {} requests: {}",
            self.started.elapsed().as_secs_f64(),
            stats.total(),
            stats.by_class()
        )
    }

    fn summary(&self) -> String {
        let mut stats = lock(&self.stats);
        let elapsed = self.started.elapsed().as_secs_f64();
        let total = stats.total();
        stats.latencies_ms.sort_unstable();
        let percentile = |p: usize| {
            let v = &stats.latencies_ms;
            v.get((v.len() * p / 100).min(v.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        let (p50, p95, p99) = (percentile(50), percentile(95), percentile(99));
        let statuses: Vec<String> = stats
            .by_status
            .iter()
            .map(|(status, count)| format!("{status}: {count}"))
            .collect();
        let scenarios: Vec<String> = stats
            .by_scenario
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        let mut out = format!(
            "soma-traffic: {total} requests to {} in {elapsed:.1} s; latency p50 {p50} ms, \
             p95 {p95} ms, p99 {p99} ms\n  by status: {}\n  transport errors: {}\n  by scenario: {}\n",
            self.options.url,
            statuses.join(", "),
            stats.transport_errors,
            scenarios.join(", "),
        );
        match (&stats.workflow_trace, &stats.any_trace) {
            (Some(trace), _) => {
                let _ = writeln!(
                    out,
                    "sample trace id: {trace} (POST /v1/workflows -> 201, completed: gateway, \
                     policy-engine, orchestrator, slm-service)"
                );
            }
            (None, Some((trace, what))) => {
                let _ = writeln!(out, "sample trace id: {trace} ({what})");
            }
            (None, None) => out.push_str("sample trace id: none (no traceresponse header seen)\n"),
        }
        out
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

pub(crate) async fn run(options: Options) -> ExitCode {
    let client = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(client) => client,
        Err(err) => {
            eprintln!("soma-traffic: cannot build an HTTP client: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "soma-traffic: up to {} requests to {} for up to {} s ({} in flight, {})",
        options.requests,
        options.url,
        options.duration.as_secs(),
        options.concurrency,
        if options.rate > 0.0 {
            format!("{}/s", options.rate)
        } else {
            "unpaced".to_owned()
        }
    );
    let shared = Arc::new(Shared {
        client,
        token: Mutex::new(String::new()),
        last_workflow: Mutex::new(None),
        stats: Mutex::new(Stats::default()),
        next: AtomicU64::new(0),
        started: Instant::now(),
        options,
    });
    // The first request of the run gets the token.
    shared.next.fetch_add(1, Ordering::Relaxed);
    shared.send(Scenario::Login, 0).await;

    let mut workers = JoinSet::new();
    for _ in 0..shared.options.concurrency {
        workers.spawn(Arc::clone(&shared).worker());
    }
    let progress = {
        let shared = Arc::clone(&shared);
        let every = shared.options.progress;
        tokio::spawn(async move {
            if every.is_zero() {
                return;
            }
            let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
            loop {
                ticks.tick().await;
                eprintln!("{}", shared.progress_line());
            }
        })
    };
    // In-flight requests get their timeout past the deadline, no more.
    let hard_stop = shared.deadline() + REQUEST_TIMEOUT;
    tokio::select! {
        () = async { while workers.join_next().await.is_some() {} } => {}
        () = stop_signal() => eprintln!("soma-traffic: stopping (signal)"),
        () = tokio::time::sleep_until(hard_stop) => eprintln!("soma-traffic: stopping (deadline)"),
    }
    workers.abort_all();
    progress.abort();
    print!("{}", shared.summary());
    let stats = lock(&shared.stats);
    if stats.by_status.is_empty() {
        eprintln!(
            "soma-traffic: no response at all: is the gateway at {}?",
            shared.options.url
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
