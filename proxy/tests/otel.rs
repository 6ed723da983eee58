//! The opentelemetry plugin end to end: a real proxy, real clients (hyper, tonic), and in-process
//! OTLP collectors (a tonic TraceService server, and an HTTP server decoding the protobuf body).
//! Span trees of unary, streaming, retried and refused calls with exact attribute values,
//! propagation round trips in every format, sampling rates over 2,000 calls, and an unreachable
//! collector costing no request.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use sluice_demo::hello::hello_service_client::HelloServiceClient;
use sluice_demo::hello::HelloRequest;
use sluice_demo::{spawn, BackendOptions};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One export's resource attributes, as `(key, value)`.
type ResourceAttrs = Vec<(String, String)>;

/// What a collector received, and a wake-up per export.
#[derive(Default, Clone)]
struct Received {
    spans: Arc<Mutex<Vec<Span>>>,
    resources: Arc<Mutex<Vec<ResourceAttrs>>>,
    notify: Arc<Notify>,
}

impl Received {
    fn take(&self, req: ExportTraceServiceRequest) {
        for rs in req.resource_spans {
            let attrs = rs.resource.map(|r| r.attributes).unwrap_or_default();
            self.resources.lock().unwrap().push(attrs.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect());
            for ss in rs.scope_spans {
                self.spans.lock().unwrap().extend(ss.spans);
            }
        }
        self.notify.notify_waiters();
    }

    /// Waits (10 s at most) until `done` holds for the spans received so far.
    async fn until(&self, what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.notify.notified();
            {
                let spans = self.spans.lock().unwrap();
                if done(&spans) {
                    return spans.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("collector: timed out waiting for {what}; got {:#?}", self.spans.lock().unwrap().len());
            }
        }
    }
}

struct GrpcCollector(Received);

#[tonic::async_trait]
impl TraceService for GrpcCollector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        assert_eq!(request.metadata().get("x-team").map(|v| v.to_str().unwrap()), Some("edge"));
        self.0.take(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// An OTLP/gRPC collector on 127.0.0.1:0.
async fn grpc_collector() -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Received::default();
    let svc = TraceServiceServer::new(GrpcCollector(got.clone()));
    tokio::spawn(tonic::transport::Server::builder().add_service(svc).serve_with_incoming(tokio_stream_of(listener)));
    (addr, got)
}

fn tokio_stream_of(
    listener: TcpListener,
) -> impl futures_util::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> {
    futures_util::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    })
}

/// An OTLP/HTTP collector on 127.0.0.1:0 (POST /v1/traces, protobuf body).
async fn http_collector() -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Received::default();
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let g = g.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let g = g.clone();
                    async move {
                        assert_eq!(req.uri().path(), "/v1/traces");
                        assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        g.take(ExportTraceServiceRequest::decode(body).unwrap());
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, got)
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Av::StringValue(s)) => s.clone(),
        Some(Av::IntValue(i)) => i.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// A span's attributes as `key=value` strings, sorted.
fn attrs(s: &Span) -> Vec<String> {
    let mut v: Vec<String> = s.attributes.iter().map(|kv| format!("{}={}", kv.key, text(&kv.value))).collect();
    v.sort();
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn otel_plugin(endpoint: &str, extra: &str) -> String {
    format!("plugins:\n- name: opentelemetry\n  config:\n    traces_endpoint: {endpoint}\n    batch_flush_delay: 1\n{extra}")
}

async fn proxy_with(web: SocketAddr, grpc: SocketAddr, plugins: &str) -> TestProxy {
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&format!("{}{plugins}", basic_config(web, grpc))).await;
    p
}

fn server_span(spans: &[Span]) -> &Span {
    spans.iter().find(|s| s.kind == SpanKind::Server as i32).expect("a server span")
}

