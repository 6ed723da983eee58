//! `prometheus` (Kong `kong/plugins/prometheus/schema.lua`): which of Kong's per-request metric
//! families the requests it applies to record. Kong's defaults (every flag off) apply once the
//! plugin is configured; what the proxy does without any prometheus plugin is its own choice
//! (docs/plugins.md).
//!
//! `ai_metrics` (Kong's AI plugins' families) exists in Kong's schema; sluice has no AI plugins,
//! so only its neutral value `false` is accepted.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{join, Checker};

pub const NAME: &str = "prometheus";

const FLAGS: [&str; 5] =
    ["per_consumer", "status_code_metrics", "latency_metrics", "bandwidth_metrics", "upstream_health_metrics"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Fill the `consumer` label of `kong_http_requests_total` and `kong_bandwidth_bytes`.
    #[serde(default)]
    pub per_consumer: bool,
    /// `kong_http_requests_total` (and sluice's `sluice_grpc_requests_total`).
    #[serde(default)]
    pub status_code_metrics: bool,
    /// `kong_kong_latency_ms`, `kong_upstream_latency_ms`, `kong_request_latency_ms`.
    #[serde(default)]
    pub latency_metrics: bool,
    /// `kong_bandwidth_bytes`.
    #[serde(default)]
    pub bandwidth_metrics: bool,
    /// `kong_upstream_target_health`.
    #[serde(default)]
    pub upstream_health_metrics: bool,
    /// Kong's AI families: always `false` here (checked).
    #[serde(default)]
    pub ai_metrics: bool,
}

pub(crate) fn check(c: &mut Checker, v: Option<&Value>) {
    let mut fields = FLAGS.to_vec();
    fields.push("ai_metrics");
    let Some(m) = c.record("config", v, &fields, &[]) else { return };
    for f in FLAGS {
        c.boolean(m, "config", f);
    }
    if c.boolean(m, "config", "ai_metrics") == Some(true) {
        c.err(join("config", "ai_metrics"), "not supported by sluice: there are no AI plugins to measure");
    }
}
