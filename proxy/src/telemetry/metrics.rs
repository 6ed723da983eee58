//! Prometheus metrics with Kong's names, labels and buckets (so Kong dashboards and alerts work
//! unchanged) plus sluice's own gRPC-aware families. Served as text on the status listener only.
//!
//! Cost matters on the request path: label lookups are hashed, so the per-route series that every
//! request touches are resolved once per route and config ([`RouteMetrics`]), leaving a few atomic
//! adds per request. They are resolved on a route's first request (as in Kong, a route's series
//! appear once it has traffic) and kept as plain atomics outside the prometheus registry
//! ([`routes`]). Label values only ever come from config names or bounded sets; request paths
//! never become labels except gRPC service/method of routed calls, and those are capped
//! ([`GRPC_SERIES_LIMIT`]) with the rest counted under `other`. Unrouted requests are counted with
//! empty `service`/`route` (and empty gRPC service/method), never with their path.
//!
//! Some families are computed when `/metrics` is rendered rather than kept up to date on the
//! request path ([`Metrics::render_live`]):
//!
//! - `kong_upstream_target_health`: one series per state for every target of every upstream a
//!   service uses, value 1 for the current state. sluice's passive circuit (balancer.rs) is always
//!   on, so a target is `healthy` or `unhealthy` (circuit open); `healthchecks_off` and `dns_error`
//!   are exported with value 0 so Kong's queries and alerts keep working (a name that does not
//!   resolve fails the connection and so shows as `unhealthy`). `address` is the target's
//!   `host:port` as configured (Kong shows the resolved IP; sluice resolves per connection).
//! - `kong_nginx_connections_total`: nginx's stub_status states, derived honestly from what sluice
//!   counts: `accepted` = connections accepted by the kernel (served + refused at the listener
//!   limit), `handled` = connections served, `total` = requests (as Kong exports it), `active` =
//!   open connections (proxy and status listeners, like nginx), `writing` = requests in flight
//!   (capped at `active`; HTTP/2 multiplexes several per connection), `waiting` = `active` -
//!   `writing` (idle keep-alive connections, and connections still in their TLS/PROXY handshake),
//!   `reading` = 0 (h2 and the HTTP/1.1 reader take whole request heads before sluice sees
//!   them, so that state is not observable; those connections count as `waiting`).

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus::proto::MetricFamily;
use prometheus::{Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

mod options;
mod routes;
pub(crate) use options::MetricsOptions;
use routes::{GrpcSeries, RouteSeries, RouteTable};

use super::ClientProtocol;

/// Distinct (route, grpc service, grpc method) series kept before new ones are folded into `other`.
pub(crate) const GRPC_SERIES_LIMIT: usize = 2000;
const WORKSPACE: &str = "default";
/// Kong's `kong_upstream_target_health` states, in Kong's order.
pub(crate) const TARGET_STATES: [&str; 4] = ["healthchecks_off", "healthy", "unhealthy", "dns_error"];
pub(crate) const TARGET_HEALTH_NAME: &str = "kong_upstream_target_health";
pub(crate) const TARGET_HEALTH_HELP: &str = "Health status of targets of upstream. States = healthchecks_off|healthy|unhealthy|dns_error, value is 1 when state is populated.";
/// `sluice_config_pushes_total` results, created at zero so `rate()` sees the first push.
const PUSH_RESULTS: [&str; 3] = ["accepted", "rejected", "unchanged"];
/// `sluice_rejected_connections_total` reasons (server.rs), created at zero.
const REJECT_REASONS: [&str; 3] = ["listener_limit", "proxy_protocol", "handshake_timeout"];
/// `sluice_h2_resets_total` reasons (rapid_reset.rs), created at zero.
const H2_RESET_REASONS: [&str; 1] = ["rapid_reset"];

/// Spans the opentelemetry plugin did not deliver, by reason (`queue_full`, `export_failed`):
/// process-wide, as the plugin instances come and go with the config.
pub(crate) static OTEL_SPANS_DROPPED: std::sync::LazyLock<IntCounterVec> = std::sync::LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new("sluice_otel_spans_dropped_total", "Spans the opentelemetry plugin dropped, by reason"),
        &["reason"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for reason in ["queue_full", "export_failed"] {
        c.with_label_values(&[reason]);
    }
    c
});

