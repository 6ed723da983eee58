//! `prometheus`: Kong's plugin has no request handler of its own here; its flags decide which
//! families the requests of the routes it applies to record. The instance Kong's precedence picks
//! for a route is read once per config ([`super::PluginChain::metrics_options`]) into the route's
//! metrics (`telemetry::metrics::MetricsOptions`), so a request pays nothing for it.

use proxy_config::plugins::PrometheusConfig;

use super::{Phases, Plugin};
use crate::telemetry::metrics::MetricsOptions;

pub(crate) const NAME: &str = proxy_config::plugins::prometheus::NAME;

#[derive(Debug)]
pub(crate) struct Prometheus(MetricsOptions);

impl Prometheus {
    pub(crate) fn new(c: &PrometheusConfig) -> Self {
        Prometheus(MetricsOptions::from_config(c))
    }
}

impl Plugin for Prometheus {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> u32 {
        13
    }
    fn phases(&self) -> Phases {
        Phases::NONE
    }
    fn metrics_options(&self) -> Option<MetricsOptions> {
        Some(self.0)
    }
}
