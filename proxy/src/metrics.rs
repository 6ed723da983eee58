//! Prometheus metrics with Kong's names, labels and buckets (so Kong dashboards and alerts work
//! unchanged) plus sluice's own gRPC-aware families. Served as text on the status listener only.
//!
//! Cost matters on the request path: label lookups are hashed, so the per-route series that every
//! request touches are resolved once per config ([`RouteMetrics`]), leaving a few atomic adds per
//! request. Label values only ever come from config names or bounded sets; request paths never
//! become labels except gRPC service/method of routed calls, and those are capped
//! ([`GRPC_SERIES_LIMIT`]) with the rest counted under `other`.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Kong's `kong_kong_latency_ms` buckets.
const KONG_LATENCY_BUCKETS: &[f64] =
    &[1.0, 2.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0, 500.0, 750.0, 1000.0, 3000.0, 6000.0];
/// Kong's `kong_upstream_latency_ms` / `kong_request_latency_ms` buckets.
const UPSTREAM_LATENCY_BUCKETS: &[f64] =
    &[25.0, 50.0, 80.0, 100.0, 250.0, 400.0, 700.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0, 60000.0];
/// Distinct (route, grpc service, grpc method) series kept before new ones are folded into `other`.
pub const GRPC_SERIES_LIMIT: usize = 2000;
const WORKSPACE: &str = "default";

/// All proxy metric families, registered in one registry.
pub struct Metrics {
    registry: Registry,
    pub node_id: String,
    http_requests: IntCounterVec,
    kong_latency: HistogramVec,
    upstream_latency: HistogramVec,
    request_latency: HistogramVec,
    bandwidth: IntCounterVec,
    grpc_requests: IntCounterVec,
    grpc_series: Mutex<HashSet<(String, String, String)>>,
    pub target_health: GaugeVec,
    pub connections: IntGaugeVec,
    pub nginx_requests: IntGauge,
    pub config_hash: Gauge,
    pub config_pushes: IntCounterVec,
    pub tls_handshake_failures: IntCounterVec,
    pub h2_resets: IntCounterVec,
    pub rejected_connections: IntCounterVec,
    pub active_connections: IntGauge,
    pub accepted_connections: IntCounter,
}

/// Handles for the series one route's requests touch, resolved when the config is built.
pub struct RouteMetrics {
    pub service: String,
    pub route: String,
    ok_from_service: IntCounter,
    kong_latency: Histogram,
    upstream_latency: Histogram,
    request_latency: Histogram,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = registry.register(Box::new(c.clone()));
    c
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> HistogramVec {
    let h =
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), &["service", "route", "workspace"])
            .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = registry.register(Box::new(h.clone()));
    h
}