/// All proxy metric families, registered in one registry.
pub struct Metrics {
    registry: Registry,
    pub node_id: String,
    http_requests: IntCounterVec,
    routes: RouteTable,
    grpc_requests: IntCounterVec,
    /// Hashes of the (route, grpc service, grpc method) keys admitted as labels.
    grpc_series: Mutex<HashSet<u64>>,
    grpc_hasher: RandomState,
    pub connections: IntGaugeVec,
    pub nginx_requests: IntGauge,
    pub config_hash: Gauge,
    pub config_pushes: IntCounterVec,
    pub tls_handshake_failures: IntCounterVec,
    pub h2_resets: IntCounterVec,
    pub rejected_connections: IntCounterVec,
    pub active_connections: IntGauge,
    pub accepted_connections: IntCounter,
    /// Requests whose [`crate::telemetry::observe::Completion`] is alive (nginx's `writing`).
    in_flight: AtomicI64,
    /// The live config's [`MetricsOptions::for_config`] bits: unrouted requests and target health.
    options: AtomicU8,
}

/// One route's names and, once it has served a request, its series.
pub struct RouteMetrics {
    pub service: String,
    pub route: String,
    /// The families this route's requests record (its prometheus instance's flags).
    pub options: MetricsOptions,
    series: OnceLock<Arc<RouteSeries>>,
}

/// Up to this many entries in [`RouteSeries::grpc`]; other calls take the hashed lookup.
const GRPC_CACHE: usize = 8;

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = registry.register(Box::new(c.clone()));
    c
}

impl Metrics {
    /// Builds and registers every family. Panics only on a programming error in the static
    /// metric definitions above (names and labels are constants).
    pub fn new(node_id: String, version: &str) -> Metrics {
        let registry = Registry::new();
        let http_requests = counter_vec(
            &registry,
            routes::HTTP_REQUESTS.0,
            routes::HTTP_REQUESTS.1,
            &["service", "route", "code", "source", "workspace", "consumer"],
        );
        let grpc_requests = counter_vec(
            &registry,
            "sluice_grpc_requests_total",
            "gRPC calls per service/route, gRPC service and method, gRPC status (Kong's code label is the HTTP status, 200 for most gRPC failures) and the client's protocol (grpc, grpc-web, json)",
            &["service", "route", "grpc_service", "grpc_method", "grpc_status", "client_protocol"],
        );
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
        for result in PUSH_RESULTS {
            config_pushes.with_label_values(&[result]);
        }
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
        for reason in REJECT_REASONS {
            rejected_connections.with_label_values(&[reason]);
        }
        for reason in H2_RESET_REASONS {
            h2_resets.with_label_values(&[reason]);
        }
        let active_connections = connections.with_label_values(&[&node_id, "http", "active"]);
        let accepted_connections = IntCounter::with_opts(Opts::new(
            "sluice_accepted_connections_total",
            "Connections taken on by proxy and status listeners (not those refused at the listener connection limit)",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let _ = registry.register(Box::new(accepted_connections.clone()));
        let _ = registry.register(Box::new(OTEL_SPANS_DROPPED.clone()));
        Metrics {
            registry,
            node_id,
            http_requests,
            routes: RouteTable::default(),
            grpc_requests,
            grpc_series: Mutex::new(HashSet::new()),
            grpc_hasher: RandomState::new(),
            connections,
            nginx_requests,
            config_hash,
            config_pushes,
            tls_handshake_failures,
            h2_resets,
            rejected_connections,
            active_connections,
            accepted_connections,
            in_flight: AtomicI64::new(0),
            options: AtomicU8::new(MetricsOptions::WITHOUT_PLUGIN.bits()),
        }
    }

    /// A request started (its `Completion` was created).
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A request ended (its `Completion` was dropped, completed or not).
    pub fn request_finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// One route's metrics (called when a config is built); its series are resolved on its first
    /// request.
    pub fn route(&self, service: &str, route: &str, options: MetricsOptions) -> RouteMetrics {
        RouteMetrics { service: service.to_string(), route: route.to_string(), options, series: OnceLock::new() }
    }

    /// The route's series; the first request under a config marks the families its options
    /// record, so that only those are exported for it.
    fn series<'r>(&self, rm: &'r RouteMetrics) -> &'r RouteSeries {
        rm.series.get_or_init(|| {
            let s = self.routes.get(&rm.service, &rm.route);
            s.record(rm.options);
            s
        })
    }

