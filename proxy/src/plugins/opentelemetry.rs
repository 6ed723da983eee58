//! Kong's `opentelemetry` (PRIORITY 14): traces every request of its routes. Tracing starts
//! before the access plugins run (Kong's tracing instrumentation starts with the request, not at
//! the plugin's priority), so that a refusal by any access plugin is an event of the trace.
//!
//! Per request: the context is read in the `extract` formats, the sampling decision is the
//! parent's when it carries one, else `sampling_rate`; the context goes upstream in the `inject`
//! formats (also for unsampled requests, flagged so). A sampled request gets a server span,
//! ended with the request's record ([`TraceEnd`]), and one client span per upstream attempt
//! ([`Attempts`], fed by the balancer); both are queued for [`export`] at the end.

mod export;
pub(crate) mod ids;
mod propagation;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span, Status};
use proxy_config::plugins::opentelemetry::Format;
use proxy_config::plugins::OpentelemetryConfig;

use super::{AccessCtx, BuildError, Phases, Plugin};
use crate::respond::PluginReply;
use crate::telemetry::observe::{Outcome, TraceEnd};
use crate::wire::grpc;
use export::{int_kv, string_kv, Exporter};
use propagation::Outgoing;

/// One configured `opentelemetry` instance.
#[derive(Debug)]
pub(crate) struct Opentelemetry {
    exporter: Arc<Exporter>,
    sampling_rate: f64,
    extract: Vec<Format>,
    /// The formats `inject` resolves to, per extracted format (`None`: nothing extracted),
    /// resolved once here rather than per request.
    inject: Vec<(Option<Format>, Arc<[Format]>)>,
    clear: Vec<http::HeaderName>,
}

impl Opentelemetry {
    pub(crate) const NAME: &'static str = "opentelemetry";

    pub(crate) fn new(c: OpentelemetryConfig) -> Result<Self, BuildError> {
        let mut clear = Vec::with_capacity(c.propagation.clear.len());
        for (i, h) in c.propagation.clear.iter().enumerate() {
            let name = http::HeaderName::try_from(h.as_str())
                .map_err(|_| BuildError::new(format!("config.propagation.clear.{}", i + 1), "not a valid header"))?;
            clear.push(name);
        }
        let inject = std::iter::once(None)
            .chain(c.propagation.extract.iter().copied().map(Some))
            .map(|f| (f, propagation::inject_formats(&c.propagation, f).into()))
            .collect();
        Ok(Opentelemetry {
            exporter: Exporter::start(&c)?,
            sampling_rate: c.sampling_rate,
            extract: c.propagation.extract.clone(),
            inject,
            clear,
        })
    }

    fn inject_formats(&self, extracted: Option<Format>) -> &Arc<[Format]> {
        // Entry 0 is `None`; every extractable format has an entry.
        let i = self.inject.iter().position(|(f, _)| *f == extracted).unwrap_or(0);
        &self.inject[i].1
    }
}

impl Plugin for Opentelemetry {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn priority(&self) -> u32 {
        14
    }
    fn phases(&self) -> Phases {
        Phases::REQUEST_START
    }

