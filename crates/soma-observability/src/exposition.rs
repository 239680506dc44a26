//! The Prometheus text exposition of the SDK's metrics, written straight from its data.
//!
//! The meter provider's reader is a [`ManualReader`]; a scrape collects it and writes each
//! metric family once, with the Prometheus naming rules of the OpenTelemetry compatibility
//! specification (as the `opentelemetry-prometheus` crate applies them, without its double
//! suffixes): dots become underscores, the unit
//! becomes a suffix (`s` → `_seconds`, `By` → `_bytes`, `1` → `_ratio`, `{annotations}` →
//! nothing), monotonic sums get `_total`, every series carries `otel_scope_name` (and
//! `otel_scope_version` when set), and the resource is `target_info`. Writing the text directly
//! avoids building `prometheus` protobuf families and sorting them, which cost ~1.8 µs per series;
//! every line is appended to one buffer, without a per-line allocation, and each attribute key's
//! label name is worked out once per scrape rather than once per data point.

use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};

use crate::exemplars::{Exemplar, ExemplarStore, InstrumentExemplars};

/// A reader shared between the meter provider and the `/metrics` endpoint.
#[derive(Clone, Debug)]
pub(crate) struct SharedReader(pub(crate) Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, _kind: InstrumentKind) -> Temporality {
        Temporality::Cumulative
    }
}

/// The text format a scrape asked for (see [`crate::openmetrics`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// The Prometheus text format 0.0.4, for every client that does not ask for OpenMetrics.
    Prometheus,
    /// OpenMetrics 1.0 text: counters' family names without `_total`, `# UNIT` lines,
    /// `target_info` as an info family, exemplars, and `# EOF` (written by the endpoint).
    OpenMetrics,
}

/// Collects `reader` into `rm` (kept across scrapes, so the SDK refills its buffers instead of
/// allocating new ones) and appends the exposition to `out`.
pub(crate) fn write(
    reader: &ManualReader,
    rm: &mut ResourceMetrics,
    out: &mut String,
    format: Format,
    exemplars: Option<&ExemplarStore>,
) -> OTelSdkResult {
    // Only OpenMetrics can carry exemplars.
    let exemplars = exemplars.filter(|_| format == Format::OpenMetrics);
    reader.collect(rm)?;
    if !rm.resource().is_empty() {
        out.push_str(match format {
            Format::Prometheus => "# HELP target_info Target metadata\n# TYPE target_info gauge\n",
            Format::OpenMetrics => "# HELP target Target metadata\n# TYPE target info\n",
        });
        out.push_str("target_info{");
        let mut attributes: Vec<KeyValue> = rm
            .resource()
            .iter()
            .map(|(key, value)| KeyValue::new(key.clone(), value.clone()))
            .collect();
        attributes.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
        push_attributes(out, || attributes.iter(), &[]);
        out.push_str("} 1\n");
    }
    // Every metric with its family name and its scope's labels, sorted by name (stably: scopes
    // keep their order), so that a family spread over several scopes gets one header.
    let mut metrics = Vec::new();
    for scope_metrics in rm.scope_metrics() {
        let scope = scope_metrics.scope();
        let mut scope_labels = String::new();
        push_label(&mut scope_labels, "otel_scope_name", scope.name());
        if let Some(version) = scope.version() {
            push_label(&mut scope_labels, "otel_scope_version", version);
        }
        let scope_labels = Rc::new(scope_labels);
        for metric in scope_metrics.metrics() {
            let Some((kind, monotonic)) = kind(metric) else {
                continue;
            };
            let name = own_family_avoided(family_name(metric, monotonic), metric.name());
            let exemplars = match (exemplars, kind) {
                (Some(store), "histogram") => store.lookup(scope.name(), metric.name()),
                _ => None,
            };
            metrics.push((name, kind, metric, Rc::clone(&scope_labels), exemplars));
        }
    }
    metrics.sort_by(|a, b| a.0.cmp(&b.0));
    // A family is one instrument (over any number of scopes): another instrument whose name
    // became the same (`a.b` and `a_b`), or the same name with another kind, would write
    // duplicate series or samples under the wrong type. The first one (in name order) is kept.
    let mut keep = vec![true; metrics.len()];
    let mut first = 0;
    for i in 1..metrics.len() {
        let (name, kind, metric, ..) = &metrics[i];
        let (first_name, first_kind, first_metric, ..) = &metrics[first];
        if name != first_name {
            first = i;
        } else if metric.name() != first_metric.name() || kind != first_kind {
            keep[i] = false;
            say_once(
                "dropped",
                metric.name(),
                &format!(
                    "instrument {:?} ({kind}) is left out of /metrics: its Prometheus name \
                     {name} is already instrument {:?}'s ({first_kind}); rename one of them",
                    metric.name(),
                    first_metric.name(),
                ),
            );
        }
    }
    let mut keep = keep.into_iter();
    metrics.retain(|_| keep.next().unwrap_or(true));
    let mut writer = Writer {
        out,
        format,
        labels: String::with_capacity(256),
        names: LabelNames::default(),
        head: String::new(),
        tail: String::new(),
        tail_alone: String::new(),
        bounds: Vec::new(),
        le: Vec::new(),
        exemplars: Vec::new(),
    };
    let mut previous: Option<&str> = None;
    for (name, kind, metric, scope_labels, exemplars) in &metrics {
        if previous != Some(name.as_str()) {
            writer.header(name, metric, kind);
            previous = Some(name);
        }
        writer.metric(name, metric, scope_labels, exemplars.as_ref());
    }
    Ok(())
}

