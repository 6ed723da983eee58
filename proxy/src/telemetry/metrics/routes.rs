//! Kong's per-route families (`kong_http_requests_total` for 200s from the service, the three
//! latency histograms, `kong_bandwidth_bytes`) kept as plain atomics per route and turned into
//! metric families when `/metrics` is scraped.
//!
//! Why not the prometheus crate's vectors: each of its series carries a descriptor and label
//! protos, about 7 KiB of RSS for a route's six, so 10,000 routes that have all served a request
//! cost 72 MiB. Here a route costs its counters (under 1 KiB). A route's series appear with its
//! first request (as in Kong) and outlive config pushes: they are keyed by service and route name,
//! so a push that keeps a route keeps its counts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::proto::{Bucket, Counter, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::IntCounter;

use super::{MetricsOptions, WORKSPACE};

/// Kong's `kong_kong_latency_ms` buckets.
pub(super) const KONG_LATENCY_BUCKETS: &[f64] =
    &[1.0, 2.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0, 500.0, 750.0, 1000.0, 3000.0, 6000.0];
/// Kong's `kong_upstream_latency_ms` / `kong_request_latency_ms` buckets.
pub(super) const UPSTREAM_LATENCY_BUCKETS: &[f64] =
    &[25.0, 50.0, 80.0, 100.0, 250.0, 400.0, 700.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0, 60000.0];

pub(super) const HTTP_REQUESTS: (&str, &str) =
    ("kong_http_requests_total", "HTTP status codes per consumer/service/route in Kong");
const KONG_LATENCY: (&str, &str) =
    ("kong_kong_latency_ms", "Latency added by Kong and enabled plugins for each service/route in Kong");
const UPSTREAM_LATENCY: (&str, &str) =
    ("kong_upstream_latency_ms", "Latency added by upstream response for each service/route in Kong");
const REQUEST_LATENCY: (&str, &str) =
    ("kong_request_latency_ms", "Total latency incurred during requests for each service/route in Kong");
const BANDWIDTH: (&str, &str) = ("kong_bandwidth_bytes", "Total bandwidth (ingress/egress) throughput in bytes");

/// A fixed-bucket histogram.
pub(super) struct Hist {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the `+Inf` bucket is `count`.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// The sum, as `f64` bits.
    sum: AtomicU64,
}

impl Hist {
    fn new(bounds: &'static [f64]) -> Self {
        Hist {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub(super) fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut cur = self.sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(cur) + v).to_bits();
            match self.sum.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
    }

    fn proto(&self) -> Histogram {
        let mut cumulative = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(self.buckets.iter())
            .map(|(bound, n)| {
                cumulative += n.load(Ordering::Relaxed);
                let mut b = Bucket::default();
                b.set_upper_bound(*bound);
                b.set_cumulative_count(cumulative);
                b
            })
            .collect();
        let mut h = Histogram::default();
        h.set_bucket(buckets);
        // Read after the buckets; never below them (an observation may be half recorded).
        h.set_sample_count(self.count.load(Ordering::Relaxed).max(cumulative));
        h.set_sample_sum(f64::from_bits(self.sum.load(Ordering::Relaxed)));
        h
    }
}

/// The series of one (service, route).
pub(super) struct RouteSeries {
    pub ok_from_service: AtomicU64,
    pub kong_latency: Hist,
    pub upstream_latency: Hist,
    pub request_latency: Hist,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// The `sluice_grpc_requests_total` series this route's calls used, so a repeated (service,
    /// method, status) skips the label hashing (a route serves a handful of methods).
    pub grpc: Mutex<Vec<GrpcSeries>>,
    /// The [`MetricsOptions`] bits of every config this route recorded under: the families
    /// exported for it (a family never recorded is not shown at zero).
    recorded: AtomicU8,
}

pub(super) struct GrpcSeries {
    pub service: Box<str>,
    pub method: Box<str>,
    pub code: u8,
    pub protocol: super::super::ClientProtocol,
    pub counter: IntCounter,
}

impl RouteSeries {
    fn new() -> Self {
        RouteSeries {
            ok_from_service: AtomicU64::new(0),
            kong_latency: Hist::new(KONG_LATENCY_BUCKETS),
            upstream_latency: Hist::new(UPSTREAM_LATENCY_BUCKETS),
            request_latency: Hist::new(UPSTREAM_LATENCY_BUCKETS),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            grpc: Mutex::new(Vec::new()),
            recorded: AtomicU8::new(0),
        }
    }

    /// Requests under `options` record into these series.
    pub(super) fn record(&self, options: MetricsOptions) {
        self.recorded.fetch_or(options.bits(), Ordering::Relaxed);
    }

    fn recorded(&self) -> MetricsOptions {
        MetricsOptions::from_bits(self.recorded.load(Ordering::Relaxed))
    }
}

/// Every route's series, by (service, route) name.
#[derive(Default)]
pub(super) struct RouteTable {
    routes: Mutex<BTreeMap<(String, String), Arc<RouteSeries>>>,
}

