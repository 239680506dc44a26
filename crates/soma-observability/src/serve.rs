//! The serve loop's shutdown: the signal, and a drain that always ends (explained on
//! [`Draining`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// How many drains have closed their connections so far: a connection is closed by the first
/// close after it was accepted.
fn closes() -> &'static watch::Sender<u64> {
    static CLOSES: OnceLock<watch::Sender<u64>> = OnceLock::new();
    CLOSES.get_or_init(|| watch::channel(0).0)
}

/// Connections accepted through a [`Draining`] listener and still open.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Resolves when the process receives SIGTERM (Kubernetes) or SIGINT (Ctrl-C); use it with
/// `axum::serve(Draining::new(listener), app).with_graceful_shutdown(shutdown_signal())`.
///
/// It also starts the drain deadline (`SOMA_SHUTDOWN_DRAIN_TIMEOUT`, see [`Draining`]): once it
/// passes, the connections of [`Draining`] listeners still open are closed. An invalid `SOMA_SHUTDOWN_DRAIN_TIMEOUT` is reported by setup; here it is
/// warned about and the default is used.
///
/// If a signal handler cannot be installed, that signal is ignored and a warning is logged;
/// the other still works.
pub async fn shutdown_signal() {
    let drain = crate::config::shutdown_drain_timeout(&|name| std::env::var(name).ok())
        .unwrap_or_else(|err| {
            tracing::warn!(error = %err, "using the default drain timeout");
            crate::config::DEFAULT_SHUTDOWN_DRAIN_TIMEOUT
        });
    shutdown_on(os_signal(), drain).await;
}

/// Resolves when `trigger` does, and starts a drain deadline of `drain` (see [`Draining`]):
/// [`shutdown_signal`] with a trigger and a timeout of your own.
pub async fn shutdown_on(trigger: impl Future<Output = ()>, drain: Duration) {
    trigger.await;
    tracing::info!(
        drain = ?drain,
        "shutting down: requests in flight have {drain:?} to finish"
    );
    let close = closes().borrow().wrapping_add(1);
    let started = std::thread::Builder::new()
        .name("drain-deadline".to_owned())
        .spawn(move || {
            std::thread::sleep(drain);
            close_connections(close);
        });
    if let Err(err) = started {
        tracing::warn!(error = %err, "cannot start the drain deadline: the drain is unbounded");
    }
}

/// Closes every connection accepted before close number `close`.
fn close_connections(close: u64) {
    let open = OPEN.load(Ordering::Acquire);
    if open > 0 {
        tracing::warn!(
            connections = open,
            "the drain deadline passed with {open} connection(s) still open: closing them"
        );
    }
    closes().send_if_modified(|closes| {
        let later = *closes < close;
        if later {
            *closes = close;
        }
        later
    });
}

async fn os_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT, shutting down"),
        () = terminate => tracing::info!("received SIGTERM, shutting down"),
    }
}

/// A listener whose connections the drain deadline closes; wraps any axum listener
/// (`TcpListener`, `UnixListener`, a TLS listener).
///
/// axum's graceful shutdown waits for every connection to finish, without a bound: one client
/// that sends half a request, keeps a stream open or reads a large response slowly keeps the
/// process from exiting until Kubernetes kills it, and every span and log record still queued is
/// lost. So [`shutdown_signal`] also starts a **drain deadline**
/// (`SOMA_SHUTDOWN_DRAIN_TIMEOUT`, 15 s by default): once it passes, every connection accepted
/// through a [`Draining`] listener that is still open is closed (reads end, writes fail), axum's
/// graceful shutdown returns, and the guard flushes telemetry within its own timeout (10 s by
/// default). Keep the drain timeout plus the guard's timeout under the pod's
/// `terminationGracePeriodSeconds` (30 s by default, minus any `preStop` sleep):
///
/// ```no_run
/// # async fn run(app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
/// use soma_observability::{shutdown_signal, Draining};
///
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8000").await?;
/// axum::serve(Draining::new(listener), app)
///     .with_graceful_shutdown(shutdown_signal())
///     .await?;
/// # Ok(()) }
/// ```
///
/// With a plain `TcpListener` the drain is axum's alone: unbounded.
#[derive(Debug)]
pub struct Draining<L>(L);

impl<L> Draining<L> {
    /// Wraps `listener`.
    pub fn new(listener: L) -> Self {
        Self(listener)
    }

    /// The listener inside.
    pub fn into_inner(self) -> L {
        self.0
    }
}

impl<L: Listener> Listener for Draining<L> {
    type Io = DrainingIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.0.accept().await;
        (DrainingIo::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection of a [`Draining`] listener: once the drain deadline passed, reads end and
/// writes fail, so the server lets it go.
pub struct DrainingIo<I> {
    io: I,
    /// Resolves at the first close after this connection was accepted.
    closed: Pin<Box<dyn Future<Output = ()> + Send>>,
    is_closed: bool,
}

impl<I> std::fmt::Debug for DrainingIo<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrainingIo")
            .field("closed", &self.is_closed)
            .finish_non_exhaustive()
    }
}

impl<I> DrainingIo<I> {
    fn new(io: I) -> Self {
        OPEN.fetch_add(1, Ordering::AcqRel);
        let mut receiver = closes().subscribe();
        let accepted_after = *receiver.borrow_and_update();
        let closed = Box::pin(async move {
            // An error means the sender is gone: it lives as long as the process.
            let _ = receiver.wait_for(|n| *n > accepted_after).await;
        });
        Self {
            io,
            closed,
            is_closed: false,
        }
    }

    /// Whether the drain deadline passed; registers the task to be woken when it does.
    fn poll_closed(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.is_closed && self.closed.as_mut().poll(cx).is_ready() {
            self.is_closed = true;
        }
        self.is_closed
    }
}

impl<I> Drop for DrainingIo<I> {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::AcqRel);
    }
}

fn drained() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "closed at the shutdown's drain deadline",
    )
}

impl<I: AsyncRead + Unpin> AsyncRead for DrainingIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_closed(cx) {
            // End of stream: nothing more is read.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for DrainingIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_closed(cx) {
            return Poll::Ready(Err(drained()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_closed(cx) {
            return Poll::Ready(Err(drained()));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_closed(cx) {
            return Poll::Ready(Err(drained()));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