/// The Prometheus type of `metric`, and whether it is a monotonic sum (a counter); `None` for
/// exponential histograms, which Prometheus' classic text format cannot carry.
fn kind(metric: &Metric) -> Option<(&'static str, bool)> {
    macro_rules! kind_of {
        ($data:expr) => {
            match $data {
                MetricData::Sum(sum) if sum.is_monotonic() => Some(("counter", true)),
                MetricData::Gauge(_) | MetricData::Sum(_) => Some(("gauge", false)),
                MetricData::Histogram(_) => Some(("histogram", false)),
                MetricData::ExponentialHistogram(_) => None,
            }
        };
    }
    match metric.data() {
        AggregatedMetrics::F64(data) => kind_of!(data),
        AggregatedMetrics::U64(data) => kind_of!(data),
        AggregatedMetrics::I64(data) => kind_of!(data),
    }
}

/// Writes sample lines, reusing its buffers from one data point to the next.
struct Writer<'a, 'r> {
    out: &'a mut String,
    format: Format,
    /// The current histogram point's labels.
    labels: String,
    /// The label names of the attribute keys, computed once per key rather than per point.
    names: LabelNames<'r>,
    /// The current sum's or gauge's line pieces: `name{`, then after the point's attributes
    /// `,<scope labels>} ` (`tail`), or `<scope labels>} ` when it has none (`tail_alone`).
    head: String,
    tail: String,
    tail_alone: String,
    /// The bucket bounds `le` holds the formatted values of.
    bounds: Vec<f64>,
    le: Vec<String>,
    /// The current histogram point's exemplars, one slot per bucket (empty: none).
    exemplars: Vec<Option<Exemplar>>,
}

