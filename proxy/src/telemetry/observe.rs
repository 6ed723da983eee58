//! The record of one request, completed exactly once when its response ends (or the client goes
//! away), which then feeds the metrics and the access log. Keeping this in one type means the
//! request path only fills fields; what is derived from them is decided here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};
use tokio::time::Instant;

use crate::telemetry::access_log::{self, AccessLog, Entry};
use crate::telemetry::metrics::{Metrics, Observation, RouteMetrics};
use crate::telemetry::ClientProtocol;
use crate::wire::grpc;

/// Where finished requests go.
pub(crate) struct Observer {
    pub metrics: Arc<Metrics>,
    pub access_log: Option<AccessLog>,
    /// `false` with `SLUICE_METRICS=off`: finished requests are not recorded in the metrics (to
    /// measure what they cost).
    pub metrics_enabled: bool,
}

/// Request details kept only when the access log is on (they cost allocations).
pub(crate) struct LogDetails {
    pub method: Method,
    pub host: String,
    pub path: String,
    pub protocol: &'static str,
}

/// How a request ended, for a trace that ends with it (the opentelemetry plugin's server span).
pub(crate) struct Outcome<'a> {
    pub status: u16,
    pub grpc_status: Option<u8>,
    pub error: Option<&'a str>,
}

/// A request's trace, ended when the request's record is (so at the same moment for upstream
/// responses, the proxy's own replies and cancelled calls).
pub(crate) trait TraceEnd: Send + Sync {
    fn end(self: Box<Self>, outcome: &Outcome<'_>);
}

/// One request in flight.
pub(crate) struct Completion {
    observer: Arc<Observer>,
    start: Instant,
    client: SocketAddr,
    route: Option<Arc<RouteMetrics>>,
    grpc_path: Option<Box<str>>,
    client_protocol: ClientProtocol,
    details: Option<Box<LogDetails>>,
    upstream: Option<Arc<str>>,
    upstream_latency: Option<Duration>,
    status: u16,
    from_service: bool,
    grpc_status: Option<u8>,
    bytes_in: Option<Arc<AtomicU64>>,
    bytes_out: u64,
    error: Option<Box<str>>,
    trace: Option<Box<dyn TraceEnd>>,
    /// The authenticated consumer's name (the `consumer` label of Kong's request counter).
    consumer: Option<Arc<str>>,
}

impl Completion {
    pub(crate) fn new(observer: Arc<Observer>, start: Instant, client: SocketAddr) -> Completion {
        observer.metrics.request_started();
        Completion {
            observer,
            start,
            client,
            route: None,
            grpc_path: None,
            client_protocol: ClientProtocol::Grpc,
            details: None,
            upstream: None,
            upstream_latency: None,
            status: 0,
            from_service: false,
            grpc_status: None,
            bytes_in: None,
            bytes_out: 0,
            error: None,
            trace: None,
            consumer: None,
        }
    }

    /// The request's trace, ended by [`Completion::complete`].
    pub(crate) fn set_trace(&mut self, trace: Box<dyn TraceEnd>) {
        self.trace = Some(trace);
    }

