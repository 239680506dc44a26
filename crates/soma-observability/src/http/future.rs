//! The response future.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::body::ResponseBody;
use super::panic::{panic_message, report_panic, PanicSite};
use super::state::RequestState;

pin_project! {
    /// The future returned by [`HttpTelemetry`](super::HttpTelemetry).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        state: Option<Box<RequestState>>,
        catch_panic: bool,
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
    pub(crate) fn tracked(inner: F, state: Box<RequestState>, catch_panic: bool) -> Self {
        Self {
            inner,
            state: Some(state),
            catch_panic,
        }
    }

    pub(crate) fn untracked(inner: F, catch_panic: bool) -> Self {
        Self {
            inner,
            state: None,
            catch_panic,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = {
            let _attached = this.state.as_deref().and_then(RequestState::attach_context);
            let inner = this.inner;
            std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx)))
        };
        let result = match polled {
            Ok(Poll::Ready(result)) => result,
            Ok(Poll::Pending) => return Poll::Pending,
            Err(payload) => {
                let message = panic_message(payload.as_ref()).to_owned();
                let mut state = this.state.take();
                if !*this.catch_panic {
                    match state.as_mut() {
                        Some(state) => state.panicked(&message, PanicSite::Handler),
                        None => report_panic(&message, PanicSite::Handler),
                    }
                    drop(state); // recorded before the panic goes on to the server
                    std::panic::resume_unwind(payload);
                }
                // The panicked future is never polled again: it is finished.
                let mut response = Response::new(());
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                match state.as_mut() {
                    Some(state) => {
                        state.responded(&mut response);
                        state.panicked(&message, PanicSite::Handler);
                    }
                    None => report_panic(&message, PanicSite::Handler),
                }
                return Poll::Ready(Ok(response.map(|()| ResponseBody::empty(state))));
            }
        };
        let mut state = this.state.take();
        let catch_panic = *this.catch_panic;
        Poll::Ready(match result {
            Ok(mut response) => {
                if let Some(state) = &mut state {
                    state.responded(&mut response);
                    state.expect_body(&response);
                }
                Ok(response.map(|body| ResponseBody::new(body, state, catch_panic)))
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