impl<'r> Writer<'_, 'r> {
    fn header(&mut self, name: &str, metric: &Metric, kind: &str) {
        let out = &mut *self.out;
        let openmetrics = self.format == Format::OpenMetrics;
        // OpenMetrics names a counter's family without the `_total` of its sample.
        let family = match kind {
            "counter" if openmetrics => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        out.push_str("# HELP ");
        out.push_str(family);
        out.push(' ');
        push_escaped(out, metric.description(), openmetrics);
        out.push_str("\n# TYPE ");
        out.push_str(family);
        out.push(' ');
        out.push_str(kind);
        out.push('\n');
        if openmetrics {
            // A family name that ends with its unit says so; OpenMetrics requires the suffix.
            if let Some(unit) = unit_suffix(metric.unit()) {
                if family
                    .strip_suffix(unit.as_str())
                    .is_some_and(|rest| rest.ends_with('_'))
                {
                    out.push_str("# UNIT ");
                    out.push_str(family);
                    out.push(' ');
                    out.push_str(&unit);
                    out.push('\n');
                }
            }
        }
    }

    fn metric(
        &mut self,
        name: &str,
        metric: &'r Metric,
        scope_labels: &str,
        exemplars: Option<&InstrumentExemplars>,
    ) {
        macro_rules! by_type {
            ($data:expr) => {
                match $data {
                    MetricData::Gauge(gauge) => {
                        self.set_line(name, scope_labels);
                        for point in gauge.data_points() {
                            self.sample(|| point.attributes(), point.value());
                        }
                    }
                    MetricData::Sum(sum) => {
                        self.set_line(name, scope_labels);
                        for point in sum.data_points() {
                            self.sample(|| point.attributes(), point.value());
                        }
                    }
                    MetricData::Histogram(histogram) => {
                        self.names.reserve(HISTOGRAM_LABELS);
                        for point in histogram.data_points() {
                            self.set_labels(|| point.attributes(), scope_labels);
                            self.set_bounds(|| point.bounds());
                            self.exemplars.clear();
                            if let Some(series) =
                                exemplars.and_then(|e| e.series(point.attributes()))
                            {
                                series.by_bucket(&self.bounds, &mut self.exemplars);
                            }
                            self.buckets(name, point.bucket_counts(), point.count());
                            self.line(name, "_sum", point.sum());
                            self.line(name, "_count", point.count());
                        }
                    }
                    // Left out by `kind`.
                    MetricData::ExponentialHistogram(_) => {}
                }
            };
        }
        match metric.data() {
            AggregatedMetrics::F64(data) => by_type!(data),
            AggregatedMetrics::U64(data) => by_type!(data),
            AggregatedMetrics::I64(data) => by_type!(data),
        }
    }

    /// The pieces of a sum's or gauge's lines around each point's attributes.
    fn set_line(&mut self, name: &str, scope_labels: &str) {
        self.names.reserve(SCOPE_LABELS);
        self.head.clear();
        self.head.push_str(name);
        self.head.push('{');
        self.tail.clear();
        self.tail_alone.clear();
        if !scope_labels.is_empty() {
            self.tail.push(',');
            self.tail.push_str(scope_labels);
            self.tail_alone.push_str(scope_labels);
        }
        self.tail.push_str("} ");
        self.tail_alone.push_str("} ");
    }

    /// `name{attributes,scope labels} value` of a sum's or gauge's point (after
    /// [`set_line`](Self::set_line)): the same text as [`set_labels`](Self::set_labels) and
    /// [`line`](Self::line), written straight into the output.
    fn sample<I: Iterator<Item = &'r KeyValue>>(
        &mut self,
        attributes: impl Fn() -> I,
        value: impl Number,
    ) {
        let out = &mut *self.out;
        out.push_str(&self.head);
        if self.names.push(out, attributes) {
            out.push_str(&self.tail);
        } else {
            out.push_str(&self.tail_alone);
        }
        value.push_to(out);
        out.push('\n');
    }

    /// The labels of the next lines: the data point's attributes, then the scope's.
    fn set_labels<I: Iterator<Item = &'r KeyValue>>(
        &mut self,
        attributes: impl Fn() -> I,
        scope_labels: &str,
    ) {
        self.labels.clear();
        self.names.push(&mut self.labels, attributes);
        if !scope_labels.is_empty() {
            if !self.labels.is_empty() {
                self.labels.push(',');
            }
            self.labels.push_str(scope_labels);
        }
    }

    /// Formats the `le` values, unless they are those of the previous point (the usual case).
    fn set_bounds<I: Iterator<Item = f64>>(&mut self, bounds: impl Fn() -> I) {
        if bounds().eq(self.bounds.iter().copied()) {
            return;
        }
        self.bounds.clear();
        self.le.clear();
        for bound in bounds() {
            let mut le = String::new();
            push_bound(&mut le, bound);
            self.bounds.push(bound);
            self.le.push(le);
        }
    }

    /// The cumulative `_bucket` lines, `+Inf` last.
    fn buckets(&mut self, name: &str, mut counts: impl Iterator<Item = u64>, count: u64) {
        let sep = if self.labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        let finite = self.le.iter().map(|le| {
            cumulative += counts.next().unwrap_or(0);
            (le.as_str(), cumulative)
        });
        for (bucket, (le, value)) in finite.chain([("+Inf", count)]).enumerate() {
            let out = &mut *self.out;
            out.push_str(name);
            out.push_str("_bucket{");
            out.push_str(&self.labels);
            out.push_str(sep);
            out.push_str("le=\"");
            out.push_str(le);
            out.push_str("\"} ");
            value.push_to(out);
            if let Some(Some(exemplar)) = self.exemplars.get(bucket) {
                push_exemplar(out, exemplar);
            }
            out.push('\n');
        }
    }

    /// `name{labels} value`, or `name_sum{..}` / `name_count{..}` with a suffix.
    fn line(&mut self, name: &str, suffix: &str, value: impl Number) {
        let out = &mut *self.out;
        out.push_str(name);
        out.push_str(suffix);
        out.push('{');
        out.push_str(&self.labels);
        out.push_str("} ");
        value.push_to(out);
        out.push('\n');
    }
}

/// ` # {trace_id="…",span_id="…"} value timestamp`, the OpenMetrics exemplar of a bucket.
fn push_exemplar(out: &mut String, exemplar: &Exemplar) {
    out.push_str(" # {");
    if let Some((trace_id, span_id)) = exemplar.ids {
        let _ = write!(out, "trace_id=\"{trace_id}\",span_id=\"{span_id}\"");
    }
    out.push_str("} ");
    exemplar.value.push_to(out);
    let time = exemplar
        .time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let _ = write!(out, " {}.{:03}", time.as_secs(), time.subsec_millis());
}

