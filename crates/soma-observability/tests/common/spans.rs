//! Reading the spans the OTLP receiver got.

use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;

use super::FakeOtlp;

/// Waits until a span of each of `names` arrived; the first span of each name, in that order.
pub async fn wait_for_named_spans<const N: usize>(
    otlp: &FakeOtlp,
    wait: Duration,
    names: [&str; N],
) -> [Span; N] {
    let spans = otlp
        .wait_for_spans(wait, |spans| {
            names
                .iter()
                .all(|name| spans.iter().any(|(_, s)| s.name == *name))
        })
        .await;
    names.map(|name| {
        spans
            .iter()
            .find(|(_, s)| s.name == name)
            .unwrap()
            .1
            .clone()
    })
}

/// The string array attribute `key`, one element per header line.
pub fn strings(attrs: &[KeyValue], key: &str) -> Option<Vec<String>> {
    let value = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    let Some(Value::ArrayValue(array)) = &value.value else {
        panic!("{key} is not an array: {value:?}");
    };
    Some(
        array
            .values
            .iter()
            .map(|v| match &v.value {
                Some(Value::StringValue(s)) => s.clone(),
                other => panic!("{key}: not a string {other:?}"),
            })
            .collect(),
    )
}