    /// The live config's options (set when a config goes live).
    pub fn options(&self) -> MetricsOptions {
        MetricsOptions::from_bits(self.options.load(Ordering::Relaxed))
    }

    pub fn set_options(&self, options: MetricsOptions) {
        self.options.store(options.bits(), Ordering::Relaxed);
    }

    /// Records one finished request.
    pub fn observe(&self, r: &Observation<'_>) {
        self.nginx_requests.inc();
        match r.route {
            Some(rm) => {
                let o = rm.options;
                if o == MetricsOptions::NONE {
                    return;
                }
                let series = self.series(rm);
                if o.status_codes() {
                    // The consumer label only with `per_consumer` (Kong's rule).
                    let consumer = r.consumer.filter(|_| o.per_consumer());
                    if r.status == 200 && r.from_service && consumer.is_none() {
                        series.ok_from_service.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let code = itoa_status(r.status);
                        let source = if r.from_service { "service" } else { "kong" };
                        let consumer = consumer.unwrap_or("");
                        self.http_requests
                            .with_label_values(&[&rm.service, &rm.route, &code, source, WORKSPACE, consumer])
                            .inc();
                    }
                    if let Some(code) = r.grpc_status {
                        let (svc, method) = r.grpc_call.unwrap_or(("", ""));
                        self.count_grpc_call(rm, series, (svc, method), code, r.client_protocol);
                    }
                }
                if o.latency() {
                    series.request_latency.observe(r.total_ms);
                    if let Some(up) = r.upstream_ms {
                        series.upstream_latency.observe(up);
                        series.kong_latency.observe((r.total_ms - up).max(0.0));
                    } else {
                        series.kong_latency.observe(r.total_ms);
                    }
                }
                if o.bandwidth() {
                    if r.bytes_in > 0 {
                        series.bytes_in.fetch_add(r.bytes_in, Ordering::Relaxed);
                    }
                    if r.bytes_out > 0 {
                        series.bytes_out.fetch_add(r.bytes_out, Ordering::Relaxed);
                    }
                }
            }
            None => {
                // Kong does not count unrouted requests per route; sluice counts them with empty
                // service/route so 404 rates are visible (bounded: fixed label values), when the
                // global prometheus instance (or no instance at all) asks for status codes.
                if !self.options().status_codes() {
                    return;
                }
                self.http_requests.with_label_values(&["", "", &itoa_status(r.status), "kong", WORKSPACE, ""]).inc();
                if let Some(code) = r.grpc_status {
                    let protocol = r.client_protocol.as_str();
                    self.grpc_requests.with_label_values(&["", "", "", "", &itoa_status(code as u16), protocol]).inc();
                }
            }
        }
    }

    /// Counts a routed call in its `sluice_grpc_requests_total` series.
    fn count_grpc_call(
        &self,
        rm: &RouteMetrics,
        series: &RouteSeries,
        (svc, method): (&str, &str),
        code: u8,
        protocol: ClientProtocol,
    ) {
        let mut cache = series.grpc.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = cache
            .iter()
            .find(|g| g.code == code && g.protocol == protocol && *g.method == *method && *g.service == *svc)
        {
            hit.counter.inc();
            return;
        }
        let (label_svc, label_method) = self.bounded_grpc_labels(&rm.route, svc, method);
        let counter = self.grpc_requests.with_label_values(&[
            &rm.service,
            &rm.route,
            label_svc,
            label_method,
            &itoa_status(u16::from(code)),
            protocol.as_str(),
        ]);
        counter.inc();
        if cache.len() < GRPC_CACHE {
            cache.push(GrpcSeries { service: svc.into(), method: method.into(), code, protocol, counter });
        }
    }

