//! The status listener (`KONG_STATUS_LISTEN`): `/status`, `/status/ready` (503 until a non-empty
//! config is live), `/metrics`, and `/status/upstreams/{name}/health` (Kong's
//! `GET /upstreams/{name}/health`). It never proxies, and the config API is not here (unix socket only).

use std::convert::Infallible;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, Opts, Registry};

use crate::config::state::{LiveConfig, State};
use crate::config::upstream_health;
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
            _ => match path.strip_prefix("/status/upstreams/").and_then(|p| p.strip_suffix("/health")) {
                Some(name) => match upstream_health::find(&self.state.load(), name) {
                    Some(b) => crate::config::admin::json(StatusCode::OK, &upstream_health::upstream_health(b)),
                    None => json_response(StatusCode::NOT_FOUND, "Not found"),
                },
                None => json_response(StatusCode::NOT_FOUND, "Not found"),
            },
        }
    }
}

/// `kong_upstream_target_health` for every upstream of the live runtime, built fresh
/// per scrape so that removed targets disappear with their config.
fn target_health(rt: &LiveConfig) -> Vec<MetricFamily> {
    let Ok(gauge) = GaugeVec::new(
        Opts::new(TARGET_HEALTH_NAME, TARGET_HEALTH_HELP),
        &["upstream", "target", "address", "state", "subsystem"],
    ) else {
        return Vec::new();
    };
    for balancer in &rt.balancers {
        for t in &balancer.targets {
            let address = upstream_health::address(t);
            let current = upstream_health::metric_state(t);
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
