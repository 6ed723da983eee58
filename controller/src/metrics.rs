//! The controller's Prometheus metrics, with KIC's names and labels so existing
//! dashboards keep working: push count/duration/size/last success, broken resources, translation
//! count/duration. Served as text on `--metrics-bind-address` `/metrics`.

use prometheus::{
    exponential_buckets, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use thiserror::Error;

/// KIC's `protocol` label value for DB-less pushes.
pub(crate) const PROTOCOL_DBLESS: &str = "db-less";

#[derive(Debug, Error)]
#[error("registering metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Every controller metric, registered in its own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    instance_id: String,
    dataplane: String,
    push_count: IntCounterVec,
    push_duration: HistogramVec,
    push_size: IntGaugeVec,
    push_last_successful: GaugeVec,
    push_broken: IntGaugeVec,
    translation_count: IntCounterVec,
    translation_duration: HistogramVec,
    translation_broken: IntGaugeVec,
}

fn bool_label(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

impl Metrics {
    /// `dataplane` is the admin URL, `instance_id` identifies this controller (pod name).
    pub fn new(dataplane: &str, instance_id: &str) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let push_count = IntCounterVec::new(
            Opts::new("ingress_controller_configuration_push_count", "Count of configuration pushes to the proxy."),
            &["success", "protocol", "failure_reason", "dataplane", "instance_id"],
        )?;
        let push_duration = HistogramVec::new(
            HistogramOpts::new(
                "ingress_controller_configuration_push_duration_milliseconds",
                "How long configuration pushes to the proxy took, in milliseconds.",
            )
            .buckets(exponential_buckets(100.0, 1.33, 30)?),
            &["success", "protocol", "dataplane", "instance_id"],
        )?;
        let push_size = IntGaugeVec::new(
            Opts::new("ingress_controller_configuration_push_size", "Size of the last pushed configuration, in bytes."),
            &["dataplane", "protocol", "success", "instance_id"],
        )?;
        let push_last_successful = GaugeVec::new(
            Opts::new(
                "ingress_controller_configuration_push_last_successful",
                "Unix time (seconds) of the last successful configuration push.",
            ),
            &["dataplane", "instance_id"],
        )?;
        let push_broken = IntGaugeVec::new(
            Opts::new(
                "ingress_controller_configuration_push_broken_resource_count",
                "Objects the proxy rejected in the last push.",
            ),
            &["dataplane", "instance_id"],
        )?;
        let translation_count = IntCounterVec::new(
            Opts::new("ingress_controller_translation_count", "Count of translations of Kubernetes objects."),
            &["success", "instance_id"],
        )?;
        let translation_duration = HistogramVec::new(
            HistogramOpts::new(
                "ingress_controller_translation_duration_milliseconds",
                "How long translations took, in milliseconds.",
            )
            .buckets(exponential_buckets(1.0, 60_000f64.powf(1.0 / 29.0), 30)?),
            &["success", "instance_id"],
        )?;
        let translation_broken = IntGaugeVec::new(
            Opts::new(
                "ingress_controller_translation_broken_resource_count",
                "Objects left out of the last translation because of problems.",
            ),
            &["instance_id"],
        )?;
        registry.register(Box::new(push_count.clone()))?;
        registry.register(Box::new(push_duration.clone()))?;
        registry.register(Box::new(push_size.clone()))?;
        registry.register(Box::new(push_last_successful.clone()))?;
        registry.register(Box::new(push_broken.clone()))?;
        registry.register(Box::new(translation_count.clone()))?;
        registry.register(Box::new(translation_duration.clone()))?;
        registry.register(Box::new(translation_broken.clone()))?;
        Ok(Metrics {
            registry,
            instance_id: instance_id.to_string(),
            dataplane: dataplane.to_string(),
            push_count,
            push_duration,
            push_size,
            push_last_successful,
            push_broken,
            translation_count,
            translation_duration,
            translation_broken,
        })
    }

    /// Records one push. `failure_reason` is empty on success.
    pub fn push(&self, success: bool, failure_reason: &str, millis: f64, size: usize, now_unix_secs: f64) {
        let ok = bool_label(success);
        let (dp, id) = (self.dataplane.as_str(), self.instance_id.as_str());
        self.push_count.with_label_values(&[ok, PROTOCOL_DBLESS, failure_reason, dp, id]).inc();
        self.push_duration.with_label_values(&[ok, PROTOCOL_DBLESS, dp, id]).observe(millis);
        self.push_size.with_label_values(&[dp, PROTOCOL_DBLESS, ok, id]).set(i64::try_from(size).unwrap_or(i64::MAX));
        if success {
            self.push_last_successful.with_label_values(&[dp, id]).set(now_unix_secs);
        }
    }

    /// Objects the proxy rejected in the last push.
    pub(crate) fn push_broken(&self, count: usize) {
        let v = i64::try_from(count).unwrap_or(i64::MAX);
        self.push_broken.with_label_values(&[self.dataplane.as_str(), self.instance_id.as_str()]).set(v);
    }

    /// Records one translation; `broken` is the number of distinct objects with problems.
    pub fn translation(&self, broken: usize, millis: f64) {
        let ok = bool_label(broken == 0);
        let id = self.instance_id.as_str();
        self.translation_count.with_label_values(&[ok, id]).inc();
        self.translation_duration.with_label_values(&[ok, id]).observe(millis);
        self.translation_broken.with_label_values(&[id]).set(i64::try_from(broken).unwrap_or(i64::MAX));
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding gathered families into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kic_names_and_labels() {
        let m = Metrics::new("unix:///x.sock", "pod-1").unwrap();
        m.push(true, "", 12.0, 100, 1.0);
        m.push(false, "conflict", 3.0, 100, 2.0);
        m.translation(2, 1.5);
        m.push_broken(1);
        let text = m.render();
        assert!(text.contains(
            "ingress_controller_configuration_push_count{dataplane=\"unix:///x.sock\",failure_reason=\"conflict\",instance_id=\"pod-1\",protocol=\"db-less\",success=\"false\"} 1"
        ), "{text}");
        assert!(text.contains("ingress_controller_configuration_push_last_successful{dataplane=\"unix:///x.sock\",instance_id=\"pod-1\"} 1"));
        assert!(text.contains("ingress_controller_translation_count{instance_id=\"pod-1\",success=\"false\"} 1"));
        assert!(text.contains("ingress_controller_translation_broken_resource_count{instance_id=\"pod-1\"} 2"));
        assert!(text.contains("ingress_controller_configuration_push_duration_milliseconds_bucket"));
        assert!(text.contains("ingress_controller_configuration_push_broken_resource_count"));
    }
}
