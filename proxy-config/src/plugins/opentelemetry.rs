//! `opentelemetry` (Kong `kong/plugins/opentelemetry/schema.lua`): one server span per request
//! and one client span per upstream attempt, exported in batches over OTLP, and the trace context
//! read from and written to the request in the configured propagation formats.
//!
//! Kong's fields with Kong's defaults; one sluice field, `otlp_protocol`, picks OTLP/HTTP protobuf
//! (Kong's only transport, the default) or OTLP/gRPC. Fields Kong has that sluice does not honour
//! (`logs_endpoint`, `queue`, `header_type`, `http_response_header_for_traceid`, the `datadog` and
//! `instana` formats, `https` endpoints) are refused by name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{join, valid_header_name, Checker, LeftOut};

pub const NAME: &str = "opentelemetry";

/// A trace-context header format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    /// W3C `traceparent`.
    #[serde(rename = "w3c")]
    W3c,
    /// Zipkin's multi-header `x-b3-*` (extracting `b3` also reads the single `b3` header).
    #[serde(rename = "b3")]
    B3,
    /// Zipkin's single `b3` header (inject only, as in Kong).
    #[serde(rename = "b3-single")]
    B3Single,
    /// Jaeger's `uber-trace-id`.
    #[serde(rename = "jaeger")]
    Jaeger,
    /// OpenTracing's `ot-tracer-*`.
    #[serde(rename = "ot")]
    Ot,
    /// AWS X-Ray's `x-amzn-trace-id`.
    #[serde(rename = "aws")]
    Aws,
    /// Google Cloud's `x-cloud-trace-context`.
    #[serde(rename = "gcp")]
    Gcp,
}

/// One `propagation.inject` entry: a format, or `preserve` (the format the context came in, else
/// `default_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Inject {
    Format(Format),
    Preserve(Preserve),
}

/// The `preserve` keyword of `propagation.inject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preserve {
    #[serde(rename = "preserve")]
    Preserve,
}

const EXTRACT: [&str; 6] = ["w3c", "b3", "jaeger", "ot", "aws", "gcp"];
const INJECT: [&str; 8] = ["preserve", "w3c", "b3", "b3-single", "jaeger", "ot", "aws", "gcp"];
const DEFAULT_FORMAT: [&str; 7] = ["w3c", "b3", "b3-single", "jaeger", "ot", "aws", "gcp"];
/// Kong's formats sluice does not speak.
const NOT_SPOKEN: [&str; 2] = ["datadog", "instana"];