#[tokio::test]
async fn unary_grpc_call_has_a_server_span_and_a_client_span() {
    let (collector, got) = grpc_collector().await;
    let web = echo_http("web").await;
    let backend = spawn(BackendOptions::named("g")).await.unwrap();
    let extra = "    sampling_rate: 1\n    otlp_protocol: grpc\n    headers: {x-team: edge}\n    resource_attributes: {service.name: edge-proxy, deployment.environment: test}\n";
    let p = proxy_with(web.addr, backend.addr(), &otel_plugin(&format!("http://{collector}"), extra)).await;
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    client.say_hello(HelloRequest { greeting: "otel".into() }).await.unwrap();

    let spans = got.until("2 spans", |s| s.len() >= 2).await;
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let server = server_span(&spans);
    let client_span = spans.iter().find(|s| s.kind == SpanKind::Client as i32).unwrap();
    assert_eq!(server.name, "hello.HelloService/SayHello");
    assert!(server.parent_span_id.is_empty(), "a new trace");
    assert_eq!(server.trace_id, client_span.trace_id);
    assert_eq!(client_span.parent_span_id, server.span_id);
    assert!(server.start_time_unix_nano <= client_span.start_time_unix_nano);
    assert!(client_span.end_time_unix_nano <= server.end_time_unix_nano);
    let (bip, bport) = (backend.addr().ip().to_string(), backend.addr().port());
    assert_eq!(
        attrs(server),
        vec![
            "client.address=127.0.0.1".to_string(),
            "http.request.method=POST".into(),
            "http.response.status_code=200".into(),
            "kong.route.name=grpc".into(),
            "kong.service.name=grpc".into(),
            "network.protocol.version=2".into(),
            "rpc.grpc.status_code=0".into(),
            "rpc.method=SayHello".into(),
            "rpc.service=hello.HelloService".into(),
            "rpc.system=grpc".into(),
            "server.address=example.com".into(),
            format!("upstream.address={bip}"),
            format!("upstream.port={bport}"),
            "url.path=/hello.HelloService/SayHello".into(),
            "url.scheme=http".into(),
            format!("user_agent.original={}", text_attr(server, "user_agent.original")),
        ]
    );
    assert!(text_attr(server, "user_agent.original").starts_with("tonic/"));
    assert_eq!(
        attrs(client_span),
        vec![
            "http.request.method=POST".to_string(),
            "http.response.status_code=200".into(),
            "rpc.method=SayHello".into(),
            "rpc.service=hello.HelloService".into(),
            "rpc.system=grpc".into(),
            format!("server.address={bip}"),
            format!("server.port={bport}"),
        ]
    );
    assert_eq!(server.status.as_ref().unwrap().code, 0, "unset");
    let resource = got.resources.lock().unwrap()[0].clone();
    assert!(resource.contains(&("service.name".into(), "edge-proxy".into())), "{resource:?}");
    assert!(resource.contains(&("deployment.environment".into(), "test".into())), "{resource:?}");
}

fn text_attr(s: &Span, key: &str) -> String {
    s.attributes.iter().find(|kv| kv.key == key).map(|kv| text(&kv.value)).unwrap_or_default()
}

#[tokio::test]
async fn streaming_call_span_ends_with_the_stream() {
    let (collector, got) = http_collector().await;
    let web = echo_http("web").await;
    let backend = spawn(BackendOptions::named("g")).await.unwrap();
    let extra = "    sampling_rate: 1\n";
    let p = proxy_with(web.addr, backend.addr(), &otel_plugin(&format!("http://{collector}/v1/traces"), extra)).await;
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    let mut req = tonic::Request::new(HelloRequest { greeting: "s".into() });
    req.metadata_mut().insert("x-reply-count", "5".parse().unwrap());
    let mut stream = client.lots_of_replies(req).await.unwrap().into_inner();
    let mut n = 0;
    let mut last_at = 0;
    while let Some(_m) = stream.message().await.unwrap() {
        n += 1;
        last_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    }
    assert_eq!(n, 5);
    let spans = got.until("2 spans", |s| s.len() >= 2).await;
    let server = server_span(&spans);
    assert_eq!(server.name, "hello.HelloService/LotsOfReplies");
    assert_eq!(text_attr(server, "rpc.method"), "LotsOfReplies");
    assert_eq!(text_attr(server, "rpc.grpc.status_code"), "0");
    // The span covers the whole stream: it ends after the client saw the last message arrive
    // (the proxy sent it, then the trailers that end the call).
    assert!(server.end_time_unix_nano + 5_000_000 >= last_at, "server span ended before the stream did");
    assert_eq!(spans.iter().filter(|s| s.kind == SpanKind::Client as i32).count(), 1);
}

