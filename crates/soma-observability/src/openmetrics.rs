//! Content negotiation for `/metrics`, and the OpenMetrics form of the `prometheus` registry.
//!
//! `/metrics` speaks two text formats. A scraper that asks for OpenMetrics 1.0 in its `Accept`
//! header (`application/openmetrics-text; version=1.0.0`, as Prometheus does whenever it may)
//! gets it; every other client (no `Accept`, `*/*`, `text/plain`) gets the Prometheus text
//! format 0.0.4, exactly as before. Only OpenMetrics can carry exemplars
//! ([`crate::exemplars`]).
//!
//! OpenMetrics differs from the Prometheus text format in a few places, all handled here and in
//! [`crate::exposition`]: a counter's family (`# HELP` / `# TYPE`) is named without `_total`
//! while its sample keeps it; a family whose name ends with its unit gets a `# UNIT` line;
//! `target_info` is the sample of an `info` family named `target`; help texts escape `"`;
//! untyped metrics are `unknown`; histogram buckets may end with an exemplar
//! (`… 3 # {trace_id="…",span_id="…"} 0.042 1733050000.123`); and the text ends with `# EOF`.
//!
//! A client that sends `Accept-Encoding: gzip` (Prometheus always does) gets a gzip body.

use std::fmt::Write as _;

use http::HeaderValue;
use prometheus::proto::{MetricFamily, MetricType};

use crate::exposition::{push_bound, push_escaped, Format};

/// The content type of an OpenMetrics 1.0 exposition.
pub(crate) const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The format an `Accept` header asks for: OpenMetrics only when it is named (with version
/// 1.0.0 or no version) and weighted above everything the Prometheus text format would
/// satisfy (`text/plain`, `text/*`, `*/*`); on a tie, and without the header, the Prometheus
/// text format. Every `Accept` line counts, as if joined with commas.
pub(crate) fn negotiate<'a>(accept: impl IntoIterator<Item = &'a HeaderValue>) -> Format {
    let mut openmetrics = 0.0_f64;
    let mut text = 0.0_f64;
    let ranges = accept
        .into_iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(','));
    for range in ranges {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let mut q = 1.0_f64;
        let mut version = None;
        for parameter in parts {
            let Some((name, value)) = parameter.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => q = value.parse().unwrap_or(0.0),
                "version" => version = Some(value.to_owned()),
                _ => {}
            }
        }
        if !(0.0..=1.0).contains(&q) {
            continue;
        }
        match media.as_str() {
            "application/openmetrics-text"
                if matches!(version.as_deref(), None | Some("1.0.0")) =>
            {
                openmetrics = openmetrics.max(q);
            }
            "text/plain" if matches!(version.as_deref(), None | Some("0.0.4")) => {
                text = text.max(q);
            }
            "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    if openmetrics > 0.0 && openmetrics > text {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    }
}

/// How to send a body to a client with these `Accept-Encoding` lines: gzip when `gzip`, `x-gzip`
/// or `*` has a weight above 0; otherwise identity, unless the client refused it (`identity;q=0`,
/// or `*;q=0` without naming identity): then gzip, unless refused by name too, and `None` (send
/// `406 Not Acceptable`) when both are.
pub(crate) fn encoding<'a>(
    accept_encoding: impl IntoIterator<Item = &'a HeaderValue>,
) -> Option<Encoding> {
    let mut gzip = None;
    let mut identity = None;
    let mut any = None;
    let codings = accept_encoding
        .into_iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(','));
    for coding in codings {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, q)| q.trim().parse::<f64>().unwrap_or(0.0));
        let slot = if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if name.eq_ignore_ascii_case("identity") {
            &mut identity
        } else if name == "*" {
            &mut any
        } else {
            continue;
        };
        *slot = Some(slot.map_or(q, |seen: f64| seen.max(q)));
    }
    // Unlisted, identity is acceptable unless `*;q=0` says otherwise; gzip only through `*`.
    let identity = identity.or(any.filter(|q| *q <= 0.0)).unwrap_or(1.0);
    match gzip.or(any) {
        Some(q) if q > 0.0 => Some(Encoding::Gzip),
        _ if identity > 0.0 => Some(Encoding::Identity),
        // Identity refused: gzip, unless that was refused by name too.
        None => Some(Encoding::Gzip),
        Some(_) => None,
    }
}

/// How a `/metrics` body is sent (see [`encoding`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Gzip,
    Identity,
}

/// `body` compressed with gzip at the fastest level: a 10 000-series exposition of 581 kB becomes
/// 33 kB in ~1.1 ms (the default level gives 28 kB in ~4.7 ms; `benches/README.md`). Writing
/// into a `Vec` cannot fail; should it, the error is an empty body's.
pub(crate) fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8 + 64),
        flate2::Compression::fast(),
    );
    match encoder.write_all(body).and_then(|()| encoder.finish()) {
        Ok(compressed) => compressed,
        Err(err) => {
            tracing::error!(error = %err, "failed to compress metrics");
            Vec::new()
        }
    }
}

