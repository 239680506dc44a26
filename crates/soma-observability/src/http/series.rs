//! One bound series of the request histograms, and the attributes series are bound with (see
//! [`instruments`](super::instruments) for why series are bound).

use std::sync::{Arc, OnceLock};

use opentelemetry::metrics::BoundHistogram;
use opentelemetry::{KeyValue, StringValue};
use opentelemetry_semantic_conventions::attribute as semconv;

use super::attributes::Labels;
use crate::exemplars::SeriesExemplars;

/// One bound series of the request histograms.
#[derive(Debug)]
pub(crate) struct Series {
    pub(super) attributes: Box<[KeyValue]>,
    pub(super) duration: BoundHistogram<f64>,
    pub(super) duration_exemplars: Option<Arc<SeriesExemplars>>,
    pub(super) response_body_size: BoundHistogram<u64>,
    pub(super) response_body_size_exemplars: Option<Arc<SeriesExemplars>>,
    /// Bound on first use: a route whose request sizes are never known has no such series.
    pub(super) request_body_size: OnceLock<RequestBodySeries>,
}

/// The request body size histogram's series, bound on first use.
#[derive(Debug)]
pub(crate) struct RequestBodySeries {
    pub(super) histogram: BoundHistogram<u64>,
    pub(super) exemplars: Option<Arc<SeriesExemplars>>,
}

/// The histograms' attributes, in a fixed order.
pub(crate) fn attributes(
    labels: Labels,
    status: Option<u16>,
    route: Option<&StringValue>,
    error_type: Option<StringValue>,
) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(6);
    attributes.push(KeyValue::new(semconv::HTTP_REQUEST_METHOD, labels.method()));
    attributes.push(KeyValue::new(semconv::URL_SCHEME, labels.scheme()));
    attributes.push(KeyValue::new(
        semconv::NETWORK_PROTOCOL_VERSION,
        labels.version(),
    ));
    if let Some(status) = status {
        attributes.push(KeyValue::new(
            semconv::HTTP_RESPONSE_STATUS_CODE,
            i64::from(status),
        ));
    }
    if let Some(route) = route {
        attributes.push(KeyValue::new(semconv::HTTP_ROUTE, route.clone()));
    }
    if let Some(error_type) = error_type {
        attributes.push(KeyValue::new(semconv::ERROR_TYPE, error_type));
    }
    attributes
}
