//! The response future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::Response;
use pin_project_lite::pin_project;

use super::body::ResponseBody;
use super::state::RequestState;

pin_project! {
    /// The future returned by [`HttpTelemetry`](super::HttpTelemetry).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        state: Option<RequestState>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("tracked", &self.state.is_some())
            .finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn tracked(inner: F, state: RequestState) -> Self {
        Self {
            inner,
            state: Some(state),
        }
    }

    pub(crate) fn untracked(inner: F) -> Self {
        Self { inner, state: None }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _attached = this.state.as_ref().and_then(RequestState::attach_context);
            match this.inner.poll(cx) {
                Poll::Ready(result) => result,
                Poll::Pending => return Poll::Pending,
            }
        };
        let mut state = this.state.take();
        Poll::Ready(match result {
            Ok(mut response) => {
                if let Some(state) = &mut state {
                    state.responded(&mut response);
                }
                Ok(response.map(|body| ResponseBody::new(body, state)))
            }
            Err(err) => {
                if let Some(state) = &mut state {
                    state.failed::<E>();
                }
                Err(err)
            }
        })
    }
}