    /// The gRPC service and method labels of a routed call: themselves while fewer than
    /// [`GRPC_SERIES_LIMIT`] distinct (route, service, method) keys were seen, else `other`.
    /// Keys are kept as 64-bit hashes (no allocation per call); a collision only lets one extra
    /// key share an admitted slot, so the bound holds up to collisions.
    fn bounded_grpc_labels<'a>(&self, route: &str, svc: &'a str, method: &'a str) -> (&'a str, &'a str) {
        let key = self.grpc_hasher.hash_one((route, svc, method));
        let mut seen = self.grpc_series.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(&key) || (seen.len() < GRPC_SERIES_LIMIT && seen.insert(key)) {
            (svc, method)
        } else {
            ("other", "other")
        }
    }

    /// The text exposition of every registered family.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        self.routes.add_to(&mut families);
        encode(&families)
    }

    /// The text exposition with the families computed at scrape time from the live runtime and
    /// the connection counters (see the module docs): what `/metrics` serves.
    /// `computed` are families built by the caller from the live runtime (target health).
    pub fn render_live(&self, computed: Vec<MetricFamily>) -> String {
        self.update_connection_states();
        let mut families = self.registry.gather();
        self.routes.add_to(&mut families);
        for family in computed {
            let at = families.partition_point(|f| f.name() < family.name());
            families.insert(at, family);
        }
        encode(&families)
    }

    /// Sets the nginx stub_status states other than `active` (kept live by server.rs).
    fn update_connection_states(&self) {
        let handled = self.accepted_connections.get() as i64;
        let refused = self.rejected_connections.with_label_values(&["listener_limit"]).get() as i64;
        let active = self.active_connections.get();
        let writing = self.in_flight.load(Ordering::Relaxed).clamp(0, active.max(0));
        let set = |state: &str, v: i64| self.connections.with_label_values(&[&self.node_id, "http", state]).set(v);
        set("accepted", handled + refused);
        set("handled", handled);
        set("total", self.nginx_requests.get());
        set("reading", 0);
        set("writing", writing);
        set("waiting", (active - writing).max(0));
    }

    /// Sets `kong_data_plane_config_hash` from a 32-hex-digit hash.
    pub fn set_config_hash(&self, hash: &str) {
        let prefix = &hash[..hash.len().min(13)];
        self.config_hash.set(u64::from_str_radix(prefix, 16).unwrap_or(0) as f64);
    }
}