impl Metrics {
    /// Builds and registers every family. Panics only on a programming error in the static
    /// metric definitions above (names and labels are constants).
    pub fn new(node_id: String, version: &str) -> Metrics {
        let registry = Registry::new();
        let http_requests = counter_vec(
            &registry,
            "kong_http_requests_total",
            "HTTP status codes per consumer/service/route in Kong",
            &["service", "route", "code", "source", "workspace", "consumer"],
        );
        let kong_latency = histogram_vec(
            &registry,
            "kong_kong_latency_ms",
            "Latency added by Kong and enabled plugins for each service/route in Kong",
            KONG_LATENCY_BUCKETS,
        );
        let upstream_latency = histogram_vec(
            &registry,
            "kong_upstream_latency_ms",
            "Latency added by upstream response for each service/route in Kong",
            UPSTREAM_LATENCY_BUCKETS,
        );
        let request_latency = histogram_vec(
            &registry,
            "kong_request_latency_ms",
            "Total latency incurred during requests for each service/route in Kong",
            UPSTREAM_LATENCY_BUCKETS,
        );
        let bandwidth = counter_vec(
            &registry,
            "kong_bandwidth_bytes",
            "Total bandwidth (ingress/egress) throughput in bytes",
            &["service", "route", "direction", "workspace", "consumer"],
        );
        let grpc_requests = counter_vec(
            &registry,
            "sluice_grpc_requests_total",
            "gRPC calls per service/route, gRPC service and method, and gRPC status (Kong's code label is the HTTP status, 200 for most gRPC failures)",
            &["service", "route", "grpc_service", "grpc_method", "grpc_status"],
        );
        let target_health = GaugeVec::new(
            Opts::new("kong_upstream_target_health", "Health status of targets of upstream. States = healthchecks_off|healthy|unhealthy|dns_error, value is 1 when state is populated."),
            &["upstream", "target", "address", "state", "subsystem"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let _ = registry.register(Box::new(target_health.clone()));
        let connections = IntGaugeVec::new(
            Opts::new("kong_nginx_connections_total", "Number of connections by subsystem"),
            &["node_id", "subsystem", "state"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let _ = registry.register(Box::new(connections.clone()));
        let nginx_requests = IntGauge::with_opts(
            Opts::new("kong_nginx_requests_total", "Number of requests total")
                .const_label("node_id", node_id.clone())
                .const_label("subsystem", "http"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let _ = registry.register(Box::new(nginx_requests.clone()));
        let node_info = IntGauge::with_opts(
            Opts::new("kong_node_info", "Kong Node metadata information")
                .const_label("node_id", node_id.clone())
                .const_label("version", version.to_string()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        node_info.set(1);
        let _ = registry.register(Box::new(node_info));
        let config_hash = Gauge::with_opts(
            Opts::new(
                "kong_data_plane_config_hash",
                "Config hash numeric value of the data plane (first 13 hex digits)",
            )
            .const_label("node_id", node_id.clone()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let _ = registry.register(Box::new(config_hash.clone()));
        let config_pushes =
            counter_vec(&registry, "sluice_config_pushes_total", "Config pushes by result", &["result"]);
        let tls_handshake_failures = counter_vec(
            &registry,
            "sluice_tls_handshake_failures_total",
            "TLS handshakes that failed, per listener",
            &["listener"],
        );
        let h2_resets = counter_vec(
            &registry,
            "sluice_h2_resets_total",
            "HTTP/2 streams reset or connections cut for abuse, by reason",
            &["reason"],
        );
        let rejected_connections = counter_vec(
            &registry,
            "sluice_rejected_connections_total",
            "Connections closed before serving, by reason",
            &["reason"],
        );
        let active_connections = connections.with_label_values(&[&node_id, "http", "active"]);
        let accepted_connections = IntCounter::with_opts(Opts::new(
            "sluice_accepted_connections_total",
            "Connections accepted on proxy listeners",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let _ = registry.register(Box::new(accepted_connections.clone()));
        Metrics {
            registry,
            node_id,
            http_requests,
            kong_latency,
            upstream_latency,
            request_latency,
            bandwidth,
            grpc_requests,
            grpc_series: Mutex::new(HashSet::new()),
            target_health,
            connections,
            nginx_requests,
            config_hash,
            config_pushes,
            tls_handshake_failures,
            h2_resets,
            rejected_connections,
            active_connections,
            accepted_connections,
        }
    }

    /// Resolves the series of one route (called when a config is built).
    pub fn route(&self, service: &str, route: &str) -> RouteMetrics {
        let sr = [service, route, WORKSPACE];
        RouteMetrics {
            service: service.to_string(),
            route: route.to_string(),
            ok_from_service: self.http_requests.with_label_values(&[service, route, "200", "service", WORKSPACE, ""]),
            kong_latency: self.kong_latency.with_label_values(&sr),
            upstream_latency: self.upstream_latency.with_label_values(&sr),
            request_latency: self.request_latency.with_label_values(&sr),
            bytes_in: self.bandwidth.with_label_values(&[service, route, "ingress", WORKSPACE, ""]),
            bytes_out: self.bandwidth.with_label_values(&[service, route, "egress", WORKSPACE, ""]),
        }
    }

    /// Records one finished request.
    pub fn observe(&self, r: &Observation<'_>) {
        self.nginx_requests.inc();
        match r.route {
            Some(rm) => {
                if r.status == 200 && r.from_service {
                    rm.ok_from_service.inc();
                } else {
                    let code = itoa_status(r.status);
                    let source = if r.from_service { "service" } else { "kong" };
                    self.http_requests.with_label_values(&[&rm.service, &rm.route, &code, source, WORKSPACE, ""]).inc();
                }
                rm.request_latency.observe(r.total_ms);
                if let Some(up) = r.upstream_ms {
                    rm.upstream_latency.observe(up);
                    rm.kong_latency.observe((r.total_ms - up).max(0.0));
                } else {
                    rm.kong_latency.observe(r.total_ms);
                }
                if r.bytes_in > 0 {
                    rm.bytes_in.inc_by(r.bytes_in);
                }
                if r.bytes_out > 0 {
                    rm.bytes_out.inc_by(r.bytes_out);
                }
                if let Some(code) = r.grpc_status {
                    let (svc, method) = r.grpc_call.unwrap_or(("", ""));
                    let (svc, method) = self.bounded_grpc_labels(&rm.route, svc, method);
                    self.grpc_requests
                        .with_label_values(&[&rm.service, &rm.route, &svc, &method, &itoa_status(code as u16)])
                        .inc();
                }
            }
            None => {
                // Kong does not count unrouted requests per route; sluice counts them with empty
                // service/route so 404 rates are visible (bounded: fixed label values).
                self.http_requests.with_label_values(&["", "", &itoa_status(r.status), "kong", WORKSPACE, ""]).inc();
                if let Some(code) = r.grpc_status {
                    self.grpc_requests.with_label_values(&["", "", "", "", &itoa_status(code as u16)]).inc();
                }
            }
        }
    }

    fn bounded_grpc_labels(&self, route: &str, svc: &str, method: &str) -> (String, String) {
        let key = (route.to_string(), svc.to_string(), method.to_string());
        let mut seen = self.grpc_series.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(&key) || (seen.len() < GRPC_SERIES_LIMIT && seen.insert(key)) {
            (svc.to_string(), method.to_string())
        } else {
            ("other".to_string(), "other".to_string())
        }
    }

    /// The text exposition of every family.
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        let families = self.registry.gather();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&families, &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Sets `kong_data_plane_config_hash` from a 32-hex-digit hash.
    pub fn set_config_hash(&self, hash: &str) {
        let prefix = &hash[..hash.len().min(13)];
        self.config_hash.set(u64::from_str_radix(prefix, 16).unwrap_or(0) as f64);
    }
}

fn itoa_status(code: u16) -> String {
    code.to_string()
}

/// What the metrics need to know about one finished request.
pub struct Observation<'a> {
    pub route: Option<&'a RouteMetrics>,
    pub status: u16,
    pub from_service: bool,
    pub grpc_status: Option<u8>,
    pub grpc_call: Option<(&'a str, &'a str)>,
    pub total_ms: f64,
    pub upstream_ms: Option<f64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}