#[tokio::test]
async fn refused_call_has_a_rejection_event_and_no_client_span() {
    let (collector, got) = http_collector().await;
    let web = echo_http("web").await;
    let backend = spawn(BackendOptions::named("g")).await.unwrap();
    let mut plugins = otel_plugin(&format!("http://{collector}/v1/traces"), "    sampling_rate: 1\n");
    plugins.push_str("- name: request-termination\n  config: {status_code: 418, message: teapot}\n");
    let p = proxy_with(web.addr, backend.addr(), &plugins).await;
    let got_resp = h1(p.addr(0), get("/refused", "example.com")).await;
    assert_eq!(got_resp.status, 418);
    let spans = got.until("1 span", |s| !s.is_empty()).await;
    assert_eq!(spans.len(), 1, "no upstream attempt: {spans:#?}");
    let server = &spans[0];
    assert_eq!(server.name, "GET web");
    assert_eq!(text_attr(server, "http.response.status_code"), "418");
    assert_eq!(text_attr(server, "url.path"), "/refused");
    assert_eq!(text_attr(server, "network.protocol.version"), "1.1");
    assert_eq!(server.events.len(), 1);
    let e = &server.events[0];
    assert_eq!(e.name, "plugin rejection");
    let mut ea: Vec<String> = e.attributes.iter().map(|kv| format!("{}={}", kv.key, text(&kv.value))).collect();
    ea.sort();
    assert_eq!(ea, vec!["http.response.status_code=418", "kong.plugin.name=request-termination", "message=teapot"]);
}

