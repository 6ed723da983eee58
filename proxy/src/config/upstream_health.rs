//! Upstream target health as Kong's Admin API reports it (`GET /upstreams/{u}/health`), for the
//! status listener's `/status/upstreams/{u}/health` and the `upstreams` summary of `/status`, and
//! the state each target reports in `kong_upstream_target_health`.

use crate::config::state::LiveConfig;
use crate::upstream::balancer::{Balancer, Target};

/// A target's state as Kong names it in the metric (`healthy`, `unhealthy`). sluice always has
/// a passive circuit on connect failures, so no target reports `healthchecks_off`; targets are
/// addresses (no DNS balancing), so none reports `dns_error`.
pub(crate) fn metric_state(t: &Target) -> &'static str {
    if t.health.is_marked_unhealthy() {
        "unhealthy"
    } else {
        "healthy"
    }
}

/// `host:port`, brackets around an IPv6 host.
pub(crate) fn address(t: &Target) -> String {
    if t.host.contains(':') {
        format!("[{}]:{}", t.host, t.port)
    } else {
        format!("{}:{}", t.host, t.port)
    }
}

fn kong_state(t: &Target) -> &'static str {
    if t.health.is_marked_unhealthy() {
        "UNHEALTHY"
    } else {
        "HEALTHY"
    }
}

/// Kong's `GET /upstreams/{u}/health` body for one upstream.
pub(crate) fn upstream_health(b: &Balancer) -> serde_json::Value {
    let data: Vec<serde_json::Value> = b
        .targets
        .iter()
        .map(|t| {
            serde_json::json!({
                "target": &*t.label,
                "weight": t.weight,
                "health": kong_state(t),
                "upstream": { "name": &*b.name },
                "data": { "addresses": [{
                    "ip": &*t.host, "port": t.port, "weight": t.weight, "health": kong_state(t),
                }] },
            })
        })
        .collect();
    serde_json::json!({ "data": data, "next": null })
}

/// `{upstream: {target: HEALTHY|UNHEALTHY}}` for every upstream of the live config.
pub(crate) fn summary(rt: &LiveConfig) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = rt
        .balancers
        .iter()
        .map(|b| {
            let targets: serde_json::Map<String, serde_json::Value> =
                b.targets.iter().map(|t| (t.label.to_string(), kong_state(t).into())).collect();
            (b.name.to_string(), targets.into())
        })
        .collect();
    map.into()
}

/// The upstream named `name` in the live config.
pub(crate) fn find<'a>(rt: &'a LiveConfig, name: &str) -> Option<&'a Balancer> {
    rt.balancers.iter().map(|b| &**b).find(|b| &*b.name == name)
}
