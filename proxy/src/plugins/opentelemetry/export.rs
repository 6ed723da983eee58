//! The export of finished spans to the collector, off the request path: a request hands its
//! spans to a bounded queue with `try_send` (never waits; a full queue drops them and counts them
//! in `sluice_otel_spans_dropped_total{reason="queue_full"}`), and one task per plugin instance
//! sends them in batches of `batch_span_count`, or whatever it has after `batch_flush_delay`,
//! over OTLP/HTTP protobuf or OTLP/gRPC. A failed export drops its batch
//! (`reason="export_failed"`): the requests it came from have long been answered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use proxy_config::plugins::opentelemetry::OtlpProtocol;
use proxy_config::plugins::OpentelemetryConfig;
use thiserror::Error;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

use crate::plugins::BuildError;
use crate::telemetry::metrics::OTEL_SPANS_DROPPED;

/// Requests' span sets the queue holds before it drops (each set is one server span and its
/// attempts' client spans).
pub(crate) const QUEUE_REQUESTS: usize = 4096;

/// Why one export failed.
#[derive(Debug, Error)]
pub(crate) enum ExportError {
    #[error("collector answered HTTP {0}")]
    Status(u16),
    #[error("collector request failed: {0}")]
    Http(#[from] hyper_util::client::legacy::Error),
    #[error("collector response body failed: {0}")]
    Body(#[from] hyper::Error),
    #[error("collector did not answer within the send and read timeouts")]
    Timeout,
    #[error("collector answered gRPC {0}")]
    Grpc(#[from] tonic::Status),
}

/// The producer end, shared by the plugin instance and its requests' traces.
#[derive(Debug)]
pub(crate) struct Exporter {
    tx: mpsc::Sender<Vec<Span>>,
}

impl Exporter {
    /// Starts the export task for one plugin instance (on the current tokio runtime). The task
    /// ends, after sending what it holds, once the instance and every trace using it are gone.
    pub(crate) fn start(c: &OpentelemetryConfig) -> Result<Arc<Exporter>, BuildError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| BuildError::new("config", "the opentelemetry exporter needs the proxy's runtime"))?;
        let sink = Sink::new(c)?;
        let (tx, rx) = mpsc::channel(QUEUE_REQUESTS);
        let batch = Batcher {
            rx,
            sink,
            resource: resource(&c.resource_attributes),
            max: c.batch_span_count as usize,
            delay: Duration::from_secs(u64::from(c.batch_flush_delay)),
        };
        runtime.spawn(batch.run());
        Ok(Arc::new(Exporter { tx }))
    }

    /// Queues one request's spans, or drops and counts them when the queue is full.
    pub(crate) fn push(&self, spans: Vec<Span>) {
        if let Err(e) = self.tx.try_send(spans) {
            let n = match e {
                mpsc::error::TrySendError::Full(s) | mpsc::error::TrySendError::Closed(s) => s.len(),
            };
            OTEL_SPANS_DROPPED.with_label_values(&["queue_full"]).inc_by(n as u64);
        }
    }
}

/// Kong's resource: `service.name` = `kong` unless configured, then `resource_attributes`.
fn resource(attrs: &BTreeMap<String, String>) -> Resource {
    let mut attributes = Vec::with_capacity(attrs.len() + 2);
    if !attrs.contains_key("service.name") {
        attributes.push(string_kv("service.name", "kong"));
    }
    if !attrs.contains_key("service.version") {
        attributes.push(string_kv("service.version", env!("CARGO_PKG_VERSION")));
    }
    attributes.extend(attrs.iter().map(|(k, v)| string_kv(k, v)));
    Resource { attributes, ..Default::default() }
}

pub(crate) fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_string())) }),
    }
}

pub(crate) fn int_kv(key: &str, value: i64) -> KeyValue {
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }) }
}

/// Where a batch goes.
enum Sink {
    Http {
        // Boxed: the client is large, and the other variant small.
        client: Box<Client<HttpConnector, Full<Bytes>>>,
        uri: Uri,
        headers: Vec<(HeaderName, HeaderValue)>,
        timeout: Duration,
    },
    Grpc {
        client: TraceServiceClient<Channel>,
        metadata: Vec<(
            tonic::metadata::MetadataKey<tonic::metadata::Ascii>,
            tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
        )>,
    },
}

