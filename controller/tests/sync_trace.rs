//! A sync round exports its spans to an in-process OTLP/gRPC collector: one trace with the root
//! `sync` and its children `translate` and `push` (parent = the root), each with its attributes,
//! start and end inside the root's, and the push's outcome as the span status.

mod support;

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

/// Runs the sync loop on the manifests of a golden case (with the fake proxy rejecting entities
/// tagged `reject_tag`) until it applied a config and a trace arrived, then for a few more
/// rounds; returns what the collector received and the proxy's final hash.
async fn traced(case: &str, reject_tag: Option<&str>) -> (Vec<ExportTraceServiceRequest>, i64, String) {
    let manifests = format!("{}/testdata/translate/{case}/in.yaml", env!("CARGO_MANIFEST_DIR"));
    let mut loaded = Loaded::default();
    parse_documents(&std::fs::read_to_string(manifests).unwrap(), "in.yaml", &mut loaded);
    let snapshot = loaded.snapshot;
    let objects = snapshot.len() as i64;

    let (addr, got) = collector().await;
    let admin = FakeAdmin::start().await;
    if let Some(tag) = reject_tag {
        admin.reject_tag(tag);
    }
    let tracer = SyncTracer::new(Some(&format!("http://{addr}"))).unwrap();
    let (sync, _changes_tx) = support::sync_loop(&admin, snapshot, Arc::new(Quiet), tracer);
    let token = CancellationToken::new();
    let task = tokio::spawn(sync.run(token.clone()));
    admin.wait_applied(1, Duration::from_secs(10)).await.expect("a config is pushed");
    let started = Instant::now();
    while got.0.lock().unwrap().is_empty() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Later rounds find the proxy running the config: they record nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    token.cancel();
    task.await.unwrap();
    let requests = got.0.lock().unwrap().clone();
    (requests, objects, admin.hash())
}

/// The spans of the one traced round, after checking the resource and that every child hangs
/// off the root inside its time.
fn round_spans(requests: &[ExportTraceServiceRequest]) -> (Span, Vec<Span>) {
    assert_eq!(requests.len(), 1, "one traced round: {requests:?}");
    let rs = &requests[0].resource_spans[0];
    let resource = rs.resource.as_ref().unwrap();
    let service = resource.attributes.iter().find(|a| a.key == "service.name").unwrap();
    assert_eq!(service.value.clone().unwrap().value.unwrap(), Av::StringValue("sluice-controller".into()));
    let spans = &rs.scope_spans[0].spans;
    let root = spans.iter().find(|s| s.name == "sync").expect("root span").clone();
    assert!(root.parent_span_id.is_empty());
    assert_eq!(root.trace_id.len(), 16);
    let children: Vec<Span> = spans.iter().filter(|s| s.name != "sync").cloned().collect();
    for child in &children {
        assert_eq!(child.trace_id, root.trace_id, "{}", child.name);
        assert_eq!(child.parent_span_id, root.span_id, "{}", child.name);
        assert_ne!(child.span_id, root.span_id);
        assert!(child.start_time_unix_nano >= root.start_time_unix_nano, "{}", child.name);
        assert!(child.end_time_unix_nano <= root.end_time_unix_nano, "{}", child.name);
    }
    for pair in children.windows(2) {
        assert!(pair[0].end_time_unix_nano <= pair[1].start_time_unix_nano, "children in order");
    }
    assert_eq!(root.status.as_ref().unwrap().code, StatusCode::Ok as i32);
    (root, children)
}

fn status(s: &Span) -> i32 {
    s.status.as_ref().unwrap().code
}

#[tokio::test]
async fn a_sync_round_exports_translate_and_push_under_one_root() {
    let (requests, objects, hash) = traced("ingress-prefix-basic", None).await;
    let (_, children) = round_spans(&requests);
    let names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["translate", "push"]);
    let (translate, push) = (&children[0], &children[1]);
    assert_eq!(attr(translate, "sluice.objects"), Av::IntValue(objects));
    assert_eq!(attr(translate, "sluice.problems"), Av::IntValue(0));
    assert_eq!(attr(push, "sluice.push.result"), Av::StringValue("accepted".into()));
    assert_eq!(attr(push, "sluice.push.config"), Av::StringValue("desired".into()));
    assert_eq!(attr(push, "sluice.config_hash"), Av::StringValue(hash));
    assert_eq!((status(translate), status(push)), (StatusCode::Ok as i32, StatusCode::Ok as i32));
}

/// A rejected push and its fallback are one round: translate, push (rejected, error status),
/// translate without the rejected object, push (accepted).
#[tokio::test]
async fn a_rejected_push_and_its_fallback_are_one_round() {
    let (requests, _, hash) = traced("fallback-rejected-route", Some("k8s-name:rejected")).await;
    let (_, children) = round_spans(&requests);
    let names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["translate", "push", "translate", "push"]);
    assert_eq!(attr(&children[1], "sluice.push.result"), Av::StringValue("rejected".into()));
    assert_eq!(status(&children[1]), StatusCode::Error as i32);
    assert!(children[1].status.as_ref().unwrap().message.contains("rejected"), "{:?}", children[1].status);
    assert_eq!(attr(&children[2], "sluice.left_out_objects"), Av::IntValue(1));
    assert_eq!(attr(&children[3], "sluice.push.result"), Av::StringValue("accepted".into()));
    assert_eq!(attr(&children[3], "sluice.config_hash"), Av::StringValue(hash));
}