    pub(crate) fn wants_details(&self) -> bool {
        self.observer.access_log.is_some()
    }
    pub(crate) fn set_details(&mut self, d: LogDetails) {
        self.details = Some(Box::new(d));
    }
    pub(crate) fn set_route(&mut self, route: Arc<RouteMetrics>) {
        self.route = Some(route);
    }
    pub(crate) fn set_consumer(&mut self, consumer: Arc<str>) {
        self.consumer = Some(consumer);
    }
    pub(crate) fn set_grpc_path(&mut self, path: &str) {
        self.grpc_path = Some(path.into());
    }
    /// The protocol the client spoke, when the call was not plain gRPC.
    pub(crate) fn set_client_protocol(&mut self, protocol: ClientProtocol) {
        self.client_protocol = protocol;
    }
    /// The target (`None` when nothing reads it: it is only rendered for the access log).
    pub(crate) fn set_upstream(&mut self, target: Option<Arc<str>>, latency: Duration) {
        self.upstream = target;
        self.upstream_latency = Some(latency);
    }
    pub(crate) fn set_request_counter(&mut self, counter: Arc<AtomicU64>) {
        self.bytes_in = Some(counter);
    }
    /// The response status and whether it came from the upstream (`source` in Kong's metrics).
    pub(crate) fn set_response(&mut self, status: u16, from_service: bool, headers: &HeaderMap) {
        self.status = status;
        self.from_service = from_service;
        self.observe_trailers(headers);
    }
    /// The response status recorded so far.
    pub(crate) fn status(&self) -> u16 {
        self.status
    }
    pub(crate) fn set_grpc_status(&mut self, code: u8) {
        self.grpc_status = Some(code);
    }
    pub(crate) fn set_error(&mut self, message: &str) {
        self.error = Some(message.into());
    }
    pub(crate) fn set_cancelled(&mut self) {
        if self.error.is_none() {
            self.error = Some("client cancelled".into());
        }
        if self.grpc_path.is_some() && self.grpc_status.is_none() {
            self.grpc_status = Some(grpc::Code::Cancelled.as_u8());
        }
    }
    pub(crate) fn add_bytes_out(&mut self, n: usize) {
        self.bytes_out += n as u64;
    }
    /// Picks `grpc-status` out of headers (trailers-only) or trailers.
    pub(crate) fn observe_trailers(&mut self, headers: &HeaderMap) {
        // Only where something records it (see `complete`): the metrics for gRPC calls and
        // unrouted replies, the access log for all. A lookup of this name on every plain HTTP
        // response is measurable (bench/callgrind.sh).
        if self.grpc_path.is_none() && self.route.is_some() && self.details.is_none() {
            return;
        }
        if let Some(v) = headers.get(&grpc::GRPC_STATUS) {
            if let Some(code) = std::str::from_utf8(v.as_bytes()).ok().and_then(|s| s.parse::<u8>().ok()) {
                self.grpc_status = Some(code);
            }
        }
    }

    /// Records the request. Called once; dropping a `Completion` without calling it records nothing.
    pub(crate) fn complete(mut self) {
        if let Some(t) = self.trace.take() {
            t.end(&Outcome { status: self.status, grpc_status: self.grpc_status, error: self.error.as_deref() });
        }
        let total = self.start.elapsed();
        let total_ms = total.as_secs_f64() * 1000.0;
        let upstream_ms = self.upstream_latency.map(|d| d.as_secs_f64() * 1000.0);
        let bytes_in = self.bytes_in.as_ref().map(|c| c.load(Ordering::Relaxed)).unwrap_or(0);
        let grpc_call = self.grpc_path.as_deref().and_then(grpc::service_and_method);
        if self.observer.metrics_enabled {
            self.observer.metrics.observe(&Observation {
                route: self.route.as_deref(),
                status: self.status,
                from_service: self.from_service,
                // Routed: only calls the router saw as gRPC. Unrouted: the reply is sluice's own, and it
                // carries `grpc-status` only when the request was gRPC over HTTP/2.
                grpc_status: if self.grpc_path.is_some() || self.route.is_none() { self.grpc_status } else { None },
                grpc_call,
                client_protocol: self.client_protocol,
                total_ms,
                upstream_ms,
                bytes_in,
                bytes_out: self.bytes_out,
                consumer: self.consumer.as_deref(),
            });
        }
        if let (Some(log), Some(d)) = (&self.observer.access_log, &self.details) {
            log.write(&Entry {
                time: access_log::now_rfc3339(),
                client: access_log::client_text(self.client),
                method: d.method.as_str(),
                host: &d.host,
                path: &d.path,
                protocol: d.protocol,
                route: self.route.as_deref().map(|r| r.route.as_str()).unwrap_or(""),
                service: self.route.as_deref().map(|r| r.service.as_str()).unwrap_or(""),
                upstream: self.upstream.as_deref().unwrap_or(""),
                status: self.status,
                grpc_status: self.grpc_status,
                latency_ms: total_ms,
                upstream_latency_ms: upstream_ms,
                bytes_in,
                bytes_out: self.bytes_out,
                error: self.error.as_deref(),
            });
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.observer.metrics.request_finished();
    }
}