/// Label names the exposition writes itself; an attribute with one of them is shown as
/// `exported_<name>`, as Prometheus does with clashing target labels.
const SCOPE_LABELS: &[&str] = &["otel_scope_name", "otel_scope_version"];
const HISTOGRAM_LABELS: &[&str] = &["otel_scope_name", "otel_scope_version", "le"];

/// A data point's attributes as labels, appended to `out`. Keys that become the same label
/// name once sanitized (`a.b` and `a_b`) would make a duplicate label, which fails the whole
/// scrape: those are merged into one label whose values are joined with `;`, in key order.
/// Names in `reserved` get the `exported_` prefix.
fn push_attributes<'k, I>(out: &mut String, attributes: impl Fn() -> I, reserved: &[&str])
where
    I: Iterator<Item = &'k KeyValue>,
{
    /// Name positions checked for duplicates; more attributes take the merging path directly.
    const CHECKED: usize = 16;
    let start = out.len();
    let mut names = [(0, 0); CHECKED];
    let mut count = 0;
    for kv in attributes() {
        if count > 0 {
            out.push(',');
        }
        let name_start = out.len();
        push_sanitized(out, kv.key.as_str(), NameKind::Label);
        if reserved.contains(&&out[name_start..]) {
            out.insert_str(name_start, EXPORTED);
        }
        if let Some(slot) = names.get_mut(count) {
            *slot = (name_start, out.len());
        }
        count += 1;
        out.push_str("=\"");
        push_value(out, &kv.value);
        out.push('"');
    }
    let names = &names[..count.min(CHECKED)];
    let duplicated = (1..names.len()).any(|i| {
        let name = &out[names[i].0..names[i].1];
        names[..i].iter().any(|&(a, b)| &out[a..b] == name)
    });
    if count > CHECKED || duplicated {
        out.truncate(start);
        push_merged_attributes(out, attributes(), reserved);
    }
}

const EXPORTED: &str = "exported_";

/// The label names of attribute keys by their position in a data point's attributes, for one
/// set of reserved names: the points of an instrument (and usually the instruments of a scope)
/// carry the same keys in the same order, so each key is sanitized, checked against the reserved
/// names and against the other keys once, not once per point. The keys are borrowed from the
/// collected data, which does not change while it is written.
#[derive(Default)]
struct LabelNames<'r> {
    /// The reserved names the entries were made for.
    reserved: &'static [&'static str],
    /// Each position's key and its `name="` (sanitized, `exported_` when reserved).
    names: Vec<(&'r str, String)>,
    /// How many leading entries are known to have distinct names.
    distinct: usize,
}

impl<'r> LabelNames<'r> {
    /// Makes the next points' label names avoid `reserved`.
    fn reserve(&mut self, reserved: &'static [&'static str]) {
        if self.reserved != reserved {
            self.reserved = reserved;
            self.names.clear();
            self.distinct = 0;
        }
    }

    /// A data point's attributes as labels, appended to `out`: what [`push_attributes`] writes
    /// with this set's reserved names. Returns whether it wrote any.
    fn push<I: Iterator<Item = &'r KeyValue>>(
        &mut self,
        out: &mut String,
        attributes: impl Fn() -> I,
    ) -> bool {
        /// Name positions checked for duplicates, as in [`push_attributes`].
        const CHECKED: usize = 16;
        let start = out.len();
        let mut count = 0;
        for kv in attributes() {
            let key = kv.key.as_str();
            let known = self
                .names
                .get(count)
                .is_some_and(|(known, _)| std::ptr::eq(*known, key) || *known == key);
            if !known {
                self.learn(count, key);
            }
            if count > 0 {
                out.push(',');
            }
            if let Some((_, name)) = self.names.get(count) {
                out.push_str(name);
            }
            push_value(out, &kv.value);
            out.push('"');
            count += 1;
        }
        if count > CHECKED || (count > self.distinct && self.duplicated(count)) {
            out.truncate(start);
            push_merged_attributes(out, attributes(), self.reserved);
        }
        count > 0
    }

    /// Makes `key` the entry at `position` (at most one past the last).
    fn learn(&mut self, position: usize, key: &'r str) {
        let mut name = String::with_capacity(key.len() + 2);
        push_sanitized(&mut name, key, NameKind::Label);
        if self.reserved.contains(&name.as_str()) {
            name.insert_str(0, EXPORTED);
        }
        name.push_str("=\"");
        match self.names.get_mut(position) {
            Some(entry) => *entry = (key, name),
            None => self.names.push((key, name)),
        }
        self.distinct = self.distinct.min(position);
    }

    /// Whether two of the first `count` names are the same (and if not, remembers it).
    fn duplicated(&mut self, count: usize) -> bool {
        let names = &self.names[..count.min(self.names.len())];
        let duplicated = (1..names.len()).any(|i| names[..i].iter().any(|n| n.1 == names[i].1));
        if !duplicated {
            self.distinct = count;
        }
        duplicated
    }
}

