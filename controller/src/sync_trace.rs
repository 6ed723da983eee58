//! Spans for sync rounds, so that a slow or failing sync shows up in the same tracing backend as
//! the proxy's requests. Off unless `--otlp-traces-endpoint` (or the standard
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) names an OTLP/gRPC collector.
//!
//! A round that does work is one trace: a root span `sync` with a child `translate` for each
//! translation (the one a change triggers, and each fallback after a rejected push) and a child
//! `push` for each push to the proxy. A round that only finds the proxy already running our
//! config records nothing. The round's trace id is logged with its outcome, so a log line leads
//! to its trace.
//!
//! Export never holds up the sync loop: finished rounds go to a bounded queue
//! ([`QUEUE_ROUNDS`]) drained by one task that sends each as an OTLP `ExportTraceServiceRequest`
//! (per-request timeout [`EXPORT_TIMEOUT`]); a round that finds the queue full is dropped and
//! counted in the log. Spans are built from the OTLP protobuf types directly (the proxy exports
//! with the same crate), which keeps the controller free of a global tracer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;
use tokio::sync::mpsc;

/// Finished rounds waiting for export; more are dropped.
pub const QUEUE_ROUNDS: usize = 64;
/// Longest wait for the collector's answer to one export.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
const SERVICE_NAME: &str = "sluice-controller";

/// A traces endpoint that cannot be used.
#[derive(Debug, Error, PartialEq)]
pub enum TraceError {
    #[error(
        "--otlp-traces-endpoint: '{0}' must be an http:// URL of an OTLP/gRPC collector (e.g. http://collector:4317)"
    )]
    Endpoint(String),
}

/// `--otlp-traces-endpoint` as a tonic endpoint: an `http://` URL (TLS to the collector is not
/// offered).
pub fn check_endpoint(url: &str) -> Result<tonic::transport::Endpoint, TraceError> {
    let bad = || TraceError::Endpoint(url.to_string());
    if !url.starts_with("http://") {
        return Err(bad());
    }
    tonic::transport::Endpoint::from_shared(url.to_string()).map_err(|_| bad())
}

/// Starts rounds and hands finished ones to the exporter; a disabled tracer records nothing.
#[derive(Clone, Default)]
pub struct SyncTracer {
    queue: Option<mpsc::Sender<ExportTraceServiceRequest>>,
}

impl SyncTracer {
    /// A tracer that exports to `endpoint` (`None`: disabled). Spawns the export task, so it
    /// must run inside a tokio runtime.
    pub fn new(endpoint: Option<&str>) -> Result<SyncTracer, TraceError> {
        let Some(url) = endpoint else { return Ok(SyncTracer::default()) };
        let channel = check_endpoint(url)?.timeout(EXPORT_TIMEOUT).connect_lazy();
        let (tx, rx) = mpsc::channel(QUEUE_ROUNDS);
        tokio::spawn(export(TraceServiceClient::new(channel), rx, url.to_string()));
        Ok(SyncTracer { queue: Some(tx) })
    }

    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// A new round (its root span starts now); inert when the tracer is disabled.
    pub fn round(&self) -> Round {
        if !self.enabled() {
            return Round { trace: None };
        }
        let trace_id = random_id::<16>();
        let root = SpanRecord::new(trace_id, None, "sync");
        Round { trace: Some(Trace { trace_id, root, children: Vec::new() }) }
    }

    /// Ends `round`: when it recorded work, its spans are queued for export and its trace id is
    /// returned (hex, as collectors show it).
    pub fn finish(&self, round: Round, ok: bool) -> Option<String> {
        let mut trace = round.trace?;
        if trace.children.is_empty() {
            return None;
        }
        trace.root.end(if ok { Ok(()) } else { Err("the proxy does not run the desired config yet".into()) });
        let id = hex(&trace.trace_id);
        if let Some(queue) = &self.queue {
            if queue.try_send(trace.into_request()).is_err() {
                tracing::warn!(trace_id = %id, "sync round trace dropped: the export queue is full");
            }
        }
        Some(id)
    }
}

/// The spans of one round while it runs.
pub struct Round {
    trace: Option<Trace>,
}

struct Trace {
    trace_id: [u8; 16],
    root: SpanRecord,
    children: Vec<Span>,
}

/// A child span that is open; [`Round::end`] closes it.
pub struct Open(Option<SpanRecord>);

