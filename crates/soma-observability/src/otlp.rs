//! What the OTLP exporters of traces, logs and pushed metrics share: the transport (gRPC or
//! HTTP/protobuf), endpoint, headers (gRPC metadata), timeout and compression of an
//! [`OtlpConfig`], the runtime a gRPC exporter's connection runs on, and the counting of export
//! outcomes.
//!
//! Every OTLP exporter of the crate is built by [`build_exporter!`], which hands the
//! transport's builder to [`grpc`] or [`http`]: settings that apply to every export (TLS, for
//! instance) are added there, once for the three signals.

// Without `otlp` (or `grpc`) the helpers below are compiled but never used.
#![cfg_attr(not(feature = "grpc"), allow(dead_code, unused_imports))]

use std::collections::BTreeMap;

use opentelemetry::metrics::Counter;
use opentelemetry::KeyValue;
#[cfg(feature = "grpc")]
use opentelemetry_otlp::WithTonicConfig;
#[cfg(feature = "otlp")]
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;

use crate::config::{Compression, ExporterKind, OtlpConfig, Protocol};
use crate::error::{ConfigError, SetupError, Signal};

/// The `error.type` of a failed export, on the `otel.sdk.exporter.*.exported` counters.
pub(crate) const EXPORT_FAILED: &str = "export_failed";

/// Counts `n` items handed to an exporter on `counter`, with `error.type` when `result` failed.
pub(crate) fn count_export(counter: &Counter<u64>, n: usize, result: &OTelSdkResult) {
    let n = u64::try_from(n).unwrap_or(u64::MAX);
    if result.is_ok() {
        counter.add(n, &[]);
    } else {
        counter.add(n, &[KeyValue::new("error.type", EXPORT_FAILED)]);
    }
}

/// Builds one signal's OTLP exporter with the settings of an [`OtlpConfig`].
///
/// `build_exporter!(builder, otlp, signal, runtime)`: `builder` is the signal's
/// `opentelemetry_otlp::*Exporter::builder()` (with any signal-specific setting already
/// applied), `otlp` a `&OtlpConfig`, `signal` the [`Signal`] named in errors, and `runtime`
/// `Some(thread name)` to run a gRPC exporter's connection on a one-thread runtime of its own
/// ([`ExportRuntime`]) or `None` for the caller's runtime. Evaluates to
/// `Result<(exporter, Option<ExportRuntime>), SetupError>`.
#[cfg_attr(not(feature = "otlp"), allow(unused_macros))]
macro_rules! build_exporter {
    ($builder:expr, $otlp:expr, $signal:expr, $runtime:expr) => {{
        let otlp: &$crate::config::OtlpConfig = $otlp;
        let signal: $crate::error::Signal = $signal;
        let runtime: Option<&'static str> = $runtime;
        (|| {
            $crate::otlp::require_runtime_for_grpc(otlp, signal)?;
            let built = match otlp.protocol {
                #[cfg(not(feature = "grpc"))]
                $crate::config::Protocol::Grpc => {
                    let _ = runtime;
                    return Err($crate::error::SetupError::from(
                        $crate::features::grpc_disabled(signal),
                    ));
                }
                #[cfg(feature = "grpc")]
                $crate::config::Protocol::Grpc => {
                    let runtime = runtime.and_then($crate::otlp::ExportRuntime::new);
                    let _entered = runtime
                        .as_ref()
                        .and_then($crate::otlp::ExportRuntime::enter);
                    $crate::otlp::grpc(
                        $crate::tls::tonic($builder.with_tonic(), otlp.tls(), signal)?,
                        otlp,
                    )?
                    .build()
                    .map(|exporter| (exporter, runtime))
                }
                $crate::config::Protocol::HttpProtobuf => $crate::otlp::http(
                    $crate::tls::http($builder.with_http(), otlp.tls(), otlp.timeout, signal)?,
                    otlp,
                )
                .build()
                .map(|exporter| (exporter, None::<$crate::otlp::ExportRuntime>)),
            };
            built.map_err(|source| $crate::error::SetupError::Exporter { signal, source })
        })()
    }};
}
pub(crate) use build_exporter;

/// The gRPC transport's settings: endpoint, timeout, headers as metadata, compression.
#[cfg(feature = "grpc")]
pub(crate) fn grpc<B: WithExportConfig + WithTonicConfig>(
    builder: B,
    otlp: &OtlpConfig,
) -> Result<B, ConfigError> {
    let builder = builder
        .with_endpoint(otlp.endpoint.clone())
        .with_timeout(otlp.timeout)
        .with_metadata(metadata(&otlp.headers)?);
    Ok(match otlp.compression {
        Compression::Gzip => builder.with_compression(opentelemetry_otlp::Compression::Gzip),
        Compression::None => builder,
    })
}