/// The rare path of [`push_attributes`]: sanitized names sorted, equal ones merged.
fn push_merged_attributes<'k>(
    out: &mut String,
    attributes: impl Iterator<Item = &'k KeyValue>,
    reserved: &[&str],
) {
    let mut labels: Vec<(String, &str, String)> = attributes
        .map(|kv| {
            let mut value = String::new();
            push_value(&mut value, &kv.value);
            let mut name = sanitize(kv.key.as_str(), NameKind::Label);
            if reserved.contains(&name.as_str()) {
                name.insert_str(0, EXPORTED);
            }
            (name, kv.key.as_str(), value)
        })
        .collect();
    labels.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut previous: Option<&str> = None;
    for (name, _, value) in &labels {
        if previous == Some(name.as_str()) {
            say_once(
                "merged",
                name,
                &format!(
                    "attribute keys that all become label {name} on /metrics are merged into \
                     one label, their values joined with `;`"
                ),
            );
            // Inside the open quotes of the previous label with this name.
            out.pop();
            out.push(';');
        } else {
            if previous.is_some() {
                out.push(',');
            }
            out.push_str(name);
            out.push_str("=\"");
        }
        out.push_str(value);
        out.push('"');
        previous = Some(name);
    }
}

/// An attribute value as an escaped label value.
fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => push_escaped(out, s.as_str(), true),
        Value::I64(v) => v.push_to(out),
        Value::F64(v) => v.push_to(out),
        Value::Bool(v) => out.push_str(if *v { "true" } else { "false" }),
        other => push_escaped(out, &other.to_string(), true),
    }
}

/// The families this crate writes itself after the SDK's metrics ([`crate::process`],
/// [`crate::runtime`], `target_info`), by name without `_total`: a user instrument must not
/// write a second `# TYPE` for one of them.
const OWN_FAMILIES: &[&str] = &[
    "target",
    "target_info",
    "process_cpu_seconds",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
    "tokio_runtime_workers",
    "tokio_runtime_alive_tasks",
    "tokio_runtime_global_queue_depth",
    "tokio_runtime_worker_busy_seconds",
    "tokio_runtime_worker_parks",
];

/// `name`, or `exported_<name>` when it is one of [`OWN_FAMILIES`] (said once).
fn own_family_avoided(name: String, instrument: &str) -> String {
    let base = name.strip_suffix("_total").unwrap_or(&name);
    if !OWN_FAMILIES.contains(&base) {
        return name;
    }
    let renamed = format!("{EXPORTED}{name}");
    say_once(
        "renamed",
        instrument,
        &format!(
            "instrument {instrument:?} is shown as {renamed} on /metrics: {name} is a family \
             soma-observability writes itself"
        ),
    );
    renamed
}

/// Warns once per process about `what` happening to `name` (at most 1 000 different ones).
pub(crate) fn say_once(what: &str, name: &str, message: &str) {
    static SAID: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    let mut said = SAID
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if said.len() < 1_000 && said.insert(format!("{what} {name}")) {
        drop(said);
        tracing::warn!(target: "soma_observability::metrics", name, "{message}");
    }
}

/// The Prometheus name: sanitized, with the unit suffix, and `_total` for counters.
fn family_name(metric: &Metric, monotonic: bool) -> String {
    let mut name = sanitize(metric.name(), NameKind::Metric);
    match unit_suffix(metric.unit()) {
        Some(suffix) if !name.ends_with(&suffix) => {
            name.push('_');
            name.push_str(&suffix);
        }
        Some(_) => {}
        None => warn_once_unit_left_out(metric.name(), metric.unit()),
    }
    if monotonic && !name.ends_with("_total") {
        name.push_str("_total");
    }
    name
}

/// Says once per instrument that its unit is not in the naming table and so not in its name
/// (annotations in braces and no unit at all are silent: that is what they mean).
fn warn_once_unit_left_out(name: &str, unit: &str) {
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    if unit.is_empty() || unit.starts_with('{') {
        return;
    }
    let mut warned = WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if warned.iter().any(|warned| warned == name) {
        return;
    }
    warned.push(name.to_owned());
    tracing::warn!(
        instrument = name,
        unit,
        "the unit {unit:?} of {name} has no Prometheus suffix, so /metrics leaves it out of the \
         name; put it in the name (e.g. {name}.{lower}) or in braces ({{{unit}}}) to make that \
         explicit",
        lower = unit.to_ascii_lowercase(),
    );
}

