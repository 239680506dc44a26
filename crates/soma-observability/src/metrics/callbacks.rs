//! Observable instruments' callbacks, run so that a bad one costs only its own values.
//!
//! The SDK runs every callback of an observable instrument at every collection (each scrape of
//! `/metrics`, each OTLP metrics push) while it holds its pipeline's lock, the lock that creating
//! an instrument needs too. A callback is the team's own code, so each one runs here on a thread
//! of its own (started at its first collection and parked between collections, not one thread
//! per call), and the collection waits for it at most [`CALLBACK_TIMEOUT`]:
//! - a callback that **panics** loses its values for that collection; the panic never reaches the
//!   SDK's lock, so later collections are whole;
//! - a callback that **blocks** loses its values once the timeout passes; until that call returns,
//!   later collections skip the callback at once instead of starting it again;
//! - a callback that **creates an instrument** waits for the collection's lock: the collection
//!   gives up on it after the timeout and, once the instrument exists, the callback works.
//!
//! Each failure is counted on `soma.metrics.callback.failures` (`instrument`: the instrument's
//! name, `reason`: `panic`, `timeout` or `no_thread`) and said once per instrument and reason in
//! the log. The callback's observations are replayed into the SDK only when it returned in time.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry::metrics::{AsyncInstrument, Callback, Counter, Meter};
use opentelemetry::KeyValue;

/// How long a collection waits for one callback.
pub(crate) const CALLBACK_TIMEOUT: Duration = Duration::from_secs(1);

/// The counter of callback failures.
pub(crate) const FAILURES: &str = "soma.metrics.callback.failures";

/// Why a callback's values were lost.
#[derive(Clone, Copy, Debug)]
enum Reason {
    Panic,
    Timeout,
    NoThread,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Panic => "panic",
            Reason::Timeout => "timeout",
            Reason::NoThread => "no_thread",
        }
    }
}

/// The state of one call, shared by the collection and the callback's thread.
const RUNNING: u8 = 0;
const DONE: u8 = 1;
const LATE: u8 = 2;

/// A callback, shared with the thread that runs it.
type SharedCallback<T> = Arc<dyn Fn(&dyn AsyncInstrument<T>) + Send + Sync>;

/// One observation a callback made: replayed into the SDK when the callback returned in time.
type Observations<T> = Vec<(T, Vec<KeyValue>)>;

/// What a callback's thread sends back for one call: its observations, or its panic's message.
type Outcome<T> = Result<Observations<T>, String>;

/// One call handed to a callback's thread: the call's state and where to send its outcome.
type Call<T> = (Arc<AtomicU8>, mpsc::SyncSender<Outcome<T>>);

/// The counter every guarded callback of `meter` reports to. Create it with the instrument, never
/// during a collection (creating an instrument then would wait for the collection's lock).
pub(crate) fn failures_counter(meter: &Meter) -> Counter<u64> {
    meter
        .u64_counter(FAILURES)
        .with_description(
            "Observable instrument callbacks whose values a collection lost: they panicked, \
             did not return in time, or no thread could run them",
        )
        .build()
}

/// Wraps `callback` of the instrument `instrument` (see the module docs).
pub(crate) fn guard<T>(
    callback: Callback<T>,
    instrument: &str,
    failures: Counter<u64>,
) -> impl Fn(&dyn AsyncInstrument<T>) + Send + Sync + 'static
where
    T: Copy + Send + Sync + 'static,
{
    let guarded = Guarded {
        callback: Arc::from(callback),
        instrument: Arc::from(instrument),
        failures,
        late_calls: Arc::new(AtomicUsize::new(0)),
        thread: Mutex::new(None),
        warned: [
            AtomicBool::new(false),
            AtomicBool::new(false),
            AtomicBool::new(false),
        ],
    };
    move |observer: &dyn AsyncInstrument<T>| guarded.call(observer)
}

