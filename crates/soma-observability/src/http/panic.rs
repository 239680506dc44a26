//! What a panic in a handler or a response body reports (see [Panics](super#panics)).

/// `error.type` of a request whose handler or response body panicked.
pub(crate) const PANIC_ERROR_TYPE: &str = "panic";

/// Where a request's code panicked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PanicSite {
    /// The handler (the inner service's future), before a response existed.
    Handler,
    /// The response body, after the status and headers were sent.
    Body,
}

/// Emits the ERROR event of a panic, in the current context (the request's, when traced).
pub(crate) fn report_panic(message: &str, site: PanicSite) {
    match site {
        PanicSite::Handler => tracing::event!(
            target: PANIC_TARGET,
            tracing::Level::ERROR,
            { exception.message = message, "error.type" = PANIC_ERROR_TYPE },
            "the request handler panicked"
        ),
        PanicSite::Body => tracing::event!(
            target: PANIC_TARGET,
            tracing::Level::ERROR,
            { exception.message = message, "error.type" = PANIC_ERROR_TYPE },
            "the response body panicked while streaming"
        ),
    }
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&'static str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "a panic with a non-string payload"
    }
}

/// The `tracing` target of the ERROR event a panic produces: not this crate's own target, so
/// that the stdout rate limit on the SDK's and this crate's chatter never hides a panic.
pub(crate) const PANIC_TARGET: &str = "panic";