fn unit_suffix(unit: &str) -> Option<String> {
    if unit.is_empty() || unit.starts_with('{') {
        return None;
    }
    let (numerator, denominator) = match unit.split_once('/') {
        Some((n, d)) => (n, Some(d)),
        None => (unit, None),
    };
    let main = match numerator {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" | "B" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "KBy" | "KB" => "kilobytes",
        "MBy" | "MB" => "megabytes",
        "GBy" | "GB" => "gigabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "ratio",
        "%" => "percent",
        _ => return None,
    };
    let per = denominator.and_then(|d| match d {
        "s" => Some("second"),
        "m" => Some("minute"),
        "h" => Some("hour"),
        "d" => Some("day"),
        _ => None,
    });
    Some(match per {
        Some(per) => format!("{main}_per_{per}"),
        None => main.to_owned(),
    })
}

fn push_label(labels: &mut String, key: &str, value: &str) {
    if !labels.is_empty() {
        labels.push(',');
    }
    labels.push_str(key);
    labels.push_str("=\"");
    push_escaped(labels, value, true);
    labels.push('"');
}

/// Appends `text` with `\` and newlines escaped, and `"` too in a label value (and in an
/// OpenMetrics help text).
pub(crate) fn push_escaped(out: &mut String, text: &str, label_value: bool) {
    // The special characters are ASCII, so never part of a multi-byte character: checking the
    // bytes is checking the characters, without decoding them.
    let special = |b: &u8| *b == b'\\' || *b == b'\n' || (label_value && *b == b'"');
    if !text.as_bytes().iter().any(special) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if label_value => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// What a sanitized name is for: only metric names may hold `:`.
#[derive(Clone, Copy)]
enum NameKind {
    Metric,
    Label,
}

/// Metric and label names may hold letters, digits, `_` (and `:` for metric names); anything
/// else becomes `_`, a leading digit gets a `_` in front, and an empty name becomes `_`. A label
/// name that would start with `__` (reserved by Prometheus: `__name__` would replace the metric
/// name and make Prometheus drop the whole scrape) gets the `exported_` prefix (said once).
fn push_sanitized(out: &mut String, name: &str, kind: NameKind) {
    let start = out.len();
    push_sanitized_chars(out, name, kind);
    if matches!(kind, NameKind::Label) && out[start..].starts_with("__") {
        out.insert_str(start, EXPORTED);
        say_once(
            "renamed",
            name,
            &format!(
                "attribute key {name:?} is shown as label {} on /metrics: label names starting \
                 with __ are reserved by Prometheus",
                &out[start..]
            ),
        );
    }
}

fn push_sanitized_chars(out: &mut String, name: &str, kind: NameKind) {
    let colon = matches!(kind, NameKind::Metric);
    let valid = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || (colon && c == b':');
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    if !name.is_ascii() {
        out.extend(name.chars().map(|c| {
            if c.is_ascii() && valid(c as u8) {
                c
            } else {
                '_'
            }
        }));
        return;
    }
    // ASCII (every semantic-convention key): copy the runs between invalid bytes.
    let mut run = 0;
    for (i, &b) in name.as_bytes().iter().enumerate() {
        if !valid(b) {
            out.push_str(&name[run..i]);
            out.push('_');
            run = i + 1;
        }
    }
    out.push_str(&name[run..]);
}

fn sanitize(name: &str, kind: NameKind) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    push_sanitized(&mut out, name, kind);
    out
}

/// A bucket bound (`le`) or quantile (`quantile`) label value in the canonical form Prometheus 3
/// stores (Go's shortest `%g`, with `.0` added when that has neither `.` nor `e`): `1` is written
/// `1.0`, `10` `10.0`, `1000000` `1e+06`; `0.005`, `2.5` and `+Inf` stay as they are. Prometheus 3
/// rewrites these values to this form when it scrapes; writing them so makes what is stored the
/// same on Prometheus 2 (which stores the value as written) and on 3.
pub(crate) fn push_bound(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value == 0.0 {
        out.push_str("0.0");
    } else {
        // `{:e}` is the shortest round-trip mantissa with its exponent: `1.5e-7`, `1e6`.
        let scientific = format!("{value:e}");
        let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
        let exponent: i32 = exponent.parse().unwrap_or(0);
        if (-4..6).contains(&exponent) {
            let start = out.len();
            let _ = write!(out, "{value}");
            if !out[start..].contains('.') {
                out.push_str(".0");
            }
        } else {
            let sign = if exponent < 0 { '-' } else { '+' };
            let _ = write!(out, "{mantissa}e{sign}{:02}", exponent.unsigned_abs());
        }
    }
}