impl Sink {
    fn new(c: &OpentelemetryConfig) -> Result<Sink, BuildError> {
        let endpoint_err = |e: &dyn std::fmt::Display| BuildError::new("config.traces_endpoint", e.to_string());
        let uri: Uri = c.traces_endpoint.parse().map_err(|e| endpoint_err(&e))?;
        let connect = Duration::from_millis(u64::from(c.connect_timeout));
        let timeout = Duration::from_millis(u64::from(c.send_timeout) + u64::from(c.read_timeout));
        let bad_header = |k: &str| BuildError::new(format!("config.headers.{k}"), "not a valid header");
        Ok(match c.otlp_protocol {
            OtlpProtocol::HttpProtobuf => {
                let mut headers = Vec::with_capacity(c.headers.len());
                for (k, v) in &c.headers {
                    let name = HeaderName::try_from(k.as_str()).map_err(|_| bad_header(k))?;
                    headers.push((name, HeaderValue::try_from(v.as_str()).map_err(|_| bad_header(k))?));
                }
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(connect));
                connector.set_nodelay(true);
                let client = Box::new(Client::builder(TokioExecutor::new()).build(connector));
                Sink::Http { client, uri, headers, timeout }
            }
            OtlpProtocol::Grpc => {
                let mut metadata = Vec::with_capacity(c.headers.len());
                for (k, v) in &c.headers {
                    let key = k.to_ascii_lowercase().parse().map_err(|_| bad_header(k))?;
                    metadata.push((key, v.parse().map_err(|_| bad_header(k))?));
                }
                let endpoint = Endpoint::from(uri).connect_timeout(connect).timeout(timeout);
                Sink::Grpc { client: TraceServiceClient::new(endpoint.connect_lazy()), metadata }
            }
        })
    }

    async fn send(&mut self, req: ExportTraceServiceRequest) -> Result<(), ExportError> {
        match self {
            Sink::Http { client, uri, headers, timeout } => {
                let mut r = Request::post(uri.clone());
                for (k, v) in headers.iter() {
                    r = r.header(k, v);
                }
                let r = r
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(Full::new(Bytes::from(req.encode_to_vec())))
                    .map_err(|_| ExportError::Status(0))?;
                let exchange = async {
                    let resp = client.request(r).await?;
                    let status = resp.status();
                    resp.into_body().collect().await?;
                    if !status.is_success() {
                        return Err(ExportError::Status(status.as_u16()));
                    }
                    Ok(())
                };
                tokio::time::timeout(*timeout, exchange).await.map_err(|_| ExportError::Timeout)?
            }
            Sink::Grpc { client, metadata } => {
                let mut r = tonic::Request::new(req);
                for (k, v) in metadata.iter() {
                    r.metadata_mut().insert(k.clone(), v.clone());
                }
                client.export(r).await?;
                Ok(())
            }
        }
    }
}

/// The export task's state.
struct Batcher {
    rx: mpsc::Receiver<Vec<Span>>,
    sink: Sink,
    resource: Resource,
    max: usize,
    delay: Duration,
}

impl Batcher {
    async fn run(mut self) {
        let mut batch: Vec<Span> = Vec::new();
        loop {
            // Wait for the first spans of a batch, then fill it until it is full or the delay passed.
            let Some(first) = self.rx.recv().await else { break };
            batch.extend(first);
            let flush_at = tokio::time::Instant::now() + self.delay;
            let mut open = true;
            while batch.len() < self.max {
                match tokio::time::timeout_at(flush_at, self.rx.recv()).await {
                    Ok(Some(spans)) => batch.extend(spans),
                    Ok(None) => {
                        open = false;
                        break;
                    }
                    Err(_) => break,
                }
            }
            while !batch.is_empty() {
                let take = batch.len().min(self.max);
                let rest = batch.split_off(take);
                let spans = std::mem::replace(&mut batch, rest);
                self.export(spans).await;
            }
            if !open {
                break;
            }
        }
    }

    async fn export(&mut self, spans: Vec<Span>) {
        let n = spans.len() as u64;
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "sluice".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        if let Err(e) = self.sink.send(req).await {
            tracing::debug!(error = %e, spans = n, "opentelemetry export failed");
            OTEL_SPANS_DROPPED.with_label_values(&["export_failed"]).inc_by(n);
        }
    }
}
