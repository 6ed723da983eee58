//! Which metric families a request records: Kong's `prometheus` plugin flags, resolved per route
//! once per config (the instance Kong's precedence picks for the route) so that a request pays a
//! bit test per family, never a lookup.
//!
//! Without any `prometheus` plugin in the config, sluice keeps the families it always exported
//! ([`MetricsOptions::WITHOUT_PLUGIN`]); once one exists, Kong's flags are exact: a route no
//! instance applies to records no per-route family ([`MetricsOptions::NONE`]), as in Kong.

use proxy_config::plugins::PrometheusConfig;

/// A set of Kong's per-request metric families (plus `upstream_health`, read at scrape time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsOptions(u8);

const STATUS: u8 = 1;
const LATENCY: u8 = 2;
const BANDWIDTH: u8 = 4;
const PER_CONSUMER: u8 = 8;
const UPSTREAM_HEALTH: u8 = 16;

impl MetricsOptions {
    /// No prometheus plugin configured: every family sluice exports, as before the plugin existed:
    /// status codes, latencies, bandwidth, target health, and the `consumer` label filled.
    pub const WITHOUT_PLUGIN: MetricsOptions =
        MetricsOptions(STATUS | LATENCY | BANDWIDTH | PER_CONSUMER | UPSTREAM_HEALTH);
    /// A prometheus plugin exists but none applies: nothing recorded.
    pub const NONE: MetricsOptions = MetricsOptions(0);

    /// Kong's flags, exactly.
    pub fn from_config(c: &PrometheusConfig) -> MetricsOptions {
        let bit = |on: bool, b: u8| if on { b } else { 0 };
        MetricsOptions(
            bit(c.status_code_metrics, STATUS)
                | bit(c.latency_metrics, LATENCY)
                | bit(c.bandwidth_metrics, BANDWIDTH)
                | bit(c.per_consumer, PER_CONSUMER)
                | bit(c.upstream_health_metrics, UPSTREAM_HEALTH),
        )
    }

    /// `kong_http_requests_total` and `sluice_grpc_requests_total` (`status_code_metrics`).
    pub fn status_codes(self) -> bool {
        self.0 & STATUS != 0
    }
    /// The three latency histograms (`latency_metrics`).
    pub fn latency(self) -> bool {
        self.0 & LATENCY != 0
    }
    /// `kong_bandwidth_bytes` (`bandwidth_metrics`).
    pub fn bandwidth(self) -> bool {
        self.0 & BANDWIDTH != 0
    }
    /// The `consumer` label of `kong_http_requests_total` is filled (`per_consumer`).
    pub fn per_consumer(self) -> bool {
        self.0 & PER_CONSUMER != 0
    }
    /// `kong_upstream_target_health` is exported at scrape time (`upstream_health_metrics`).
    pub fn upstream_health(self) -> bool {
        self.0 & UPSTREAM_HEALTH != 0
    }
    /// The same set with `upstream_health` as given.
    pub fn with_upstream_health(self, on: bool) -> MetricsOptions {
        MetricsOptions(if on { self.0 | UPSTREAM_HEALTH } else { self.0 & !UPSTREAM_HEALTH })
    }
    pub(crate) fn bits(self) -> u8 {
        self.0
    }
    pub(crate) fn from_bits(bits: u8) -> MetricsOptions {
        MetricsOptions(bits)
    }

    /// The options of the whole config, given each enabled prometheus instance's options and
    /// whether it is global: unrouted requests follow the global instance (none: nothing), and
    /// target health is exported when any instance asks for it (Kong's rule).
    pub fn for_config(instances: &[(bool, MetricsOptions)]) -> MetricsOptions {
        if instances.is_empty() {
            return MetricsOptions::WITHOUT_PLUGIN;
        }
        let global = instances.iter().find(|(g, _)| *g).map_or(MetricsOptions::NONE, |(_, o)| *o);
        global.with_upstream_health(instances.iter().any(|(_, o)| o.upstream_health()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_families() {
        let c = PrometheusConfig { latency_metrics: true, upstream_health_metrics: true, ..Default::default() };
        let o = MetricsOptions::from_config(&c);
        assert!(o.latency() && o.upstream_health());
        assert!(!o.status_codes() && !o.bandwidth() && !o.per_consumer());
        assert_eq!(MetricsOptions::from_config(&PrometheusConfig::default()), MetricsOptions::NONE);
        let w = MetricsOptions::WITHOUT_PLUGIN;
        assert!(w.status_codes() && w.latency() && w.bandwidth() && w.upstream_health() && w.per_consumer());
    }

    #[test]
    fn config_options_follow_the_global_instance_and_any_health_flag() {
        let status = MetricsOptions::from_config(&PrometheusConfig { status_code_metrics: true, ..Default::default() });
        let health =
            MetricsOptions::from_config(&PrometheusConfig { upstream_health_metrics: true, ..Default::default() });
        assert_eq!(MetricsOptions::for_config(&[]), MetricsOptions::WITHOUT_PLUGIN);
        assert_eq!(MetricsOptions::for_config(&[(true, status)]), status);
        assert_eq!(MetricsOptions::for_config(&[(false, status)]), MetricsOptions::NONE);
        assert_eq!(MetricsOptions::for_config(&[(true, status), (false, health)]), status.with_upstream_health(true));
    }
}