/// A sample value, appended as Prometheus writes it. Integers, and floats with an integral value
/// (most samples), take a fast path that skips float formatting.
trait Number: Copy {
    fn push_to(self, out: &mut String);
}

impl Number for u64 {
    fn push_to(self, out: &mut String) {
        out.push_str(itoa::Buffer::new().format(self));
    }
}

impl Number for i64 {
    fn push_to(self, out: &mut String) {
        out.push_str(itoa::Buffer::new().format(self));
    }
}

impl Number for f64 {
    fn push_to(self, out: &mut String) {
        /// Integral floats below this are exact as `i64`, and print the same either way.
        const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if self > 0.0 { "+Inf" } else { "-Inf" });
        } else if self.fract() == 0.0
            && self.abs() < EXACT
            && !(self == 0.0 && self.is_sign_negative())
        {
            #[allow(clippy::cast_possible_truncation)] // integral and below 2^53: exact
            (self as i64).push_to(out);
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family the process and runtime metrics write is one a user instrument cannot
    /// take: the list is kept by hand beside those writers, this keeps it whole.
    #[test]
    fn own_families_cover_what_the_crate_writes_itself() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut out = String::new();
        crate::process::ProcessMetrics::new().write(&mut out, Format::Prometheus);
        runtime.block_on(async {
            crate::runtime::RuntimeMetrics::current()
                .unwrap()
                .write(&mut out, Format::Prometheus);
        });
        let written: Vec<&str> = out
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|line| line.split(' ').next())
            .collect();
        assert!(written.len() > 5, "{out}");
        for family in written {
            let base = family.strip_suffix("_total").unwrap_or(family);
            assert!(
                OWN_FAMILIES.contains(&base),
                "{family} is written by the crate but missing from OWN_FAMILIES"
            );
        }
    }

    fn number(value: impl Number) -> String {
        let mut out = String::new();
        value.push_to(&mut out);
        out
    }

    #[test]
    fn units_become_suffixes() {
        assert_eq!(unit_suffix("s").as_deref(), Some("seconds"));
        assert_eq!(unit_suffix("By").as_deref(), Some("bytes"));
        assert_eq!(unit_suffix("{request}"), None);
        assert_eq!(unit_suffix("By/s").as_deref(), Some("bytes_per_second"));
        assert_eq!(unit_suffix("furlong"), None);
    }

    #[test]
    fn names_and_values_are_escaped() {
        let metric = |name| sanitize(name, NameKind::Metric);
        let label = |name| sanitize(name, NameKind::Label);
        assert_eq!(
            metric("http.server.request-duration"),
            "http_server_request_duration"
        );
        assert_eq!(metric("9lives"), "_9lives");
        assert_eq!(metric("already_fine:1"), "already_fine:1");
        assert_eq!(label("k8s:pod"), "k8s_pod", "no colon in label names");
        assert_eq!(label(".a..b."), "_a__b_");
        assert_eq!(label("é.x"), "exported___x", "__ is reserved by Prometheus");
        assert_eq!(label("__name__"), "exported___name__");
        assert_eq!(label(""), "_");
        let mut labels = String::new();
        push_label(&mut labels, "path", "a\"b\\c\nd");
        assert_eq!(labels, r#"path="a\"b\\c\nd""#);
        let mut help = String::new();
        push_escaped(&mut help, "say \"hi\"\\\n", false);
        assert_eq!(help, r#"say "hi"\\\n"#);
    }

    #[test]
    fn keys_that_sanitize_alike_become_one_label() {
        let write = |attributes: &[KeyValue]| {
            let mut out = String::new();
            push_attributes(&mut out, || attributes.iter(), HISTOGRAM_LABELS);
            out
        };
        assert_eq!(
            write(&[
                KeyValue::new("c", "x"),
                KeyValue::new("a_b", "2"),
                KeyValue::new("a.b", "1"),
            ]),
            r#"a_b="1;2",c="x""#
        );
        // Without a collision the attributes keep their order.
        assert_eq!(
            write(&[KeyValue::new("z.y", "q\""), KeyValue::new("a", 7)]),
            r#"z_y="q\"",a="7""#
        );
        // Names the writer uses itself are renamed, on both paths.
        assert_eq!(
            write(&[
                KeyValue::new("le", "x"),
                KeyValue::new("otel.scope.name", "y")
            ]),
            r#"exported_le="x",exported_otel_scope_name="y""#
        );
        assert_eq!(
            write(&[
                KeyValue::new("le", "x"),
                KeyValue::new("a.b", 1),
                KeyValue::new("a_b", 2)
            ]),
            r#"a_b="1;2",exported_le="x""#
        );
        // Past the names checked one by one, the merging path still gives valid labels.
        let many: Vec<KeyValue> = (0..20)
            .map(|i| KeyValue::new(format!("k{}", i % 18), i))
            .collect();
        let labels = write(&many);
        assert!(
            labels.starts_with(r#"k0="0;18",k1="1;19",k10="10""#),
            "{labels}"
        );
    }

    #[test]
    fn label_names_remembered_per_position_write_what_push_attributes_writes() {
        // Keys the same by content but not by address (owned strings), keys that change from
        // one point to the next at some positions, collisions, reserved names, and more
        // attributes than the duplicate check covers.
        let owned = |key: &str, value: i64| KeyValue::new(key.to_owned(), value);
        let points: Vec<Vec<KeyValue>> = vec![
            vec![KeyValue::new("id", "1")],
            vec![KeyValue::new("id", "2\"\n\\")],
            vec![owned("id", 3)],
            vec![],
            vec![KeyValue::new("a.b", 1), KeyValue::new("c", 2)],
            vec![KeyValue::new("a.b", 1), KeyValue::new("a_b", 2)],
            vec![KeyValue::new("a.b", 1), KeyValue::new("c", 2)],
            vec![KeyValue::new("x", 1), KeyValue::new("a_b", 2)],
            vec![owned("a_b", 1), owned("a.b", 2), owned("c", 3)],
            vec![
                KeyValue::new("le", 1),
                KeyValue::new("otel.scope.name", "s"),
            ],
            vec![
                KeyValue::new("otel_scope_version", 1),
                KeyValue::new("le", 2),
            ],
            (0..20).map(|i| owned(&format!("k{}", i % 18), i)).collect(),
            (0..17).map(|i| owned(&format!("k{i}"), i)).collect(),
            vec![KeyValue::new("k0", 0), KeyValue::new("k1", 1)],
            vec![KeyValue::new("é.x", true), KeyValue::new("9", 1.5)],
        ];
        for reserved in [SCOPE_LABELS, HISTOGRAM_LABELS] {
            let mut names = LabelNames::default();
            names.reserve(reserved);
            // Twice through, so that every point also meets names remembered from others.
            for attributes in points.iter().chain(&points) {
                let mut expected = String::from("x{");
                push_attributes(&mut expected, || attributes.iter(), reserved);
                let mut actual = String::from("x{");
                let wrote = names.push(&mut actual, || attributes.iter());
                assert_eq!(actual, expected, "{attributes:?} avoiding {reserved:?}");
                assert_eq!(wrote, !attributes.is_empty());
            }
        }
    }

    fn bound(value: f64) -> String {
        let mut out = String::new();
        push_bound(&mut out, value);
        out
    }

    /// Prometheus 3's `labels.FormatOpenMetricsFloat` (Go's `strconv.FormatFloat(v, 'g', -1, 64)`
    /// plus `.0`), value by value, as Go prints them.
    #[test]
    fn bounds_print_as_prometheus_3_stores_them() {
        for (value, go) in [
            (0.0, "0.0"),
            (-0.0, "0.0"),
            (1.0, "1.0"),
            (-1.0, "-1.0"),
            (10.0, "10.0"),
            (0.005, "0.005"),
            (2.5, "2.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (0.0001, "0.0001"),
            (0.000_01, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (100_000.0, "100000.0"),
            (999_999.0, "999999.0"),
            (1_000_000.0, "1e+06"),
            (1_234_567.0, "1.234567e+06"),
            (2.5e300, "2.5e+300"),
            (-7.5e-300, "-7.5e-300"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(bound(value), go, "{value:e}");
        }
    }

    #[test]
    fn numbers_print_as_prometheus_reads_them() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(0.005), "0.005");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(-0.0), "-0");
        assert_eq!(number(1e300), format!("{}", 1e300));
        assert_eq!(number(-12.5), "-12.5");
        assert_eq!(number(10u64), "10");
        assert_eq!(number(u64::MAX), "18446744073709551615");
        assert_eq!(number(-7i64), "-7");
        // Every float prints as Rust's shortest round-trip form would.
        for v in [
            0.0,
            1.0,
            2.5,
            1e15,
            9_007_199_254_740_991.0,
            123_456_789.0,
            0.1 + 0.2,
        ] {
            assert_eq!(number(v), format!("{v}"));
        }
    }
}
