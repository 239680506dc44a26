//! [`Exposition`]: everything one scrape of `/metrics` shows, and rendering it: the SDK's
//! metrics (written by [`crate::exposition`]), the process metrics ([`crate::process`]), the
//! tokio runtime metrics ([`crate::runtime`]) and whatever is registered in the `prometheus`
//! registry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry_sdk::metrics::data::ResourceMetrics;
use prometheus::{Encoder, TextEncoder};

use crate::exposition::Format;

/// Everything `/metrics` shows.
#[derive(Clone, Debug)]
pub(crate) struct Exposition {
    pub(crate) registry: prometheus::Registry,
    pub(crate) reader: Arc<opentelemetry_sdk::metrics::ManualReader>,
    pub(crate) process: Arc<crate::process::ProcessMetrics>,
    /// The histograms' exemplars, written in OpenMetrics.
    pub(crate) exemplars: Arc<crate::exemplars::ExemplarStore>,
    /// The tokio runtime that serves the application, when runtime metrics are on.
    pub(crate) runtime: Option<Arc<crate::runtime::RuntimeMetrics>>,
    /// The SDK's collected data, kept between scrapes to reuse its buffers: it holds one
    /// scrape's worth of data points (which every scrape allocates anyway) and makes a
    /// 10 000-series scrape ~25 % faster.
    pub(crate) collected: Arc<Mutex<ResourceMetrics>>,
    /// The previous scrape's length: the next one allocates its text once.
    pub(crate) last_len: Arc<AtomicUsize>,
    /// One scrape renders at a time (they would wait for each other's collection anyway); the
    /// others wait here without holding a thread.
    pub(crate) turn: Arc<tokio::sync::Semaphore>,
    /// Which instruments hit their cardinality limit, and when that was last said.
    pub(crate) overflow: Arc<Overflow>,
}

impl Exposition {
    pub(crate) fn new(
        registry: prometheus::Registry,
        reader: Arc<opentelemetry_sdk::metrics::ManualReader>,
    ) -> Self {
        Self {
            registry,
            reader,
            process: Arc::new(crate::process::ProcessMetrics::new()),
            exemplars: Arc::new(crate::exemplars::ExemplarStore::default()),
            runtime: None,
            collected: Arc::new(Mutex::new(ResourceMetrics::default())),
            last_len: Arc::new(AtomicUsize::new(16 * 1024)),
            turn: Arc::new(tokio::sync::Semaphore::new(1)),
            overflow: Arc::default(),
        }
    }
}

/// Renders every metric family in the Prometheus text format.
pub(crate) fn render(exposition: &Exposition) -> Result<String, prometheus::Error> {
    render_as(exposition, Format::Prometheus)
}

/// Renders every metric family in `format`.
pub(crate) fn render_as(
    exposition: &Exposition,
    format: Format,
) -> Result<String, prometheus::Error> {
    let last_len = exposition.last_len.load(Ordering::Relaxed);
    let mut text = String::with_capacity(last_len + last_len / 8);
    {
        // A scrape that panicked mid-way left nothing that matters: the SDK refills the data.
        let mut collected = exposition
            .collected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        crate::exposition::write(
            &exposition.reader,
            &mut collected,
            &mut text,
            format,
            Some(&exposition.exemplars),
        )
        .map_err(|e| prometheus::Error::Msg(e.to_string()))?;
    }
    exposition.overflow.check(&mut text);
    exposition.process.write(&mut text, format);
    if let Some(runtime) = &exposition.runtime {
        runtime.write(&mut text, format);
    }
    let families = exposition.registry.gather();
    if format == Format::OpenMetrics {
        crate::openmetrics::write_registry(&families, &mut text);
        text.push_str("# EOF\n");
    } else if !families.is_empty() {
        let mut buf = Vec::with_capacity(4 * 1024);
        TextEncoder::new().encode(&families, &mut buf)?;
        text.push_str(&String::from_utf8_lossy(&buf));
    }
    exposition.last_len.store(text.len(), Ordering::Relaxed);
    Ok(text)
}

/// The SDK's cardinality limit: an instrument keeps at most 2 000 attribute sets, and merges
/// the rest into one series labelled `otel_metric_overflow="true"`, silently. Each scrape that
/// shows such series says which families have them (at most once per
/// [`SDK_LOG_INTERVAL`](crate::subscriber::SDK_LOG_INTERVAL) per family) and adds the gauge
/// `soma_metric_overflow_instruments` (only while there are some), which the shipped alert
/// `SomaMetricCardinalityOverflow` watches.
#[derive(Debug, Default)]
pub(crate) struct Overflow {
    said: Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// The label of the SDK's overflow series, as the exposition writes it.
const OVERFLOW_LABEL: &str = "otel_metric_overflow=\"true\"";

impl Overflow {
    /// Looks for overflow series in the SDK's part of `text` and appends the gauge.
    fn check(&self, text: &mut String) {
        if !text.contains(OVERFLOW_LABEL) {
            return;
        }
        let mut families: Vec<&str> = text
            .lines()
            .filter(|line| !line.starts_with('#') && line.contains(OVERFLOW_LABEL))
            .filter_map(|line| line.split(['{', ' ']).next())
            .map(|name| {
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(name)
            })
            .collect();
        families.sort_unstable();
        families.dedup();
        let count = families.len();
        self.say(&families);
        text.push_str(
            "# HELP soma_metric_overflow_instruments Instruments that hit their cardinality limit \
             (2000 attribute sets): their further series are merged into one \
             otel_metric_overflow=true series.\n\
             # TYPE soma_metric_overflow_instruments gauge\n\
             soma_metric_overflow_instruments ",
        );
        text.push_str(itoa::Buffer::new().format(count));
        text.push('\n');
    }

    fn say(&self, families: &[&str]) {
        let now = std::time::Instant::now();
        let mut said = self
            .said
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for family in families {
            let due = said
                .get(*family)
                .is_none_or(|at| now.duration_since(*at) >= crate::subscriber::SDK_LOG_INTERVAL);
            if due {
                said.insert((*family).to_owned(), now);
                tracing::warn!(
                    target: "soma_observability::metrics",
                    family,
                    "{family} hit the SDK's cardinality limit (2000 attribute sets): further \
                     series are merged into one otel_metric_overflow=\"true\" series; an \
                     attribute holds unbounded values (an id, a path, a user input)"
                );
            }
        }
    }
}