/// The headers a request carries in `format`, for trace `t` and parent span `s`, sampled.
fn incoming(format: &str, t: &str, s: &str) -> Vec<(&'static str, String)> {
    match format {
        "w3c" => vec![("traceparent", format!("00-{t}-{s}-01"))],
        "b3" => vec![("x-b3-traceid", t.into()), ("x-b3-spanid", s.into()), ("x-b3-sampled", "1".into())],
        "b3-single" => vec![("b3", format!("{t}-{s}-1"))],
        "jaeger" => vec![("uber-trace-id", format!("{t}:{s}:0:1"))],
        "ot" => {
            vec![("ot-tracer-traceid", t.into()), ("ot-tracer-spanid", s.into()), ("ot-tracer-sampled", "1".into())]
        }
        "aws" => vec![("x-amzn-trace-id", format!("Root=1-{}-{};Parent={s};Sampled=1", &t[..8], &t[8..]))],
        "gcp" => vec![("x-cloud-trace-context", format!("{t}/{};o=1", u64::from_str_radix(s, 16).unwrap()))],
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn propagation_round_trips_in_every_format() {
    let (collector, got) = http_collector().await;
    let web = echo_http("web").await;
    let backend = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    for (i, format) in ["w3c", "b3", "b3-single", "jaeger", "ot", "aws", "gcp"].into_iter().enumerate() {
        // b3-single comes in through the `b3` extractor (as in Kong) and goes out as itself.
        let (extract, inject) = if format == "b3-single" { ("b3", "b3-single") } else { (format, "preserve") };
        // Sampling 0: the span exists only because the incoming context says "sampled".
        let extra = format!(
            "    sampling_rate: 0\n    propagation: {{extract: [{extract}], inject: [{inject}], default_format: w3c, clear: [x-drop-me]}}\n"
        );
        let plugins = otel_plugin(&format!("http://{collector}/v1/traces"), &extra);
        p.push_ok(&format!("{}{plugins}", basic_config(web.addr, backend.addr()))).await;
        let mut req = get("/", "example.com");
        for (k, v) in incoming(format, trace, parent) {
            req.headers_mut().insert(k, v.parse().unwrap());
        }
        req.headers_mut().insert("x-drop-me", "1".parse().unwrap());
        let resp = h1(p.addr(0), req).await;
        assert_eq!(resp.status, 200);
        let seen: serde_json::Value = serde_json::from_str(&resp.body).unwrap();
        let h = &seen["headers"];
        assert!(h.get("x-drop-me").is_none(), "{format}: propagation.clear");
        let spans = got.until("this format's spans", |s| s.len() >= 2 * (i + 1)).await;
        let spans = &spans[2 * i..];
        let server = server_span(spans);
        let client = spans.iter().find(|s| s.kind == SpanKind::Client as i32).unwrap();
        assert_eq!(hex(&server.trace_id), trace, "{format}");
        assert_eq!(hex(&server.parent_span_id), parent, "{format}");
        let (c, sv) = (hex(&client.span_id), hex(&server.span_id));
        let want: Vec<(&str, String)> = match format {
            "w3c" => vec![("traceparent", format!("00-{trace}-{c}-01"))],
            "b3" => vec![
                ("x-b3-traceid", trace.into()),
                ("x-b3-spanid", c.clone()),
                ("x-b3-parentspanid", sv.clone()),
                ("x-b3-sampled", "1".into()),
            ],
            "b3-single" => vec![("b3", format!("{trace}-{c}-1-{sv}"))],
            "jaeger" => vec![("uber-trace-id", format!("{trace}:{c}:{sv}:01"))],
            "ot" => vec![
                ("ot-tracer-traceid", trace.into()),
                ("ot-tracer-spanid", c.clone()),
                ("ot-tracer-sampled", "1".into()),
            ],
            "aws" => vec![("x-amzn-trace-id", format!("Root=1-{}-{};Parent={c};Sampled=1", &trace[..8], &trace[8..]))],
            "gcp" => vec![("x-cloud-trace-context", format!("{trace}/{};o=1", u64::from_str_radix(&c, 16).unwrap()))],
            _ => unreachable!(),
        };
        for (k, v) in want {
            assert_eq!(h[k].as_str(), Some(v.as_str()), "{format}: {k} in {h}");
        }
    }
}

/// `n` requests on one h2c connection to route `web`; returns how many went upstream sampled.
async fn sampled_upstream(addr: SocketAddr, n: usize) -> usize {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut sampled = 0;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let mut send = send.clone();
        tasks.spawn(async move {
            let req = Request::builder().uri("http://example.com/").body(Full::new(Bytes::new())).unwrap();
            let resp = send.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
            seen["headers"]["traceparent"].as_str().unwrap().ends_with("-01")
        });
        if tasks.len() >= 32 {
            sampled += usize::from(tasks.join_next().await.unwrap().unwrap());
        }
    }
    while let Some(r) = tasks.join_next().await {
        sampled += usize::from(r.unwrap());
    }
    sampled
}

async fn sampling_run(rate: &str) -> (usize, usize) {
    let (collector, got) = http_collector().await;
    let web = echo_http("web").await;
    let backend = spawn(BackendOptions::named("g")).await.unwrap();
    let extra = format!("    sampling_rate: {rate}\n    batch_span_count: 500\n");
    let p = proxy_with(web.addr, backend.addr(), &otel_plugin(&format!("http://{collector}/v1/traces"), &extra)).await;
    let sampled = sampled_upstream(p.addr(0), 2000).await;
    // Every sampled request exports a server and a client span; an unsampled one records
    // nothing at all (the upstream saw `-00`), so the rate-0 run has nothing to wait for.
    let spans = got.until("the sampled requests' spans", |s| s.len() >= 2 * sampled).await;
    (sampled, spans.iter().filter(|s| s.kind == SpanKind::Server as i32).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_rates_hold_over_2000_calls() {
    let (sampled, servers) = sampling_run("1").await;
    assert_eq!((sampled, servers), (2000, 2000));
    let (sampled, servers) = sampling_run("0.5").await;
    assert!((900..=1100).contains(&sampled), "0.5 sampled {sampled} of 2000");
    assert_eq!(servers, sampled);
    let (sampled, servers) = sampling_run("0").await;
    assert_eq!((sampled, servers), (0, 0));
}

async fn dropped_export_failed(status: SocketAddr) -> u64 {
    let got = h1(status, get("/metrics", "localhost")).await;
    got.body
        .lines()
        .find(|l| l.starts_with("sluice_otel_spans_dropped_total{reason=\"export_failed\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn unreachable_collector_costs_no_request() {
    // A port that was free a moment ago: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let web = echo_http("web").await;
    let backend = spawn(BackendOptions::named("g")).await.unwrap();
    let extra = "    sampling_rate: 1\n    batch_span_count: 1\n    connect_timeout: 100\n";
    let p = proxy_with(web.addr, backend.addr(), &otel_plugin(&format!("http://{closed}/v1/traces"), extra)).await;
    for _ in 0..200 {
        assert_eq!(h1(p.addr(0), get("/", "example.com")).await.status, 200);
    }
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    client.say_hello(HelloRequest { greeting: "x".into() }).await.unwrap();
    // The failed exports are counted (the counter is process-wide; only this test fails exports).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while dropped_export_failed(p.status_addr()).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no failed export counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn retried_call_has_one_client_span_per_attempt() {
    let (collector, got) = http_collector().await;
    let web = echo_http("web").await;
    // A port that was free a moment ago: connecting to it is refused, and the balancer retries.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let config = format!(
        "_format_version: '3.0'\nservices:\n- name: web\n  host: pool.upstream\n  port: 80\n  retries: 3\n  routes:\n  - name: web\n    paths: ['/']\nupstreams:\n- name: pool.upstream\n  targets:\n  - target: {dead}\n  - target: {}\n{}",
        web.addr,
        otel_plugin(&format!("http://{collector}/v1/traces"), "    sampling_rate: 1\n")
    );
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&config).await;
    // Round-robin over the two targets: of two requests, one tries the dead target first.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let resp = h1(p.addr(0), get("/", "example.com")).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        let v: serde_json::Value = serde_json::from_str(&resp.body).unwrap();
        seen.push(v["headers"]["traceparent"].as_str().unwrap().to_string());
    }
    let spans = got
        .until("both requests' spans", |s| s.iter().filter(|s| s.kind == SpanKind::Server as i32).count() == 2)
        .await;
    let retried = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .find(|srv| spans.iter().filter(|c| c.parent_span_id == srv.span_id).count() == 2)
        .expect("a request with two attempts");
    let mut attempts: Vec<&Span> = spans.iter().filter(|c| c.parent_span_id == retried.span_id).collect();
    attempts.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(text_attr(attempts[0], "server.port"), dead.port().to_string());
    assert!(!text_attr(attempts[0], "error.type").is_empty(), "{:?}", attrs(attempts[0]));
    assert_eq!(attempts[0].status.as_ref().unwrap().code, 2, "error");
    assert_eq!(text_attr(attempts[1], "server.port"), web.addr.port().to_string());
    assert_eq!(text_attr(attempts[1], "http.request.resend_count"), "1");
    assert_eq!(text_attr(attempts[1], "http.response.status_code"), "200");
    assert!(attempts[0].end_time_unix_nano <= attempts[1].start_time_unix_nano);
    // The upstream got the context of the attempt that reached it.
    let want = format!("00-{}-{}-01", hex(&retried.trace_id), hex(&attempts[1].span_id));
    assert!(seen.contains(&want), "{seen:?} lacks {want}");
    assert_eq!(text_attr(retried, "upstream.port"), web.addr.port().to_string());
    assert_eq!(text_attr(retried, "http.response.status_code"), "200");
}