impl Round {
    /// Opens a child span of the round's root named `name` (`translate`, `push`).
    pub fn start(&self, name: &'static str) -> Open {
        Open(self.trace.as_ref().map(|t| SpanRecord::new(t.trace_id, Some(t.root.span_id), name)))
    }

    /// Closes `span` with its attributes and outcome (`Err`: the span's error status message).
    pub fn end(&mut self, span: Open, attributes: &[(&'static str, Attr)], outcome: Result<(), String>) {
        let (Some(trace), Some(mut s)) = (self.trace.as_mut(), span.0) else { return };
        s.attributes.extend(attributes.iter().map(|(k, v)| key_value(k, v.clone())));
        s.end(outcome);
        trace.children.push(s.span);
    }

    /// The round's trace id (hex), when tracing is on.
    pub fn trace_id(&self) -> Option<String> {
        self.trace.as_ref().map(|t| hex(&t.trace_id))
    }
}

/// An attribute value.
#[derive(Debug, Clone)]
pub enum Attr {
    Str(String),
    Int(i64),
}

struct SpanRecord {
    span_id: [u8; 8],
    attributes: Vec<KeyValue>,
    span: Span,
}

impl SpanRecord {
    fn new(trace_id: [u8; 16], parent: Option<[u8; 8]>, name: &'static str) -> SpanRecord {
        let span_id = random_id::<8>();
        let span = Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: name.to_string(),
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: unix_nanos(),
            ..Default::default()
        };
        SpanRecord { span_id, attributes: Vec::new(), span }
    }

    fn end(&mut self, outcome: Result<(), String>) {
        self.span.end_time_unix_nano = unix_nanos().max(self.span.start_time_unix_nano);
        self.span.attributes = std::mem::take(&mut self.attributes);
        self.span.status = Some(match outcome {
            Ok(()) => Status { code: StatusCode::Ok as i32, message: String::new() },
            Err(message) => Status { code: StatusCode::Error as i32, message },
        });
    }
}

impl Trace {
    fn into_request(self) -> ExportTraceServiceRequest {
        let mut spans = vec![self.root.span];
        spans.extend(self.children);
        let service = |k: &str, v: &str| key_value(k, Attr::Str(v.to_string()));
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        service("service.name", SERVICE_NAME),
                        service("service.version", env!("CARGO_PKG_VERSION")),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "sluice-controller/sync".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

fn key_value(key: &str, value: Attr) -> KeyValue {
    let value = match value {
        Attr::Str(s) => AnyValueKind::StringValue(s),
        Attr::Int(i) => AnyValueKind::IntValue(i),
    };
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(value) }) }
}

/// Sends queued rounds one by one until the tracer is dropped.
async fn export(
    mut client: TraceServiceClient<tonic::transport::Channel>,
    mut rx: mpsc::Receiver<ExportTraceServiceRequest>,
    url: String,
) {
    while let Some(request) = rx.recv().await {
        if let Err(status) = client.export(request).await {
            tracing::warn!(endpoint = %url, code = ?status.code(), error = %status.message(), "exporting a sync round trace failed");
        }
    }
}

/// A random non-zero id (OTLP treats all zeros as invalid).
fn random_id<const N: usize>() -> [u8; N] {
    let rng = SystemRandom::new();
    let mut id = [0u8; N];
    while id.iter().all(|b| *b == 0) {
        // The system RNG does not fail on the platforms sluice runs on; a failure leaves zeros
        // and the loop tries again.
        let _ = rng.fill(&mut id);
    }
    id
}

fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_tracer_records_nothing() {
        let t = SyncTracer::default();
        let mut round = t.round();
        let s = round.start("translate");
        round.end(s, &[], Ok(()));
        assert_eq!(round.trace_id(), None);
        assert_eq!(t.finish(round, true), None);
    }

    #[test]
    fn endpoints_must_be_plain_http_urls() {
        for bad in ["collector:4317", "https://collector:4317", "unix:///x"] {
            assert_eq!(SyncTracer::new(Some(bad)).err(), Some(TraceError::Endpoint(bad.into())), "{bad}");
        }
    }

    #[test]
    fn ids_are_random_and_non_zero() {
        let (a, b) = (random_id::<16>(), random_id::<16>());
        assert_ne!(a, [0; 16]);
        assert_ne!(a, b);
        assert_eq!(hex(&[0, 1, 0xab]), "0001ab");
    }
}
