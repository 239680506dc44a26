//! The one module that sets process-global state.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;

use crate::error::SetupError;
use crate::guard::ObservabilityGuard;
use crate::parts::ObservabilityParts;

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs `parts` as the global providers, propagator and `tracing` subscriber, and
/// instruments `router`.
pub(crate) fn install<S>(
    parts: ObservabilityParts,
    router: Router<S>,
) -> Result<(Router<S>, ObservabilityGuard), SetupError>
where
    S: Clone + Send + Sync + 'static,
{
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return Err(SetupError::AlreadyInstalled);
    }
    let installed = (|| {
        let router = parts.instrument(router)?;
        parts.spawn_metrics_listener()?;
        tracing::subscriber::set_global_default(parts.subscriber())
            .map_err(|_| SetupError::SubscriberAlreadySet)?;
        crate::subscriber::install_panic_hook();
        Ok(router)
    })();
    let router = match installed {
        Ok(router) => router,
        Err(err) => {
            INSTALLED.store(false, Ordering::Release);
            return Err(err);
        }
    };
    opentelemetry::global::set_meter_provider(parts.seconds_buckets_provider());
    // Instruments from `get_meter` made before this point record into the provider from now on.
    crate::deferred::bind(parts.seconds_buckets_provider());
    if let Some(provider) = &parts.tracer_provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    #[cfg(feature = "client")]
    crate::client::install_headers(
        std::sync::Arc::clone(&parts.client_headers.0),
        parts.client_headers.1,
    );
    opentelemetry::global::set_text_map_propagator(parts.propagator.clone());
    for note in &parts.startup_notes {
        tracing::info!("{note}");
    }
    Ok((router, parts.into_guard()))
}
