//! A sync round exports its spans to an in-process OTLP/gRPC collector: one trace with the root
//! `sync` and its children `translate` and `push` (parent = the root), each with its attributes,
//! start and end inside the root's, and the push's outcome as the span status.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use controller::files::{parse_documents, Loaded};
use controller::sync::Reporter;
use controller::sync_trace::SyncTracer;
use controller::{Problem, Translation};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use support::FakeAdmin;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

async fn collector() -> (SocketAddr, Collector) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Collector::default();
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    });
    let svc = TraceServiceServer::new(got.clone());
    tokio::spawn(tonic::transport::Server::builder().add_service(svc).serve_with_incoming(incoming));
    (addr, got)
}

struct Quiet;
impl Reporter for Quiet {
    fn problems(&self, _reason: &'static str, _problems: &[Problem]) {}
    fn applied(&self, _translation: &Translation) {}
}

fn attr(s: &Span, key: &str) -> Av {
    let kv = s.attributes.iter().find(|a| a.key == key).unwrap_or_else(|| panic!("{} has no {key}", s.name));
    kv.value.clone().unwrap().value.unwrap()
}

#[tokio::test]
async fn a_sync_round_exports_translate_and_push_under_one_root() {
    let manifests = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/translate/ingress-prefix-basic/in.yaml");
    let mut loaded = Loaded::default();
    parse_documents(&std::fs::read_to_string(manifests).unwrap(), "in.yaml", &mut loaded);
    let snapshot = loaded.snapshot;
    let objects = snapshot.len() as i64;

    let (addr, got) = collector().await;
    let admin = FakeAdmin::start().await;
    let tracer = SyncTracer::new(Some(&format!("http://{addr}"))).unwrap();
    let (sync, _changes_tx) = support::sync_loop(&admin, snapshot, Arc::new(Quiet), tracer);
    let token = CancellationToken::new();
    let task = tokio::spawn(sync.run(token.clone()));
    admin.wait_applied(1, Duration::from_secs(10)).await.expect("the config is pushed");
    let started = Instant::now();
    while got.0.lock().unwrap().is_empty() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Later rounds find the proxy running the config: they record nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    token.cancel();
    task.await.unwrap();

    let requests = got.0.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "one traced round: {requests:?}");
    let rs = &requests[0].resource_spans[0];
    let resource = rs.resource.as_ref().unwrap();
    let service = resource.attributes.iter().find(|a| a.key == "service.name").unwrap();
    assert_eq!(service.value.clone().unwrap().value.unwrap(), Av::StringValue("sluice-controller".into()));
    let spans = &rs.scope_spans[0].spans;
    let by_name: HashMap<&str, &Span> = spans.iter().map(|s| (s.name.as_str(), s)).collect();
    assert_eq!(spans.len(), 3, "{spans:?}");
    let (root, translate, push) = (by_name["sync"], by_name["translate"], by_name["push"]);
    assert!(root.parent_span_id.is_empty());
    assert_eq!(root.trace_id.len(), 16);
    for child in [translate, push] {
        assert_eq!(child.trace_id, root.trace_id, "{}", child.name);
        assert_eq!(child.parent_span_id, root.span_id, "{}", child.name);
        assert_ne!(child.span_id, root.span_id);
        assert!(child.start_time_unix_nano >= root.start_time_unix_nano, "{}", child.name);
        assert!(child.end_time_unix_nano <= root.end_time_unix_nano, "{}", child.name);
        assert_eq!(child.status.as_ref().unwrap().code, StatusCode::Ok as i32, "{}", child.name);
    }
    assert!(translate.end_time_unix_nano <= push.start_time_unix_nano, "translate, then push");
    assert_eq!(attr(translate, "sluice.objects"), Av::IntValue(objects));
    assert_eq!(attr(translate, "sluice.problems"), Av::IntValue(0));
    assert_eq!(attr(push, "sluice.push.result"), Av::StringValue("accepted".into()));
    assert_eq!(attr(push, "sluice.config_hash"), Av::StringValue(admin.hash()));
    assert_eq!(root.status.as_ref().unwrap().code, StatusCode::Ok as i32);
}
