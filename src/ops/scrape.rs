//! Helpers for the roles' metrics: gauges a collector writes at scrape time
//! (from state, so they cannot drift), and the latency histogram every
//! duration metric shares.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// A latency histogram: 12 buckets from 100 µs to about 2.4 s, each 2.5
/// times the last, which covers a signature (sub-millisecond), an fsync
/// (milliseconds) and a remote upstream (up to seconds) in a small
/// exposition. A plain `fn` so that `Family` can build one per label set.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.5, 12))
}

/// Writes one unlabelled gauge.
pub fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

/// Writes one gauge with a series per row of labels.
pub fn gauge_family<L>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, f64)>,
) -> Result<(), std::fmt::Error>
where
    L: prometheus_client::encoding::EncodeLabelSet + Clone + std::hash::Hash + Eq,
{
    let family: Family<L, Gauge<f64, AtomicU64>> = Family::default();
    for (labels, value) in rows {
        family.get_or_create(&labels).set(value);
    }
    family.encode(encoder.encode_descriptor(name, help, None, family.metric_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::collector::Collector;
    use prometheus_client::registry::Registry;

    #[derive(Debug)]
    struct Two;

    impl Collector for Two {
        fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            gauge(&mut e, "herald_test_plain", "a gauge", 1.5)?;
            gauge_family(
                &mut e,
                "herald_test_labelled",
                "labelled",
                [([("kind", "x509")], 2.0), ([("kind", "jwt")], 3.0)],
            )
        }
    }

    #[test]
    fn collected_gauges_encode_with_their_labels() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Two));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(out.contains("herald_test_plain 1.5\n"), "{out}");
        assert!(
            out.contains("herald_test_labelled{kind=\"x509\"} 2.0\n"),
            "{out}"
        );
        assert!(
            out.contains("herald_test_labelled{kind=\"jwt\"} 3.0\n"),
            "{out}"
        );
    }
}
