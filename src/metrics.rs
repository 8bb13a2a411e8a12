//! Prometheus metrics of the webhook, served on the admin port's `/metrics`.
//!
//! Every series a dashboard divides by exists at 0 from the start (no NaN ratios), so the label
//! sets are enumerated up front.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// What the review was about.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum ReviewKind {
    Pod,
    SparkApplication,
}

/// How a review ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    /// A Spark pod that got a patch.
    Patched,
    /// A Spark pod, or a valid SparkApplication, that needed no change.
    Unchanged,
    /// Not ours (not a Spark pod, not a job namespace): allowed untouched.
    Skipped,
    /// Refused, with a message to the user.
    Denied,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    pub kind: ReviewKind,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: ReviewKind,
}

/// The webhook's metric families.
pub struct Metrics {
    pub registry: Registry,
    pub reviews: Family<ReviewLabels, Counter>,
    pub review_seconds: Family<KindLabels, Histogram>,
    pub cert_not_after: Gauge<i64, AtomicI64>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("spark_webhook");
        let reviews = Family::<ReviewLabels, Counter>::default();
        let review_seconds = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            // 50 µs .. ~3 s: pure mutations take microseconds, the apiserver's timeout is seconds.
            Histogram::new([
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 0.5, 1.0, 2.5,
            ])
        });
        let cert_not_after = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "admission_reviews",
            "Admission reviews answered, by kind and outcome",
            reviews.clone(),
        );
        registry.register(
            "admission_review_duration_seconds",
            "Time to answer one admission review, from body parsed to answer built",
            review_seconds.clone(),
        );
        registry.register(
            "certificate_not_after_timestamp_seconds",
            "Expiry (unix time) of the serving certificate currently in use",
            cert_not_after.clone(),
        );
        for kind in [ReviewKind::Pod, ReviewKind::SparkApplication] {
            for outcome in [
                Outcome::Patched,
                Outcome::Unchanged,
                Outcome::Skipped,
                Outcome::Denied,
            ] {
                let _ = reviews.get_or_create(&ReviewLabels { kind, outcome });
            }
            let _ = review_seconds.get_or_create(&KindLabels { kind });
        }
        Arc::new(Metrics {
            registry,
            reviews,
            review_seconds,
            cert_not_after,
        })
    }

    pub fn observe(&self, kind: ReviewKind, outcome: Outcome, seconds: f64) {
        self.reviews
            .get_or_create(&ReviewLabels { kind, outcome })
            .inc();
        self.review_seconds
            .get_or_create(&KindLabels { kind })
            .observe(seconds);
    }

    /// OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_exist_at_zero_and_count() {
        let m = Metrics::new();
        let text = m.encode();
        assert!(
            text.contains(
                r#"spark_webhook_admission_reviews_total{kind="Pod",outcome="Denied"} 0"#
            ),
            "{text}"
        );
        m.observe(ReviewKind::Pod, Outcome::Patched, 0.0001);
        let text = m.encode();
        assert!(
            text.contains(
                r#"spark_webhook_admission_reviews_total{kind="Pod",outcome="Patched"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("spark_webhook_admission_review_duration_seconds_count{kind=\"Pod\"} 1"),
            "{text}"
        );
    }
}