impl RouteTable {
    /// The series of a route, made on first use.
    pub(super) fn get(&self, service: &str, route: &str) -> Arc<RouteSeries> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = routes.get(&(service.to_string(), route.to_string())) {
            return s.clone();
        }
        let s = Arc::new(RouteSeries::new());
        routes.insert((service.to_string(), route.to_string()), s.clone());
        s
    }

    /// Adds the per-route series to `families` (gathered from the registry, sorted by name):
    /// into the registry's `kong_http_requests_total` when it has one, else as new families.
    pub(super) fn add_to(&self, families: &mut Vec<MetricFamily>) {
        let routes: Vec<((String, String), Arc<RouteSeries>)> = {
            let r = self.routes.lock().unwrap_or_else(|p| p.into_inner());
            r.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        if routes.is_empty() {
            return;
        }
        let mut ok = Vec::with_capacity(routes.len());
        let (mut kong, mut upstream, mut request) = (Vec::new(), Vec::new(), Vec::new());
        let mut bandwidth = Vec::with_capacity(2 * routes.len());
        for ((service, route), s) in &routes {
            let counter = |v: &AtomicU64, labels: &[(&str, &str)]| {
                let mut c = Counter::default();
                c.set_value(v.load(Ordering::Relaxed) as f64);
                let mut m = Metric::from_label(label_pairs(labels));
                m.set_counter(c);
                m
            };
            let recorded = s.recorded();
            if recorded.status_codes() {
                ok.push(counter(
                    &s.ok_from_service,
                    &[
                        ("code", "200"),
                        ("consumer", ""),
                        ("route", route),
                        ("service", service),
                        ("source", "service"),
                        ("workspace", WORKSPACE),
                    ],
                ));
            }
            let sr = [("route", route.as_str()), ("service", service.as_str()), ("workspace", WORKSPACE)];
            let latencies = [
                (&s.kong_latency, &mut kong),
                (&s.upstream_latency, &mut upstream),
                (&s.request_latency, &mut request),
            ];
            for (hist, out) in latencies.into_iter().filter(|_| recorded.latency()) {
                let mut m = Metric::from_label(label_pairs(&sr));
                m.set_histogram(hist.proto());
                out.push(m);
            }
            for (direction, v) in
                [("egress", &s.bytes_out), ("ingress", &s.bytes_in)].into_iter().filter(|_| recorded.bandwidth())
            {
                bandwidth.push(counter(
                    v,
                    &[
                        ("consumer", ""),
                        ("direction", direction),
                        ("route", route),
                        ("service", service),
                        ("workspace", WORKSPACE),
                    ],
                ));
            }
        }
        merge(families, HTTP_REQUESTS, MetricType::COUNTER, ok);
        merge(families, KONG_LATENCY, MetricType::HISTOGRAM, kong);
        merge(families, UPSTREAM_LATENCY, MetricType::HISTOGRAM, upstream);
        merge(families, REQUEST_LATENCY, MetricType::HISTOGRAM, request);
        merge(families, BANDWIDTH, MetricType::COUNTER, bandwidth);
    }
}

/// Label pairs, given sorted by name (the order the text format is written in).
fn label_pairs(labels: &[(&str, &str)]) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(name, value)| {
            let mut l = LabelPair::default();
            l.set_name((*name).to_string());
            l.set_value((*value).to_string());
            l
        })
        .collect()
}

/// Appends `metrics` to the family `name` in `families` (kept sorted by name), creating it.
fn merge(families: &mut Vec<MetricFamily>, (name, help): (&str, &str), kind: MetricType, metrics: Vec<Metric>) {
    // A family without series cannot be encoded.
    if metrics.is_empty() {
        return;
    }
    if let Some(f) = families.iter_mut().find(|f| f.name() == name) {
        f.mut_metric().extend(metrics);
        return;
    }
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    let at = families.partition_point(|x| x.name() < name);
    families.insert(at, f);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_includes_overflow() {
        let h = Hist::new(&[1.0, 5.0]);
        for v in [0.5, 1.0, 3.0, 9.0] {
            h.observe(v);
        }
        let p = h.proto();
        let counts: Vec<u64> = p.get_bucket().iter().map(|b| b.cumulative_count()).collect();
        assert_eq!(counts, [2, 3]);
        assert_eq!(p.get_sample_count(), 4);
        assert_eq!(p.get_sample_sum(), 13.5);
    }

    #[test]
    fn a_route_keeps_its_series_and_they_join_the_registry_family() {
        let t = RouteTable::default();
        t.get("s", "r").record(MetricsOptions::WITHOUT_PLUGIN);
        t.get("s", "r").ok_from_service.fetch_add(2, Ordering::Relaxed);
        t.get("s", "r").ok_from_service.fetch_add(1, Ordering::Relaxed);
        let mut existing = MetricFamily::default();
        existing.set_name(HTTP_REQUESTS.0.to_string());
        existing.set_metric(vec![Metric::default()]);
        let mut families = vec![existing];
        t.add_to(&mut families);
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "kong_bandwidth_bytes",
                "kong_http_requests_total",
                "kong_kong_latency_ms",
                "kong_request_latency_ms",
                "kong_upstream_latency_ms"
            ]
        );
        let http = &families[1];
        assert_eq!(http.get_metric().len(), 2);
        assert_eq!(http.get_metric()[1].get_counter().get_value(), 3.0);
    }
}
