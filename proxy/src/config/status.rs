//! The status listener (`KONG_STATUS_LISTEN`): `/status`, `/status/ready` (503 until a non-empty
//! config is live), `/metrics`. It never proxies, and the config API is not here (unix socket only).

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, Opts, Registry};

use crate::config::state::{LiveConfig, State};
use crate::downstream::request_body::ClientBody;
use crate::downstream::ConnInfo;
use crate::downstream::Handler;
use crate::respond::json_response;
use crate::response_body::ProxyBody;
use crate::telemetry::metrics::{TARGET_HEALTH_HELP, TARGET_HEALTH_NAME, TARGET_STATES};

pub(crate) struct StatusHandler {
    pub state: Arc<State>,
}

impl Handler for StatusHandler {
    async fn call(
        self: Arc<Self>,
        req: Request<ClientBody>,
        _conn: Arc<ConnInfo>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        Ok(self.respond(req.method(), req.uri().path()))
    }
}

impl StatusHandler {
    pub(crate) fn respond(&self, method: &Method, path: &str) -> Response<ProxyBody> {
        if method != Method::GET && method != Method::HEAD {
            return json_response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
        }
        match path {
            "/status" => crate::config::admin::status_body(&self.state),
            "/status/ready" => {
                if self.state.current().is_empty() {
                    json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no configuration available (empty configuration present)",
                    )
                } else {
                    json_response(StatusCode::OK, "ready")
                }
            }
            "/metrics" => {
                let rt = self.state.load();
                // Kong's `upstream_health_metrics` (MetricsOptions::upstream_health).
                let health = if rt.metrics_options.upstream_health() { target_health(&rt) } else { Vec::new() };
                let mut r = Response::new(ProxyBody::full(self.state.metrics.render_live(health)));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
                r
            }
            _ => json_response(StatusCode::NOT_FOUND, "Not found"),
        }
    }
}

/// `kong_upstream_target_health` for the upstreams the live runtime's services use, built fresh
/// per scrape so that removed targets disappear with their config.
fn target_health(rt: &LiveConfig) -> Vec<MetricFamily> {
    let Ok(gauge) = GaugeVec::new(
        Opts::new(TARGET_HEALTH_NAME, TARGET_HEALTH_HELP),
        &["upstream", "target", "address", "state", "subsystem"],
    ) else {
        return Vec::new();
    };
    let mut seen: HashSet<&str> = HashSet::new();
    for balancer in rt.services.iter().filter_map(|s| s.balancer.as_deref()) {
        if !seen.insert(&balancer.name) {
            continue;
        }
        for t in &balancer.targets {
            let address = if t.host.contains(':') {
                format!("[{}]:{}", t.host, t.port)
            } else {
                format!("{}:{}", t.host, t.port)
            };
            let current = if t.health.is_healthy() { "healthy" } else { "unhealthy" };
            for state in TARGET_STATES {
                gauge
                    .with_label_values(&[&*balancer.name, &*t.label, address.as_str(), state, "http"])
                    .set(if state == current { 1.0 } else { 0.0 });
            }
        }
    }
    // A registry of its own sorts the series and leaves out a family without any.
    let registry = Registry::new();
    match registry.register(Box::new(gauge)) {
        Ok(()) => registry.gather(),
        Err(_) => Vec::new(),
    }
}