/// The HTTP/protobuf transport's settings: endpoint, timeout, headers, compression.
#[cfg(feature = "otlp")]
pub(crate) fn http<B: WithExportConfig + WithHttpConfig>(builder: B, otlp: &OtlpConfig) -> B {
    let builder = builder
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(otlp.endpoint.clone())
        .with_timeout(otlp.timeout)
        .with_headers(otlp.headers.clone().into_iter().collect());
    match otlp.compression {
        Compression::Gzip => builder.with_compression(opentelemetry_otlp::Compression::Gzip),
        Compression::None => builder,
    }
}

/// Fails early, with a clear error, where the gRPC exporter would panic without a runtime.
pub(crate) fn require_runtime_for_grpc(
    otlp: &OtlpConfig,
    signal: Signal,
) -> Result<(), SetupError> {
    if crate::features::GRPC
        && otlp.exporter == ExporterKind::Otlp
        && otlp.protocol == Protocol::Grpc
        && tokio::runtime::Handle::try_current().is_err()
    {
        return Err(SetupError::NoRuntime { signal });
    }
    Ok(())
}

/// OTLP headers as gRPC metadata.
#[cfg(feature = "grpc")]
pub(crate) fn metadata(
    headers: &BTreeMap<String, String>,
) -> Result<tonic::metadata::MetadataMap, ConfigError> {
    let mut map = tonic::metadata::MetadataMap::new();
    for (key, value) in headers {
        let invalid = || ConfigError::InvalidValue {
            setting: "OTLP headers",
            reason: format!("{key:?} is not a valid gRPC metadata key/value pair"),
        };
        let key = tonic::metadata::MetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes())
            .map_err(|_| invalid())?;
        let value = value.parse().map_err(|_| invalid())?;
        map.insert(key, value);
    }
    Ok(map)
}

/// A one-worker tokio runtime for a gRPC exporter's connection (tonic's buffer worker and the
/// HTTP/2 connection task), rather than the application's: on a busy server the application's
/// runtime has hundreds of request tasks ready, every hop of an export waited behind them, and
/// exports slowed until the queue overflowed (at 1 000 connections on two cores, 8 000 spans/s
/// were exported and 80 % were dropped). On its own thread the export gets its fair share of
/// the CPU from the operating system instead.
///
/// Shut down in the background when dropped, from whatever thread that is.
#[derive(Debug)]
pub(crate) struct ExportRuntime(Option<tokio::runtime::Runtime>);

impl ExportRuntime {
    /// `None` (the exporter then uses the caller's runtime) if the thread cannot be started.
    pub(crate) fn new(thread_name: &'static str) -> Option<Self> {
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(thread_name)
            .enable_all()
            .build()
        {
            Ok(runtime) => Some(Self(Some(runtime))),
            Err(err) => {
                tracing::warn!(error = %err, thread = thread_name, "cannot start the export thread; exporting from the application's runtime");
                None
            }
        }
    }

    pub(crate) fn enter(&self) -> Option<tokio::runtime::EnterGuard<'_>> {
        self.0.as_ref().map(tokio::runtime::Runtime::enter)
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs `future` on this thread until it completes, or until `deadline` passes (then `None`:
/// the future is dropped unfinished, which cancels a gRPC request). The exporters do their I/O
/// elsewhere: the gRPC one on its runtime, the HTTP one on reqwest's blocking client, whose own
/// timeout bounds a poll.
pub(crate) fn block_on<F: std::future::Future>(
    future: F,
    deadline: Option<std::time::Instant>,
) -> Option<F::Output> {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
        match deadline {
            None => std::thread::park(),
            Some(deadline) => {
                let now = std::time::Instant::now();
                if now >= deadline {
                    return None;
                }
                std::thread::park_timeout(deadline - now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "grpc")]
    #[test]
    fn headers_that_are_not_grpc_metadata_are_config_errors() {
        let mut headers = BTreeMap::new();
        headers.insert("API-Key".to_owned(), "secret".to_owned());
        let map = metadata(&headers).unwrap();
        assert_eq!(map.get("api-key").unwrap(), "secret");
        headers.insert("bad key".to_owned(), "x".to_owned());
        let err = metadata(&headers).unwrap_err();
        assert!(err.to_string().contains("\"bad key\""), "{err}");
    }
}