fn encode(families: &[MetricFamily]) -> String {
    let mut buf = Vec::with_capacity(16 * 1024);
    // Encoding into a Vec fails only for a malformed family, which the registry rules out.
    let _ = TextEncoder::new().encode(families, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
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
    pub client_protocol: ClientProtocol,
    pub total_ms: f64,
    pub upstream_ms: Option<f64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The authenticated consumer (`consumer` label), if any.
    pub consumer: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grpc_call<'a>(route: &'a RouteMetrics, service: &'a str, method: &'a str) -> Observation<'a> {
        Observation {
            route: Some(route),
            status: 200,
            from_service: true,
            grpc_status: Some(0),
            grpc_call: Some((service, method)),
            client_protocol: ClientProtocol::Grpc,
            total_ms: 1.0,
            upstream_ms: Some(0.5),
            bytes_in: 0,
            bytes_out: 0,
            consumer: None,
        }
    }

    fn grpc_lines(m: &Metrics) -> Vec<String> {
        m.render().lines().filter(|l| l.starts_with("sluice_grpc_requests_total{")).map(str::to_string).collect()
    }

    #[test]
    fn grpc_series_are_capped_and_the_rest_count_as_other() {
        let m = Metrics::new("n".into(), "0");
        let route = m.route("s", "r", MetricsOptions::WITHOUT_PLUGIN);
        for i in 0..GRPC_SERIES_LIMIT {
            m.observe(&grpc_call(&route, "pkg.Svc", &format!("M{i}")));
        }
        assert_eq!(grpc_lines(&m).len(), GRPC_SERIES_LIMIT);
        // Past the cap: new keys fold into `other`; admitted keys keep their own series.
        m.observe(&grpc_call(&route, "pkg.Svc", "New1"));
        m.observe(&grpc_call(&route, "pkg.Other", "New2"));
        m.observe(&grpc_call(&route, "pkg.Svc", "M0"));
        let lines = grpc_lines(&m);
        assert_eq!(lines.len(), GRPC_SERIES_LIMIT + 1);
        let other = r#"sluice_grpc_requests_total{client_protocol="grpc",grpc_method="other",grpc_service="other",grpc_status="0",route="r",service="s"} 2"#;
        assert!(lines.iter().any(|l| l == other), "{lines:?}");
        let m0 = r#"sluice_grpc_requests_total{client_protocol="grpc",grpc_method="M0",grpc_service="pkg.Svc",grpc_status="0",route="r",service="s"} 2"#;
        assert!(lines.iter().any(|l| l == m0), "{lines:?}");
        assert!(!lines.iter().any(|l| l.contains("New")), "{lines:?}");
    }

    #[test]
    fn repeated_calls_keep_their_own_method_and_status_series() {
        let m = Metrics::new("n".into(), "0");
        let route = m.route("s", "r", MetricsOptions::WITHOUT_PLUGIN);
        // Alternating keys, more of them than the per-route cache holds, each with two statuses.
        for round in 0..3 {
            for i in 0..GRPC_CACHE + 2 {
                let mut call = grpc_call(&route, "pkg.Svc", ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"][i]);
                call.grpc_status = Some(if round == 2 { 14 } else { 0 });
                m.observe(&call);
            }
        }
        let lines = grpc_lines(&m);
        assert_eq!(lines.len(), 2 * (GRPC_CACHE + 2), "{lines:?}");
        for method in ["A", "J"] {
            let ok = format!(
                r#"sluice_grpc_requests_total{{client_protocol="grpc",grpc_method="{method}",grpc_service="pkg.Svc",grpc_status="0",route="r",service="s"}} 2"#
            );
            let failed = format!(
                r#"sluice_grpc_requests_total{{client_protocol="grpc",grpc_method="{method}",grpc_service="pkg.Svc",grpc_status="14",route="r",service="s"}} 1"#
            );
            assert!(lines.contains(&ok) && lines.contains(&failed), "{lines:?}");
        }
    }

    #[test]
    fn client_protocols_are_separate_series_of_one_method() {
        let m = Metrics::new("n".into(), "0");
        let rm = m.route("s", "r", MetricsOptions::WITHOUT_PLUGIN);
        for protocol in [ClientProtocol::GrpcWeb, ClientProtocol::Grpc, ClientProtocol::GrpcWeb, ClientProtocol::Json] {
            m.observe(&Observation { client_protocol: protocol, ..grpc_call(&rm, "pkg.Svc", "M") });
        }
        let line = |p: &str, n: u32| {
            format!(
                r#"sluice_grpc_requests_total{{client_protocol="{p}",grpc_method="M",grpc_service="pkg.Svc",grpc_status="0",route="r",service="s"}} {n}"#
            )
        };
        assert_eq!(grpc_lines(&m), [line("grpc", 1), line("grpc-web", 2), line("json", 1)]);
    }

    #[test]
    fn unrouted_requests_use_fixed_labels() {
        let m = Metrics::new("n".into(), "0");
        for code in [404u16, 404, 200] {
            m.observe(&Observation {
                route: None,
                status: code,
                from_service: false,
                grpc_status: (code == 200).then_some(12),
                grpc_call: Some(("pkg.Svc", "Method")),
                client_protocol: ClientProtocol::Grpc,
                total_ms: 1.0,
                upstream_ms: None,
                bytes_in: 3,
                bytes_out: 4,
                consumer: None,
            });
        }
        let text = m.render();
        let http: Vec<&str> = text.lines().filter(|l| l.starts_with("kong_http_requests_total{")).collect();
        assert_eq!(
            http,
            [
                r#"kong_http_requests_total{code="200",consumer="",route="",service="",source="kong",workspace="default"} 1"#,
                r#"kong_http_requests_total{code="404",consumer="",route="",service="",source="kong",workspace="default"} 2"#,
            ]
        );
        assert_eq!(
            grpc_lines(&m),
            [
                r#"sluice_grpc_requests_total{client_protocol="grpc",grpc_method="",grpc_service="",grpc_status="12",route="",service=""} 1"#
            ]
        );
        assert!(!text.contains("pkg.Svc") && !text.contains("kong_bandwidth_bytes{"), "{text}");
    }

    #[test]
    fn connection_states_are_derived_from_the_counters() {
        let m = Metrics::new("n".into(), "0");
        for _ in 0..5 {
            m.accepted_connections.inc();
        }
        m.rejected_connections.with_label_values(&["listener_limit"]).inc_by(2);
        m.active_connections.set(3);
        m.nginx_requests.set(7);
        // Four requests in flight on three connections (HTTP/2): writing is capped at active.
        for _ in 0..4 {
            m.request_started();
        }
        m.update_connection_states();
        let state = |s: &str| m.connections.with_label_values(&["n", "http", s]).get();
        let states: Vec<i64> =
            ["accepted", "handled", "total", "active", "reading", "writing", "waiting"].map(state).to_vec();
        assert_eq!(states, [7, 5, 7, 3, 0, 3, 0]);
        for _ in 0..3 {
            m.request_finished();
        }
        m.update_connection_states();
        assert_eq!((state("writing"), state("waiting")), (1, 2));
    }
}