struct Guarded<T> {
    callback: SharedCallback<T>,
    instrument: Arc<str>,
    failures: Counter<u64>,
    /// Calls that timed out and still run: while there is one, collections skip the callback.
    late_calls: Arc<AtomicUsize>,
    /// The callback's thread, started at the first call: it runs one call at a time.
    thread: Mutex<Option<mpsc::Sender<Call<T>>>>,
    /// Whether each [`Reason`] was said in the log already.
    warned: [AtomicBool; 3],
}

impl<T> Guarded<T>
where
    T: Copy + Send + Sync + 'static,
{
    fn call(&self, observer: &dyn AsyncInstrument<T>) {
        if self.late_calls.load(Ordering::Acquire) > 0 {
            self.fail(Reason::Timeout, "its previous call has not returned yet");
            return;
        }
        let state = Arc::new(AtomicU8::new(RUNNING));
        let (tx, rx) = mpsc::sync_channel::<Outcome<T>>(1);
        if let Err(err) = self.hand_over((Arc::clone(&state), tx)) {
            self.fail(Reason::NoThread, &err.to_string());
            return;
        }
        match rx.recv_timeout(CALLBACK_TIMEOUT) {
            Ok(Ok(observations)) => {
                for (value, attributes) in observations {
                    observer.observe(value, &attributes);
                }
            }
            Ok(Err(message)) => self.fail(Reason::Panic, &message),
            Err(_) => {
                self.late_calls.fetch_add(1, Ordering::AcqRel);
                if state
                    .compare_exchange(RUNNING, LATE, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    // It returned just now: nothing is left running.
                    self.late_calls.fetch_sub(1, Ordering::AcqRel);
                }
                self.fail(
                    Reason::Timeout,
                    &format!("it did not return within {CALLBACK_TIMEOUT:?}"),
                );
            }
        }
    }

    /// Hands `call` to the callback's thread, starting it if it is not running.
    fn hand_over(&self, call: Call<T>) -> std::io::Result<()> {
        let mut thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner);
        let call = match thread.as_ref() {
            Some(calls) => match calls.send(call) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(call)) => call,
            },
            None => call,
        };
        let (calls, queue) = mpsc::channel::<Call<T>>();
        let callback = Arc::clone(&self.callback);
        let late_calls = Arc::clone(&self.late_calls);
        std::thread::Builder::new()
            .name("otel-metric-callback".to_owned())
            .spawn(move || {
                for (state, reply) in queue {
                    let outcome = run(callback.as_ref());
                    if state.swap(DONE, Ordering::AcqRel) == LATE {
                        late_calls.fetch_sub(1, Ordering::AcqRel);
                    }
                    let _ = reply.send(outcome);
                }
            })?;
        let sent = calls.send(call);
        *thread = Some(calls);
        sent.map_err(|_| std::io::Error::other("the callback's thread stopped at once"))
    }

    fn fail(&self, reason: Reason, detail: &str) {
        self.failures.add(
            1,
            &[
                KeyValue::new("instrument", self.instrument.to_string()),
                KeyValue::new("reason", reason.as_str()),
            ],
        );
        if !self.warned[reason as usize].swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "soma_observability::metrics",
                instrument = %self.instrument,
                reason = reason.as_str(),
                detail,
                "an observable instrument's callback failed: its values are left out of this \
                 collection (said once per instrument and reason; counted on {FAILURES})"
            );
        }
    }
}

/// Runs `callback` against a recorder: its observations, or its panic's message.
fn run<T>(callback: &(dyn Fn(&dyn AsyncInstrument<T>) + Send + Sync)) -> Outcome<T>
where
    T: Copy + Send + Sync + 'static,
{
    let recorder = Recorder(Mutex::new(Vec::new()));
    match catch_unwind(AssertUnwindSafe(|| callback(&recorder))) {
        Ok(()) => Ok(recorder
            .0
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)),
        Err(payload) => Err(payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned())),
    }
}

/// What a guarded callback observes into.
struct Recorder<T>(Mutex<Observations<T>>);

impl<T: Copy + Send + Sync> AsyncInstrument<T> for Recorder<T> {
    fn observe(&self, measurement: T, attributes: &[KeyValue]) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((measurement, attributes.to_vec()));
    }
}
