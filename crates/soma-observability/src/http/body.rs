//! The response body, which records the request when it ends or is dropped.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::BoxError;
use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::panic::{panic_message, report_panic, PanicSite};
use super::state::RequestState;

pin_project! {
    /// The response body of a request measured by [`HttpTelemetry`](super::HttpTelemetry).
    ///
    /// It counts the bytes sent and records the request's metrics and ends its span when the
    /// body ends, or when it is dropped (the client went away). A body that panics while it
    /// streams ends with an error, so the response is aborted rather than cut short as if it
    /// were complete (see the [module docs](super#panics)).
    pub struct ResponseBody<B> {
        #[pin]
        inner: Inner<B>,
        state: Option<Box<RequestState>>,
        catch_panic: bool,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        /// The application's body.
        Body { #[pin] body: B },
        /// No body: the 500 that replaces a panicked handler, or a body that panicked.
        Empty,
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(body: B, mut state: Option<Box<RequestState>>, catch_panic: bool) -> Self
    where
        B: Body,
    {
        if let Some(state) = state.as_mut().filter(|_| body.is_end_stream()) {
            state.body_ended();
        }
        Self {
            inner: Inner::Body { body },
            state,
            catch_panic,
        }
    }

    /// An empty body that records `state` when it is sent or dropped.
    pub(crate) fn empty(state: Option<Box<RequestState>>) -> Self {
        Self {
            inner: Inner::Empty,
            state,
            catch_panic: true,
        }
    }
}

/// The error a body that panicked ends with.
#[derive(Debug)]
struct BodyPanicked(String);

impl std::fmt::Display for BodyPanicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the response body panicked: {}", self.0)
    }
}

impl std::error::Error for BodyPanicked {}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let polled = match this.inner.as_mut().project() {
            InnerProj::Empty => Ok(Poll::Ready(None)),
            InnerProj::Body { body } => {
                // A finished body runs no more application code: no context to make current.
                let _attached = if body.is_end_stream() {
                    None
                } else {
                    this.state.as_deref().and_then(RequestState::attach_context)
                };
                std::panic::catch_unwind(AssertUnwindSafe(|| body.poll_frame(cx)))
            }
        };
        let polled = match polled {
            Ok(polled) => polled,
            Err(payload) => {
                let message = panic_message(payload.as_ref()).to_owned();
                match this.state.take() {
                    // Recorded as the state drops.
                    Some(mut state) => state.panicked(&message, PanicSite::Body),
                    None => report_panic(&message, PanicSite::Body),
                }
                if !*this.catch_panic {
                    std::panic::resume_unwind(payload);
                }
                // Never poll the panicked body again.
                this.inner.set(Inner::Empty);
                return Poll::Ready(Some(Err(Box::new(BodyPanicked(message)))));
            }
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(state) = this.state.as_mut() {
                    if let Some(data) = frame.data_ref() {
                        state.add_response_bytes(data.remaining());
                    }
                    // The server may drop a body that says it has ended without polling it again.
                    if let InnerProj::Body { body } = this.inner.as_mut().project() {
                        if body.is_end_stream() {
                            state.body_ended();
                        }
                    }
                }
            }
            // End of body: record now rather than when the connection drops it.
            Poll::Ready(None) => {
                if let Some(mut state) = this.state.take() {
                    state.body_ended();
                }
            }
            // A body that fails stops before its end (recorded as aborted).
            Poll::Ready(Some(Err(_))) => drop(this.state.take()),
            Poll::Pending => {}
        }
        polled.map(|frame| frame.map(|frame| frame.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Body { body } => body.is_end_stream(),
            Inner::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Body { body } => body.size_hint(),
            Inner::Empty => SizeHint::with_exact(0),
        }
    }
}
