//! The response body, which records the request when it ends or is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::state::RequestState;

pin_project! {
    /// The response body of a request measured by [`HttpTelemetry`](super::HttpTelemetry).
    ///
    /// It counts the bytes sent and records the request's metrics and ends its span when the
    /// body ends, or when it is dropped (the client went away).
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        state: Option<RequestState>,
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, state: Option<RequestState>) -> Self {
        Self { inner, state }
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = if this.inner.is_end_stream() {
            // A finished body runs no more application code: no context to make current.
            this.inner.poll_frame(cx)
        } else {
            let _attached = this.state.as_ref().and_then(RequestState::attach_context);
            this.inner.poll_frame(cx)
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(state), Some(data)) = (this.state.as_mut(), frame.data_ref()) {
                    state.add_response_bytes(data.remaining());
                }
            }
            // End of body or an error: record now rather than when the connection drops it.
            Poll::Ready(None | Some(Err(_))) => drop(this.state.take()),
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