/// How the spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP/HTTP with a protobuf body (POST to `traces_endpoint`), as Kong.
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP/gRPC (`TraceService/Export` at `traces_endpoint`'s host and port).
    #[serde(rename = "grpc")]
    Grpc,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Propagation {
    /// Formats read from the request, first found wins (Kong's default: none, a new trace).
    #[serde(default)]
    pub extract: Vec<Format>,
    /// Formats written to the upstream request (Kong's default: `preserve`).
    #[serde(default = "default_inject")]
    pub inject: Vec<Inject>,
    /// The format `preserve` writes when nothing was extracted.
    #[serde(default = "default_format")]
    pub default_format: Format,
    /// Request headers removed before the request goes upstream.
    #[serde(default)]
    pub clear: Vec<String>,
}

fn default_inject() -> Vec<Inject> {
    vec![Inject::Preserve(Preserve::Preserve)]
}
fn default_format() -> Format {
    Format::W3c
}

impl Default for Propagation {
    fn default() -> Self {
        Propagation {
            extract: Vec::new(),
            inject: default_inject(),
            default_format: default_format(),
            clear: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpentelemetryConfig {
    /// Where spans go: `http://host:port/path` (OTLP/HTTP) or `http://host:port` (OTLP/gRPC).
    pub traces_endpoint: String,
    /// Extra headers (gRPC metadata) on every export request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Resource attributes; `service.name` defaults to `kong` as in Kong.
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, String>,
    /// Spans per export request.
    #[serde(default = "default_batch_span_count")]
    pub batch_span_count: u32,
    /// Seconds a partial batch waits before it is sent.
    #[serde(default = "default_batch_flush_delay")]
    pub batch_flush_delay: u32,
    /// Milliseconds.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: u32,
    /// Milliseconds.
    #[serde(default = "default_io_timeout")]
    pub send_timeout: u32,
    /// Milliseconds.
    #[serde(default = "default_io_timeout")]
    pub read_timeout: u32,
    /// Probability that a request without a sampled parent is traced. Kong's `null` falls back to
    /// `tracing_sampling_rate`, whose default is 0.01; sluice uses that default.
    #[serde(default = "default_sampling_rate")]
    pub sampling_rate: f64,
    #[serde(default)]
    pub propagation: Propagation,
    /// sluice's own field: OTLP/HTTP protobuf (default) or OTLP/gRPC.
    #[serde(default)]
    pub otlp_protocol: OtlpProtocol,
}

fn default_batch_span_count() -> u32 {
    200
}
fn default_batch_flush_delay() -> u32 {
    3
}
fn default_connect_timeout() -> u32 {
    1000
}
fn default_io_timeout() -> u32 {
    5000
}
fn default_sampling_rate() -> f64 {
    0.01
}

impl OpentelemetryConfig {
    /// A config exporting to `endpoint` with every other field at its default.
    pub fn new(endpoint: impl Into<String>) -> Self {
        OpentelemetryConfig {
            traces_endpoint: endpoint.into(),
            headers: BTreeMap::new(),
            resource_attributes: BTreeMap::new(),
            batch_span_count: default_batch_span_count(),
            batch_flush_delay: default_batch_flush_delay(),
            connect_timeout: default_connect_timeout(),
            send_timeout: default_io_timeout(),
            read_timeout: default_io_timeout(),
            sampling_rate: default_sampling_rate(),
            propagation: Propagation::default(),
            otlp_protocol: OtlpProtocol::default(),
        }
    }
}

pub(crate) fn check(c: &mut Checker, v: Option<&Value>) {
    let fields = [
        "traces_endpoint",
        "headers",
        "resource_attributes",
        "batch_span_count",
        "batch_flush_delay",
        "connect_timeout",
        "send_timeout",
        "read_timeout",
        "sampling_rate",
        "propagation",
        "otlp_protocol",
    ];
    let left_out = [
        LeftOut { name: "endpoint", why: "use traces_endpoint" },
        LeftOut { name: "logs_endpoint", why: "sluice exports traces only" },
        LeftOut { name: "queue", why: "use batch_span_count and batch_flush_delay" },
        LeftOut { name: "header_type", why: "use propagation" },
        LeftOut { name: "http_response_header_for_traceid", why: "the trace id is not echoed to the client" },
    ];
    let Some(m) = c.record("config", v, &fields, &left_out) else {
        if v.is_none_or(Value::is_null) {
            c.err(join("config", "traces_endpoint"), "required field missing");
        }
        return;
    };
    match c.string(m, "config", "traces_endpoint") {
        None => c.err(join("config", "traces_endpoint"), "required field missing"),
        Some(url) => {
            if let Err(why) = check_endpoint(url) {
                c.err(join("config", "traces_endpoint"), why);
            }
        }
    }
    for key in ["headers", "resource_attributes"] {
        string_map(c, m, key, key == "headers");
    }
    c.between(m, "config", "batch_span_count", 1, 1_000_000);
    c.between(m, "config", "batch_flush_delay", 1, 3600);
    for key in ["connect_timeout", "send_timeout", "read_timeout"] {
        c.between(m, "config", key, 0, i64::from(i32::MAX));
    }
    if let Some(r) = c.number(m, "config", "sampling_rate") {
        if !(0.0..=1.0).contains(&r) {
            c.err(join("config", "sampling_rate"), "value should be between 0 and 1");
        }
    }
    c.one_of(m, "config", "otlp_protocol", &["http/protobuf", "grpc"]);
    check_propagation(c, m.get("propagation"));
}

/// `http://host[:port][/path]`; `https` is Kong's too but sluice's exporter speaks plain TCP.
fn check_endpoint(url: &str) -> Result<(), String> {
    if url.starts_with("https://") {
        return Err("not supported by sluice: https endpoints (use an http:// collector address)".into());
    }
    let Some(rest) = url.strip_prefix("http://") else { return Err(format!("'{url}' is not an http:// URL")) };
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (authority, None),
    };
    let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
    if !host_ok || port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err(format!("'{url}' has no valid host"));
    }
    Ok(())
}

fn string_map(c: &mut Checker, m: &serde_json::Map<String, Value>, key: &str, header_names: bool) {
    let field = join("config", key);
    match m.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                if !v.is_string() {
                    c.err(join(&field, k), "expected a string");
                } else if header_names && !valid_header_name(k) {
                    c.err(join(&field, k), format!("'{k}' is not a valid header"));
                }
            }
        }
        Some(_) => c.err(field, "expected a map"),
    }
}

fn check_propagation(c: &mut Checker, v: Option<&Value>) {
    let path = "config.propagation";
    let Some(m) = c.record(path, v, &["extract", "inject", "default_format", "clear"], &[]) else { return };
    for (key, options) in [("extract", &EXTRACT[..]), ("inject", &INJECT[..])] {
        for (at, s) in c.strings(m, path, key) {
            if NOT_SPOKEN.contains(&s) {
                c.err(at, format!("not supported by sluice: the '{s}' format"));
            } else if !options.contains(&s) {
                c.err(at, format!("expected one of: {}", options.join(", ")));
            }
        }
    }
    if let Some(s) = m.get("default_format").and_then(Value::as_str) {
        if NOT_SPOKEN.contains(&s) {
            c.err(join(path, "default_format"), format!("not supported by sluice: the '{s}' format"));
            return;
        }
    }
    c.one_of(m, path, "default_format", &DEFAULT_FORMAT);
    for (at, s) in c.strings(m, path, "clear") {
        if !valid_header_name(s) {
            c.err(at, format!("'{s}' is not a valid header"));
        }
    }
}