    fn request_start(&self, req: &mut AccessCtx<'_>) {
        let headers = &mut req.parts.headers;
        let parent = propagation::extract(&self.extract, headers);
        for h in &self.clear {
            headers.remove(h);
        }
        let sampled = match parent.and_then(|(_, c)| c.sampled) {
            Some(s) => s,
            None => ids::sample(self.sampling_rate),
        };
        let trace_id = parent.map(|(_, c)| c.trace_id).unwrap_or_else(ids::trace_id);
        let span_id = ids::span_id();
        // The upstream's parent: the first attempt's client span when sampled, else the server
        // span's id (nothing is recorded for it).
        let first_attempt = ids::span_id();
        let formats = self.inject_formats(parent.map(|(f, _)| f));
        let outgoing =
            Outgoing { trace_id, span_id: if sampled { first_attempt } else { span_id }, parent_id: span_id, sampled };
        propagation::inject(formats, &outgoing, headers);
        if !sampled {
            return;
        }
        let grpc_call = if req.grpc { grpc::service_and_method(req.parts.uri.path()) } else { None };
        let method = req.parts.method.as_str();
        let name = match grpc_call {
            Some((svc, m)) => format!("{svc}/{m}"),
            None => format!("{method} {}", req.route_name),
        };
        let mut attrs = Vec::with_capacity(12);
        attrs.push(string_kv("http.request.method", method));
        attrs.push(string_kv("url.path", req.parts.uri.path()));
        attrs.push(string_kv("url.scheme", if req.tls { "https" } else { "http" }));
        attrs.push(string_kv("server.address", &host_of(req.parts)));
        attrs.push(string_kv("network.protocol.version", version_label(req.parts.version)));
        attrs.push(string_kv("client.address", &req.client_ip.to_string()));
        if let Some(ua) = req.parts.headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()) {
            attrs.push(string_kv("user_agent.original", ua));
        }
        attrs.push(string_kv("kong.route.name", req.route_name));
        attrs.push(string_kv("kong.service.name", req.service_name));
        let rpc = grpc_call.map(|(s, m)| (s.to_string(), m.to_string()));
        if let Some((s, m)) = &rpc {
            attrs.push(string_kv("rpc.system", "grpc"));
            attrs.push(string_kv("rpc.service", s));
            attrs.push(string_kv("rpc.method", m));
        }
        let attempts = Arc::new(Attempts {
            trace_id,
            server_span: span_id,
            first: first_attempt,
            formats: formats.clone(),
            method: method.to_string(),
            rpc,
            name: name.clone(),
            list: Mutex::new(Vec::with_capacity(1)),
        });
        req.state.trace_attempts = Some(attempts.clone());
        req.state.trace = Some(Box::new(RequestTrace {
            exporter: self.exporter.clone(),
            trace_id,
            span_id,
            parent: parent.map(|(_, c)| c.span_id),
            start: now_nanos(),
            name,
            attrs,
            events: Vec::new(),
            attempts,
        }));
    }
}

/// The request's host without its port (`:authority` for HTTP/2, else `Host`).
fn host_of(parts: &http::request::Parts) -> String {
    let host = match parts.uri.authority() {
        Some(a) => a.host(),
        None => parts.headers.get(http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or(""),
    };
    match host.parse::<http::uri::Authority>() {
        Ok(a) => a.host().to_string(),
        Err(_) => host.to_string(),
    }
}

fn version_label(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_10 => "1.0",
        _ => "1.1",
    }
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// A sampled request's server span, until the request ends.
pub(crate) struct RequestTrace {
    exporter: Arc<Exporter>,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    start: u64,
    name: String,
    attrs: Vec<KeyValue>,
    events: Vec<Event>,
    attempts: Arc<Attempts>,
}

impl std::fmt::Debug for RequestTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTrace").field("name", &self.name).finish_non_exhaustive()
    }
}

impl RequestTrace {
    /// An access plugin answered the request itself: an event on the server span.
    pub(crate) fn rejected(&mut self, plugin: &str, reply: &PluginReply) {
        self.events.push(Event {
            time_unix_nano: now_nanos(),
            name: "plugin rejection".into(),
            attributes: vec![
                string_kv("kong.plugin.name", plugin),
                int_kv("http.response.status_code", i64::from(reply.status)),
                string_kv("message", &reply.message),
            ],
            dropped_attributes_count: 0,
        });
    }
}

/// gRPC codes that make a server span an error (OpenTelemetry's gRPC conventions).
fn grpc_server_error(code: u8) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

impl TraceEnd for RequestTrace {
    fn end(self: Box<Self>, o: &Outcome<'_>) {
        let t = *self;
        let end = now_nanos();
        let mut attrs = t.attrs;
        if o.status != 0 {
            attrs.push(int_kv("http.response.status_code", i64::from(o.status)));
        }
        let is_grpc = t.attempts.rpc.is_some();
        if let (true, Some(code)) = (is_grpc, o.grpc_status) {
            attrs.push(int_kv("rpc.grpc.status_code", i64::from(code)));
        }
        let failed = o.status >= 500 || (is_grpc && o.grpc_status.is_some_and(grpc_server_error));
        let mut spans = t.attempts.client_spans(end, o.error);
        if let Some(last) = spans.last() {
            attrs.extend(
                last.attributes.iter().filter(|kv| kv.key == "server.address" || kv.key == "server.port").map(|kv| {
                    KeyValue { key: format!("upstream.{}", &kv.key["server.".len()..]), value: kv.value.clone() }
                }),
            );
        }
        spans.push(Span {
            trace_id: t.trace_id.to_vec(),
            span_id: t.span_id.to_vec(),
            parent_span_id: t.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: t.name,
            kind: SpanKind::Server as i32,
            start_time_unix_nano: t.start,
            end_time_unix_nano: end,
            attributes: attrs,
            events: t.events,
            status: Some(status(failed, o.error)),
            flags: 0x100 | 1,
            ..Default::default()
        });
        t.exporter.push(spans);
    }
}