/// The registry's families in OpenMetrics text (the Prometheus text form is written by the
/// `prometheus` crate's own encoder).
pub(crate) fn write_registry(families: &[MetricFamily], out: &mut String) {
    for family in families {
        let name = family.name();
        let (kind, family_name) = match family.get_field_type() {
            MetricType::COUNTER => ("counter", name.strip_suffix("_total").unwrap_or(name)),
            MetricType::GAUGE => ("gauge", name),
            MetricType::HISTOGRAM => ("histogram", name),
            MetricType::SUMMARY => ("summary", name),
            MetricType::UNTYPED => ("unknown", name),
        };
        out.push_str("# HELP ");
        out.push_str(family_name);
        out.push(' ');
        push_escaped(out, family.help(), true);
        let _ = writeln!(out, "\n# TYPE {family_name} {kind}");
        for metric in family.get_metric() {
            let mut labels = String::new();
            for pair in metric.get_label() {
                if !labels.is_empty() {
                    labels.push(',');
                }
                labels.push_str(pair.name());
                labels.push_str("=\"");
                push_escaped(&mut labels, pair.value(), true);
                labels.push('"');
            }
            let sample = |out: &mut String, suffix: &str, extra: &str, value: f64| {
                out.push_str(family_name);
                out.push_str(suffix);
                if !labels.is_empty() || !extra.is_empty() {
                    let sep = if labels.is_empty() || extra.is_empty() {
                        ""
                    } else {
                        ","
                    };
                    let _ = write!(out, "{{{labels}{sep}{extra}}}");
                }
                let _ = writeln!(out, " {}", Float(value));
            };
            match family.get_field_type() {
                MetricType::COUNTER => {
                    sample(out, "_total", "", metric.get_counter().get_value());
                }
                MetricType::GAUGE => sample(out, "", "", metric.get_gauge().get_value()),
                #[allow(deprecated)] // the only accessor of an untyped value
                MetricType::UNTYPED => sample(out, "", "", metric.get_untyped().get_value()),
                MetricType::HISTOGRAM => {
                    let histogram = metric.get_histogram();
                    let mut infinite = false;
                    for bucket in histogram.get_bucket() {
                        infinite |= bucket.upper_bound() == f64::INFINITY;
                        let mut le = String::from("le=\"");
                        push_bound(&mut le, bucket.upper_bound());
                        le.push('"');
                        #[allow(clippy::cast_precision_loss)] // counts far below 2^53
                        sample(out, "_bucket", &le, bucket.cumulative_count() as f64);
                    }
                    #[allow(clippy::cast_precision_loss)]
                    let count = histogram.get_sample_count() as f64;
                    if !infinite {
                        sample(out, "_bucket", "le=\"+Inf\"", count);
                    }
                    sample(out, "_sum", "", histogram.get_sample_sum());
                    sample(out, "_count", "", count);
                }
                MetricType::SUMMARY => {
                    let summary = metric.get_summary();
                    for quantile in summary.get_quantile() {
                        let mut q = String::from("quantile=\"");
                        push_bound(&mut q, quantile.quantile());
                        q.push('"');
                        sample(out, "", &q, quantile.value());
                    }
                    sample(out, "_sum", "", summary.sample_sum());
                    #[allow(clippy::cast_precision_loss)]
                    sample(out, "_count", "", summary.sample_count() as f64);
                }
            }
        }
    }
}

/// A float as OpenMetrics writes it (`+Inf`, `-Inf`, `NaN`, else Rust's shortest form).
struct Float(f64);

impl std::fmt::Display for Float {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            v if v.is_nan() => f.write_str("NaN"),
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            v => write!(f, "{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(accept: &str) -> Format {
        negotiate(Some(&HeaderValue::from_str(accept).unwrap()))
    }

    #[test]
    fn every_accept_line_counts() {
        let lines = [
            HeaderValue::from_static("text/plain;q=0.5"),
            HeaderValue::from_static("application/openmetrics-text;version=1.0.0"),
        ];
        assert_eq!(negotiate(&lines), Format::OpenMetrics);
        let codings = [
            HeaderValue::from_static("br"),
            HeaderValue::from_static("gzip"),
        ];
        assert_eq!(encoding(&codings), Some(Encoding::Gzip));
    }

    #[test]
    fn openmetrics_only_when_asked_for_first() {
        // Prometheus 2.42's header.
        assert_eq!(
            format("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            Format::OpenMetrics
        );
        assert_eq!(format("application/openmetrics-text"), Format::OpenMetrics);
        assert_eq!(negotiate(None), Format::Prometheus);
        assert_eq!(format("*/*"), Format::Prometheus);
        assert_eq!(format("text/plain"), Format::Prometheus);
        // Weighted below the text format, or a version we do not write.
        assert_eq!(
            format("text/plain;q=0.9, application/openmetrics-text;q=0.5"),
            Format::Prometheus
        );
        assert_eq!(
            format("application/openmetrics-text; version=0.0.1"),
            Format::Prometheus
        );
        assert_eq!(
            format("application/openmetrics-text;q=0"),
            Format::Prometheus
        );
        assert_eq!(format("garbage;;q=x,,"), Format::Prometheus);
    }

    #[test]
    fn gzip_when_accepted() {
        let chosen = |v: &str| encoding(Some(&HeaderValue::from_str(v).unwrap()));
        let accepts = |v: &str| chosen(v) == Some(Encoding::Gzip);
        assert!(accepts("gzip"));
        assert!(accepts("br, GZIP;q=0.5"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("identity"));
        assert_eq!(encoding(None), Some(Encoding::Identity));
        // Identity refused: gzip, or nothing acceptable when gzip is refused too.
        assert!(accepts("identity;q=0"));
        assert!(accepts("br, identity;q=0"));
        assert_eq!(chosen("br, *;q=0"), None, "* refuses gzip too");
        assert_eq!(chosen("gzip;q=0, identity;q=0"), None);
        assert_eq!(chosen("identity;q=0.5"), Some(Encoding::Identity));
    }
}