fn status(failed: bool, error: Option<&str>) -> Status {
    if failed {
        Status { code: StatusCode::Error as i32, message: error.unwrap_or_default().to_string() }
    } else {
        Status { code: StatusCode::Unset as i32, message: String::new() }
    }
}

/// A sampled request's upstream attempts, as the balancer makes them.
#[derive(Debug)]
pub(crate) struct Attempts {
    trace_id: [u8; 16],
    server_span: [u8; 8],
    /// The first attempt's span id, already injected by `request_start`.
    first: [u8; 8],
    formats: Arc<[Format]>,
    method: String,
    rpc: Option<(String, String)>,
    name: String,
    list: Mutex<Vec<Attempt>>,
}

#[derive(Debug)]
struct Attempt {
    span_id: [u8; 8],
    start: u64,
    end: Option<u64>,
    host: String,
    port: u16,
    status: Option<u16>,
    error: Option<String>,
}

impl Attempts {
    /// An attempt starts on `host:port`: a later attempt gets a span id of its own, written into
    /// the upstream request's context headers.
    pub(crate) fn begin(&self, headers: &mut HeaderMap, host: &str, port: u16) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        let span_id = if list.is_empty() { self.first } else { ids::span_id() };
        if !list.is_empty() {
            let out = Outgoing { trace_id: self.trace_id, span_id, parent_id: self.server_span, sampled: true };
            propagation::inject(&self.formats, &out, headers);
        }
        list.push(Attempt {
            span_id,
            start: now_nanos(),
            end: None,
            host: host.to_string(),
            port,
            status: None,
            error: None,
        });
    }

    /// The current attempt failed (and another may follow).
    pub(crate) fn failed(&self, error: &dyn std::fmt::Display) {
        self.finish(None, Some(error.to_string()));
    }

    /// The current attempt got a response head.
    pub(crate) fn answered(&self, status: u16) {
        self.finish(Some(status), None);
    }

    fn finish(&self, status: Option<u16>, error: Option<String>) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = list.last_mut().filter(|a| a.end.is_none()) {
            a.end = Some(now_nanos());
            a.status = status;
            a.error = error;
        }
    }

    /// The client spans; an attempt still open ends at `end`, failed with the request's error.
    fn client_spans(&self, end: u64, error: Option<&str>) -> Vec<Span> {
        let list = std::mem::take(&mut *self.list.lock().unwrap_or_else(|e| e.into_inner()));
        let mut out = Vec::with_capacity(list.len() + 1);
        for (i, a) in list.into_iter().enumerate() {
            let error = a.error.as_deref().or(if a.end.is_none() { error } else { None });
            let mut attrs = Vec::with_capacity(9);
            attrs.push(string_kv("http.request.method", &self.method));
            attrs.push(string_kv("server.address", &a.host));
            attrs.push(int_kv("server.port", i64::from(a.port)));
            if i > 0 {
                attrs.push(int_kv("http.request.resend_count", i as i64));
            }
            if let Some(s) = a.status {
                attrs.push(int_kv("http.response.status_code", i64::from(s)));
            }
            if let Some((s, m)) = &self.rpc {
                attrs.push(string_kv("rpc.system", "grpc"));
                attrs.push(string_kv("rpc.service", s));
                attrs.push(string_kv("rpc.method", m));
            }
            if let Some(e) = error {
                attrs.push(string_kv("error.type", e));
            }
            let failed = error.is_some() || a.status.is_some_and(|s| s >= 500);
            out.push(Span {
                trace_id: self.trace_id.to_vec(),
                span_id: a.span_id.to_vec(),
                parent_span_id: self.server_span.to_vec(),
                name: self.name.clone(),
                kind: SpanKind::Client as i32,
                start_time_unix_nano: a.start,
                end_time_unix_nano: a.end.unwrap_or(end),
                attributes: attrs,
                status: Some(status(failed, error)),
                flags: 0x100 | 1,
                ..Default::default()
            });
        }
        out
    }
}
