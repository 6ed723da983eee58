//! The plugin layer with real clients (hyper for HTTP, tonic for gRPC): Kong's precedence across
//! scopes (one test per row that exists without consumers), each plugin's documented behaviour,
//! and gRPC refusals arriving as gRPC statuses with the plugin's message.

mod common;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use sluice_demo::hello::hello_service_client::HelloServiceClient;
use sluice_demo::hello::HelloRequest;
use sluice_demo::{spawn, BackendOptions};

/// `basic_config` plus `extra` YAML appended at top level (e.g. a `plugins:` list).
fn config_with(http: std::net::SocketAddr, grpc: std::net::SocketAddr, extra: &str) -> String {
    format!("{}{extra}", basic_config(http, grpc))
}

/// The proxy on `listen` in front of an echo backend (route `web`) and a gRPC backend (route
/// `grpc`), with `plugins` YAML pushed; the backends live as long as the returned values.
async fn stack(listen: &str, plugins: &str) -> (TestProxy, EchoHttp, sluice_demo::Backend) {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start(listen, &[]).await;
    p.push_ok(&config_with(web.addr, grpc.addr(), plugins)).await;
    (p, web, grpc)
}

/// A client message stream fed through the returned sender.
fn client_stream() -> (tokio::sync::mpsc::Sender<HelloRequest>, impl futures_util::Stream<Item = HelloRequest>) {
    let (tx, rx) = tokio::sync::mpsc::channel::<HelloRequest>(4);
    (tx, futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) }))
}

fn termination(message: &str) -> String {
    format!(" name: request-termination\n  config: {{status_code: 418, message: {message}}}\n")
}

/// Which scope's request-termination answered `GET /` on route `web`.
async fn answered_by(plugins: &str) -> String {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&config_with(web.addr, grpc.addr(), plugins)).await;
    let got = h1(p.addr(0), get("/", "example.com")).await;
    assert_eq!(got.status, 418, "{}", got.body);
    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    v["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn precedence_global_applies_without_more_specific() {
    let plugins = format!("plugins:\n-{}", termination("global"));
    assert_eq!(answered_by(&plugins).await, "global");
}

#[tokio::test]
async fn precedence_service_beats_global() {
    let plugins = format!("plugins:\n-{}-{}  service: web\n", termination("global"), termination("service"));
    assert_eq!(answered_by(&plugins).await, "service");
}

#[tokio::test]
async fn precedence_route_beats_service() {
    let plugins = format!(
        "plugins:\n-{}-{}  service: web\n-{}  route: web\n",
        termination("global"),
        termination("service"),
        termination("route")
    );
    assert_eq!(answered_by(&plugins).await, "route");
}

#[tokio::test]
async fn precedence_route_and_service_beats_route() {
    let plugins = format!(
        "plugins:\n-{}  route: web\n-{}  route: web\n  service: web\n-{}  service: web\n",
        termination("route"),
        termination("route+service"),
        termination("service")
    );
    assert_eq!(answered_by(&plugins).await, "route+service");
}

#[tokio::test]
async fn disabled_instance_shadows_nothing() {
    let plugins =
        format!("plugins:\n-{}-{}  route: web\n  enabled: false\n", termination("global"), termination("route"));
    assert_eq!(answered_by(&plugins).await, "global");
}

#[tokio::test]
async fn route_and_service_instance_skips_routes_of_other_services() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    // Scoped to route `web` with service `grpc`: route `web` belongs to `web`, so it never applies.
    let plugins = format!("plugins:\n-{}  route: web\n  service: grpc\n", termination("never"));
    p.push_ok(&config_with(web.addr, grpc.addr(), &plugins)).await;
    assert_eq!(h1(p.addr(0), get("/", "example.com")).await.status, 200);
}

#[tokio::test]
async fn duplicate_scope_and_instance_name_are_rejected_with_flattened_errors() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0", &[]).await;
    let plugins = format!("plugins:\n-{}  route: web\n-{}  route: web\n", termination("a"), termination("b"));
    let (status, body) = p.push(&config_with(web.addr, grpc.addr(), &plugins)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("duplicate plugin 'request-termination'"), "{body}");
    let plugins = "plugins:\n- name: cors\n  instance_name: one\n- name: correlation-id\n  instance_name: one\n";
    let (status, body) = p.push(&config_with(web.addr, grpc.addr(), plugins)).await;
    assert_eq!(status, 400, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let errs = v["flattened_errors"].as_array().unwrap();
    assert!(errs.iter().any(|e| e["entity_name"] == "one" && e["errors"][0]["field"] == "instance_name"), "{body}");
    let (status, body) =
        p.push(&config_with(web.addr, grpc.addr(), "plugins:\n- name: cors\n  config: {origin: [x]}\n")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("cors") && body.contains("origin"), "{body}");
}

#[tokio::test]
async fn cors_preflight_is_answered_by_the_proxy() {
    let plugins = "plugins:\n- name: cors\n  route: web\n  config: {origins: [\"https://app.example\"], max_age: 600, credentials: true}\n";
    let (p, _web, _grpc) = stack("127.0.0.1:0 http2", plugins).await;
    let req = Request::builder()
        .method("OPTIONS")
        .uri("/api")
        .header("host", "example.com")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "x-one, x-two")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let got = h1(p.addr(0), req).await;
    assert_eq!(got.status, 200);
    assert!(got.headers.get("x-backend").is_none(), "a preflight must not reach the upstream");
    assert_eq!(got.headers["access-control-allow-origin"], "https://app.example");
    assert_eq!(got.headers["access-control-allow-credentials"], "true");
    assert_eq!(got.headers["access-control-allow-headers"], "x-one, x-two");
    assert_eq!(got.headers["access-control-allow-methods"], "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT");
    assert_eq!(got.headers["access-control-max-age"], "600");
    assert_eq!(got.headers["vary"], "Origin");
    assert_eq!(got.body, "");
}

#[tokio::test]
async fn cors_headers_on_proxied_responses() {
    let plugins = "plugins:\n- name: cors\n  config: {origins: [\"https://.*\\\\.good\\\\.example\"], exposed_headers: [x-total]}\n";
    let (p, _web, _grpc) = stack("127.0.0.1:0 http2", plugins).await;
    let with_origin = |o: &str| {
        Request::builder()
            .uri("/")
            .header("host", "example.com")
            .header("origin", o)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let got = h1(p.addr(0), with_origin("https://a.good.example")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["x-backend"], "web");
    assert_eq!(got.headers["access-control-allow-origin"], "https://a.good.example");
    assert_eq!(got.headers["access-control-expose-headers"], "x-total");
    let got = h1(p.addr(0), with_origin("https://a.good.example.evil")).await;
    assert!(got.headers.get("access-control-allow-origin").is_none());
    assert_eq!(got.headers["vary"], "Origin");
}

#[tokio::test]
async fn cors_exposes_grpc_status_on_grpc_routes() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&config_with(web.addr, grpc.addr(), "plugins:\n- name: cors\n  route: grpc\n")).await;
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    let reply = client.say_hello(HelloRequest { greeting: "cors".into() }).await.unwrap();
    assert_eq!(reply.metadata().get("access-control-expose-headers").unwrap(), "grpc-status,grpc-message");
    assert_eq!(reply.metadata().get("access-control-allow-origin").unwrap(), "*");
}

#[tokio::test]
async fn correlation_id_is_generated_kept_and_echoed() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let plugins =
        "plugins:\n- name: correlation-id\n  config: {header_name: X-Req, generator: uuid, echo_downstream: true}\n";
    p.push_ok(&config_with(web.addr, grpc.addr(), plugins)).await;
    let got = h1(p.addr(0), get("/", "example.com")).await;
    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    let sent = v["headers"]["x-req"].as_str().unwrap().to_string();
    assert_eq!(sent.len(), 36, "{sent}");
    assert_eq!(got.headers["x-req"], sent.as_str());
    let other = h1(p.addr(0), get("/", "example.com")).await;
    assert_ne!(other.headers["x-req"], sent.as_str());
    let req =
        Request::builder().uri("/").header("host", "e").header("x-req", "mine").body(Full::new(Bytes::new())).unwrap();
    let got = h1(p.addr(0), req).await;
    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(v["headers"]["x-req"], "mine");
    assert_eq!(got.headers["x-req"], "mine");
}

#[tokio::test]
async fn correlation_id_default_is_uuid_counter_not_echoed() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0", &[]).await;
    p.push_ok(&config_with(web.addr, grpc.addr(), "plugins:\n- name: correlation-id\n")).await;
    let got = h1(p.addr(0), get("/", "example.com")).await;
    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    let id = v["headers"]["kong-request-id"].as_str().unwrap();
    assert!(id.split_once('#').is_some_and(|(u, n)| u.len() == 36 && n.parse::<u64>().is_ok()), "{id}");
    assert!(got.headers.get("kong-request-id").is_none());
}

#[tokio::test]
async fn ip_restriction_refuses_http_with_kong_json_and_grpc_with_permission_denied() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&config_with(
        web.addr,
        grpc.addr(),
        "plugins:\n- name: ip-restriction\n  config: {deny: [127.0.0.0/8]}\n",
    ))
    .await;
    let got = h1(p.addr(0), get("/", "example.com")).await;
    assert_eq!(got.status, 403);
    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(v["message"], "IP address not allowed: 127.0.0.1");

    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    let err = client.say_hello(HelloRequest { greeting: "x".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert_eq!(err.message(), "IP address not allowed: 127.0.0.1");
}

#[tokio::test]
async fn ip_restriction_allow_list_and_custom_status() {
    let plugins = "plugins:\n- name: ip-restriction\n  route: web\n  config: {allow: [127.0.0.1]}\n- name: ip-restriction\n  route: grpc\n  config: {allow: [10.0.0.0/8], status: 401, message: go away}\n";
    let (p, _web, _grpc) = stack("127.0.0.1:0 http2", plugins).await;
    assert_eq!(h1(p.addr(0), get("/", "example.com")).await.status, 200);
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    let err = client.say_hello(HelloRequest { greeting: "x".into() }).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (tonic::Code::Unauthenticated, "go away"));
}

#[tokio::test]
async fn ip_restriction_uses_x_real_ip_from_trusted_peers_only() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g")).await.unwrap();
    let plugins = "plugins:\n- name: ip-restriction\n  config: {deny: [10.9.0.0/16]}\n";
    let from = |ip: &str| {
        Request::builder().uri("/").header("host", "e").header("x-real-ip", ip).body(Full::new(Bytes::new())).unwrap()
    };
    let trusting = TestProxy::start("127.0.0.1:0", &[("KONG_TRUSTED_IPS", "127.0.0.1")]).await;
    trusting.push_ok(&config_with(web.addr, grpc.addr(), plugins)).await;
    let got = h1(trusting.addr(0), from("10.9.1.1")).await;
    assert_eq!(got.status, 403);
    assert!(got.body.contains("IP address not allowed: 10.9.1.1"), "{}", got.body);
    assert_eq!(h1(trusting.addr(0), from("10.8.1.1")).await.status, 200);

    let untrusting = TestProxy::start("127.0.0.1:0", &[]).await;
    untrusting.push_ok(&config_with(web.addr, grpc.addr(), plugins)).await;
    assert_eq!(h1(untrusting.addr(0), from("10.9.1.1")).await.status, 200);
}

#[tokio::test]
async fn plugin_reply_still_gets_header_filter_plugins() {
    let plugins = "plugins:\n- name: correlation-id\n  config: {echo_downstream: true}\n- name: request-termination\n  config: {status_code: 503}\n";
    let (p, _web, _grpc) = stack("127.0.0.1:0", plugins).await;
    let got = h1(p.addr(0), get("/", "example.com")).await;
    assert_eq!(got.status, 503);
    assert!(got.body.contains("Service unavailable"), "{}", got.body);
    assert!(got.headers.contains_key("kong-request-id"));
}

/// A config with one plain-HTTP service `up` at `upstream` on every path, plus `plugins` YAML.
fn upstream_config(upstream: std::net::SocketAddr, plugins: &str) -> String {
    format!(
        "_format_version: '3.0'\nservices:\n- name: up\n  protocol: http\n  host: {}\n  port: {}\n  routes:\n  - name: up\n    paths: ['/']\n{plugins}",
        upstream.ip(),
        upstream.port()
    )
}

/// Writes `raw` on a new connection and reads until the connection ends (or 5 s pass).
async fn raw_exchange(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The proxy may answer and close before it read everything: a failed write is part of the test.
    let _ = s.write_all(raw).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A scripted upstream answering every request `200 ok`, and a proxy in front of it with
/// `plugins` YAML (service and route `up`, every path).
async fn ok_upstream(plugins: &str) -> (TestProxy, common::upstream::Upstream) {
    let up = common::upstream::Upstream::start(true, |_| {
        common::upstream::reply("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    })
    .await;
    let p = TestProxy::start("127.0.0.1:0", &[]).await;
    p.push_ok(&upstream_config(up.addr, plugins)).await;
    (p, up)
}

const SIZE_LIMIT_1K: &str =
    "plugins:\n- name: request-size-limiting\n  config: {allowed_payload_size: 1, size_unit: kilobytes}\n";

#[tokio::test]
async fn size_limit_refuses_a_declared_length_before_the_upstream_is_contacted() {
    let (p, up) = ok_upstream(SIZE_LIMIT_1K).await;
    let post = |n: usize| Request::post("/").header("host", "e").body(Full::new(Bytes::from(vec![b'x'; n]))).unwrap();
    let got = h1(p.addr(0), post(1025)).await;
    assert_eq!(got.status, 413, "{}", got.body);
    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(v["message"], "Request size limit exceeded");
    assert_eq!(up.accepted(), 0, "the upstream must not be contacted");
    // Exactly the limit passes, and the whole body reaches the upstream.
    let got = h1(p.addr(0), post(1024)).await;
    assert_eq!((got.status, got.body.as_str()), (200, "ok"));
    assert_eq!(up.seen()[0].body.len(), 1024);
    // Expect: 100-continue over the limit gets Kong's 417.
    let raw = b"POST / HTTP/1.1\r\nhost: e\r\ncontent-length: 5000\r\nexpect: 100-continue\r\n\r\n";
    let got = raw_exchange(p.addr(0), raw).await;
    assert!(got.starts_with("HTTP/1.1 417"), "{got}");
}

#[tokio::test]
async fn size_limit_counts_a_chunked_body_as_it_flows() {
    let (p, up) = ok_upstream(SIZE_LIMIT_1K).await;
    let chunk = format!("200\r\n{}\r\n", "x".repeat(0x200));
    let head = "POST / HTTP/1.1\r\nhost: e\r\ntransfer-encoding: chunked\r\n\r\n";
    // Three chunks of 512 bytes: the third passes the limit.
    let got = raw_exchange(p.addr(0), format!("{head}{chunk}{chunk}{chunk}0\r\n\r\n").as_bytes()).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert!(got.contains(r#"{"message":"Request size limit exceeded"}"#), "{got}");
    assert!(up.seen().iter().all(|s| s.body.len() < 1024), "no full body may reach the upstream");
    // Two chunks (exactly the limit) pass.
    let got = raw_exchange(p.addr(0), format!("{head}{chunk}{chunk}0\r\n\r\n").as_bytes()).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert_eq!(up.seen().last().unwrap().body.len(), 1024);
}

#[tokio::test]
async fn size_limit_require_content_length_and_size_unit() {
    let plugins = "plugins:\n- name: request-size-limiting\n  config: {allowed_payload_size: 10, size_unit: bytes, require_content_length: true}\n";
    let (p, _up) = ok_upstream(plugins).await;
    // No Content-Length (a GET without body): 411 with Kong's message.
    let got = h1(p.addr(0), get("/", "e")).await;
    assert_eq!(got.status, 411, "{}", got.body);
    assert!(got.body.contains("A valid Content-Length header is required"), "{}", got.body);
    let post = |n: usize| Request::post("/").header("host", "e").body(Full::new(Bytes::from(vec![b'x'; n]))).unwrap();
    assert_eq!(h1(p.addr(0), post(10)).await.status, 200);
    assert_eq!(h1(p.addr(0), post(11)).await.status, 413, "size_unit bytes: 11 > 10");
    // A chunked body satisfies require_content_length (its size is counted instead).
    let raw = "POST / HTTP/1.1\r\nhost: e\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert!(raw_exchange(p.addr(0), raw.as_bytes()).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limit_ends_a_grpc_client_stream_with_resource_exhausted_without_buffering_it() {
    let backend = spawn(BackendOptions::named("g")).await.unwrap();
    let plugins =
        "plugins:\n- name: request-size-limiting\n  config: {allowed_payload_size: 1, size_unit: megabytes}\n";
    let p = common::process::proxy_process(&format!("{}{plugins}", grpc_config(backend.addr()))).await;
    let pid = p.child.id().unwrap();
    let mut client = HelloServiceClient::new(grpc_channel(p.addr, "example.com").await);
    // Warm up with a stream under the limit (768 KiB in the same 64 KiB messages): it passes.
    let under = futures_util::stream::iter((0..12).map(|_| HelloRequest { greeting: "y".repeat(64 << 10) }));
    let reply = client.lots_of_greetings(under).await.unwrap();
    assert_eq!(reply.into_inner().reply.len(), "hello ".len() + 12 * (64 << 10) + 11);

    let before = common::process::vm_rss_kib(pid);
    // 5 MiB in 80 messages of 64 KiB, made as they are sent.
    let big = futures_util::stream::iter((0..80).map(|_| HelloRequest { greeting: "x".repeat(64 << 10) }));
    let err = client.lots_of_greetings(big).await.unwrap_err();
    let growth = common::process::vm_rss_kib(pid).saturating_sub(before);
    println!(
        "5 MiB client stream over a 1 MiB limit: {:?} {:?}, proxy RSS growth {growth} KiB",
        err.code(),
        err.message()
    );
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert_eq!(err.message(), "Request size limit exceeded");
    assert!(growth < 2 << 10, "the proxy's RSS grew {growth} KiB for a 5 MiB stream");
    // The connection still serves.
    let reply = client.say_hello(HelloRequest { greeting: "after".into() }).await.unwrap();
    assert!(reply.into_inner().reply.contains("after"));
}

#[tokio::test]
async fn size_limit_ends_a_started_grpc_response_with_resource_exhausted_trailers() {
    let plugins = "plugins:\n- name: request-size-limiting\n  config: {allowed_payload_size: 100, size_unit: bytes}\n";
    let (p, _web, _grpc) = stack("127.0.0.1:0 http2", plugins).await;
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    // A bidirectional stream: each greeting is answered at once, so the response has begun when
    // the third message (47 bytes each with its framing: past 100) arrives.
    let (tx, requests) = client_stream();
    let mut replies = client.bidi_hello(requests).await.unwrap().into_inner();
    for _ in 0..2 {
        tx.send(HelloRequest { greeting: "a".repeat(40) }).await.unwrap();
        assert!(replies.message().await.unwrap().is_some());
    }
    tx.send(HelloRequest { greeting: "a".repeat(40) }).await.unwrap();
    let err = loop {
        match replies.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(e) => break e,
        }
    };
    assert_eq!((err.code(), err.message()), (tonic::Code::ResourceExhausted, "Request size limit exceeded"), "{err:?}");
}

#[tokio::test]
async fn response_transformer_edits_headers_and_json_body() {
    let plugins = r#"plugins:
- name: response-transformer
  route: web
  config:
    remove: {headers: [x-backend], json: [headers]}
    rename: {headers: ["content-type:x-was-type"], json: ["uri:path"]}
    replace: {json: ["method:REPLACED", "absent:x"]}
    add: {headers: ["content-type:application/json", "x-added:1"], json: ["count:3", "ok:true", "method:no"], json_types: [number, boolean]}
    append: {headers: ["x-added:2"], json: ["backend:other"]}
"#;
    let (p, _web, _grpc) = stack("127.0.0.1:0 http2", plugins).await;
    // HTTP/1.1 and HTTP/2 clients both get the edited body with a length that fits it.
    for got in [
        h1(p.addr(0), get("/q?a=1", "example.com")).await,
        h2c(p.addr(0), get("http://example.com/q?a=1", "example.com")).await.unwrap(),
    ] {
        assert_eq!(got.status, 200);
        assert!(got.headers.get("x-backend").is_none());
        assert_eq!(got.headers["x-was-type"], "application/json");
        assert_eq!(got.headers["content-type"], "application/json");
        assert_eq!(got.headers.get_all("x-added").iter().collect::<Vec<_>>(), ["1", "2"]);
        let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
        assert!(v.get("headers").is_none() && v.get("uri").is_none(), "{v}");
        assert_eq!(v["path"], "/q?a=1");
        assert_eq!(v["method"], "REPLACED");
        assert!(v.get("absent").is_none());
        assert_eq!((v["count"].clone(), v["ok"].clone()), (serde_json::json!(3), serde_json::json!(true)));
        assert_eq!(v["backend"], serde_json::json!(["web", "other"]));
        if let Some(len) = got.headers.get("content-length") {
            assert_eq!(len.to_str().unwrap(), got.body.len().to_string());
        }
    }
    // A response without a body (HEAD) stays without one.
    let head = Request::head("/").header("host", "example.com").body(Full::new(Bytes::new())).unwrap();
    let got = h1(p.addr(0), head).await;
    assert_eq!((got.status, got.body.as_str()), (200, ""));
}

#[tokio::test]
async fn response_transformer_leaves_non_json_and_oversized_bodies_unedited() {
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(9 << 20));
    let reply_for = move |s: &common::upstream::Seen| {
        let (ct, body) = if s.head.starts_with("GET /big") {
            ("application/json", big.clone())
        } else {
            ("text/plain", "{\"secret\":1}".to_string())
        };
        common::upstream::reply(format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ))
    };
    let up = common::upstream::Upstream::start(true, reply_for).await;
    let p = TestProxy::start("127.0.0.1:0", &[]).await;
    let plugins = "plugins:\n- name: response-transformer\n  config: {remove: {json: [secret, pad]}}\n";
    p.push_ok(&upstream_config(up.addr, plugins)).await;
    let got = h1(p.addr(0), get("/plain", "e")).await;
    assert_eq!((got.body.as_str(), got.headers["content-length"].to_str().unwrap()), ("{\"secret\":1}", "12"));
    // Over the 8 MiB buffer: sent as the upstream sent it.
    let got = h1(p.addr(0), get("/big", "e")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), (9 << 20) + 10);
    assert!(got.body.starts_with("{\"pad\":\"xxx"));
}

#[tokio::test]
async fn response_transformer_edits_the_proxys_own_json_replies() {
    let plugins = "plugins:\n- name: request-termination\n  config: {status_code: 403, message: no}\n- name: response-transformer\n  config: {add: {json: [\"code:E1\"], headers: [\"x-added:1\"]}}\n";
    let (p, _web, _grpc) = stack("127.0.0.1:0", plugins).await;
    let got = h1(p.addr(0), get("/", "example.com")).await;
    assert_eq!(got.status, 403);
    assert_eq!(got.headers["x-added"], "1");
    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(v, serde_json::json!({"message": "no", "code": "E1"}));
}

#[tokio::test]
async fn response_transformer_edits_grpc_metadata_and_trailers() {
    let plugins = r#"plugins:
- name: response-transformer
  route: grpc
  config:
    remove: {headers: [x-trailer-echo-secret, x-echo-secret, grpc-status]}
    rename: {headers: ["x-trailer-echo-a:x-renamed"]}
    replace: {headers: ["grpc-message:redacted"]}
    add: {headers: ["x-added:1"]}
"#;
    let (p, _web, _grpc) = stack("127.0.0.1:0 http2", plugins).await;
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    let mut req = tonic::Request::new(HelloRequest { greeting: "t".into() });
    req.metadata_mut().insert("x-echo-secret", "s".parse().unwrap());
    req.metadata_mut().insert("x-echo-a", "v".parse().unwrap());
    let mut replies = client.lots_of_replies(req).await.unwrap();
    let md = replies.metadata().clone();
    assert_eq!(md.get("x-added").unwrap(), "1");
    assert!(md.get("x-echo-secret").is_none());
    assert_eq!(md.get("x-echo-a").unwrap(), "v");
    let stream = replies.get_mut();
    while stream.message().await.unwrap().is_some() {}
    let trailers = stream.trailers().await.unwrap().unwrap();
    assert!(trailers.get("x-trailer-echo-secret").is_none(), "{trailers:?}");
    assert_eq!(trailers.get("x-renamed").unwrap(), "v");
    assert!(trailers.get("x-trailer-echo-a").is_none());
    // A failing call: its message is replaced, its status kept (in trailers-only or trailers).
    let mut req = tonic::Request::new(HelloRequest { greeting: "t".into() });
    req.metadata_mut().insert("x-fail-code", "9".parse().unwrap());
    let err = client.say_hello(req).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (tonic::Code::FailedPrecondition, "redacted"));
}

/// sluice's `add.trailers` / `append.trailers`: on the trailers of a normal gRPC response and on
/// the header block of a trailers-only reply from the upstream; initial metadata untouched.
#[tokio::test]
async fn response_transformer_adds_grpc_trailers() {
    let plugins = r#"plugins:
- name: response-transformer
  route: grpc
  config:
    add: {headers: ["x-added:1"], trailers: ["x-served-by:edge", "x-trailer-echo-a:not-this"]}
    append: {trailers: ["x-hop:a", "x-hop:b"]}
"#;
    let (p, _web, _grpc) = stack("127.0.0.1:0 http2", plugins).await;
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    let mut req = tonic::Request::new(HelloRequest { greeting: "t".into() });
    req.metadata_mut().insert("x-echo-a", "v".parse().unwrap());
    let mut replies = client.lots_of_replies(req).await.unwrap();
    let md = replies.metadata().clone();
    assert_eq!(md.get("x-added").unwrap(), "1");
    assert!(md.get("x-served-by").is_none() && md.get("x-hop").is_none(), "{md:?}");
    let stream = replies.get_mut();
    let mut n = 0;
    while stream.message().await.unwrap().is_some() {
        n += 1;
    }
    assert!(n > 0);
    let trailers = stream.trailers().await.unwrap().unwrap();
    assert_eq!(trailers.get("x-served-by").unwrap(), "edge", "{trailers:?}");
    assert_eq!(trailers.get("x-trailer-echo-a").unwrap(), "v", "add keeps the upstream's entry");
    let hops: Vec<_> = trailers.get_all("x-hop").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert_eq!(hops, ["a", "b"]);

    // The upstream answers trailers-only (status in the header block): the entries go there.
    let mut req = tonic::Request::new(HelloRequest { greeting: "t".into() });
    req.metadata_mut().insert("x-fail-code", "9".parse().unwrap());
    let err = client.say_hello(req).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (tonic::Code::FailedPrecondition, "failed on purpose"));
    assert_eq!(err.metadata().get("x-served-by").unwrap(), "edge", "{:?}", err.metadata());
    let hops: Vec<_> = err.metadata().get_all("x-hop").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert_eq!(hops, ["a", "b"]);
}

#[tokio::test]
async fn request_transformer_rewrites_method_path_query_and_headers() {
    let web = echo_http("web").await;
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let config = format!(
        r#"_format_version: "3.0"
services:
- name: web
  host: {host}
  port: {port}
  path: /svc
  routes:
  - name: users
    paths: ["~/users/(?<id>\\d+)/(\\w+)$"]
    plugins:
    - name: request-transformer
      config:
        http_method: PUT
        remove: {{headers: [x-drop], querystring: [drop]}}
        rename: {{headers: ["x-old:x-new"], querystring: ["old:new"]}}
        replace: {{uri: "/v2/$(uri_captures.id)/$(uri_captures[2])", headers: ["host:upstream.example"], querystring: ["r:replaced"]}}
        add: {{headers: ["x-user:$(uri_captures.id)", "x-q:$(query_params.q)"], querystring: ["added:1"]}}
        append: {{headers: ["x-multi:b"], querystring: ["m:2"]}}
"#,
        host = web.addr.ip(),
        port = web.addr.port()
    );
    p.push_ok(&config).await;
    let req = Request::get("/users/42/posts?q=hi&drop=1&old=o&r=1&m=1")
        .header("host", "client.example")
        .header("x-drop", "1")
        .header("x-old", "v")
        .header("x-multi", "a")
        .body(Full::new(Bytes::new()))
        .unwrap();
    for got in [h1(p.addr(0), req.clone()).await, h2c(p.addr(0), req).await.unwrap()] {
        assert_eq!(got.status, 200, "{}", got.body);
        let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
        assert_eq!(v["method"], "PUT");
        // replace.uri is the whole upstream path (the service path is not joined to it).
        assert_eq!(v["uri"], "/v2/42/posts?added=1&m=1&m=2&new=o&q=hi&r=replaced", "{v}");
        let h = &v["headers"];
        assert_eq!(h["host"], "upstream.example");
        assert!(h.get("x-drop").is_none() && h.get("x-old").is_none());
        assert_eq!((h["x-new"].as_str(), h["x-user"].as_str(), h["x-q"].as_str()), (Some("v"), Some("42"), Some("hi")));
    }
}

#[tokio::test]
async fn request_transformer_edits_json_and_form_bodies() {
    let plugins = r#"plugins:
- name: request-transformer
  route: up
  config:
    remove: {body: [secret]}
    rename: {body: ["old:new"]}
    replace: {body: ["r:replaced"]}
    add: {body: ["added:$(headers.x_v)"]}
    append: {body: ["list:c"]}
"#;
    let (p, up) = ok_upstream(plugins).await;
    let post = |ct: &str, body: &str| {
        Request::post("/b")
            .header("host", "e")
            .header("content-type", ct)
            .header("x-v", "hv")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    };
    let got = h1(p.addr(0), post("application/json", r#"{"secret":1,"old":2,"r":3,"list":["a"]}"#)).await;
    assert_eq!(got.status, 200);
    let seen = up.seen().pop().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(v, serde_json::json!({"new": 2, "r": "replaced", "added": "hv", "list": ["a", "c"]}));
    assert_eq!(seen.header("content-length").unwrap(), seen.body.len().to_string());

    let got = h1(p.addr(0), post("application/x-www-form-urlencoded", "secret=s&old=o&r=1&z=a+b")).await;
    assert_eq!(got.status, 200);
    let seen = up.seen().pop().unwrap();
    assert_eq!(String::from_utf8(seen.body.clone()).unwrap(), "r=replaced&z=a%20b&new=o&added=hv&list=c");
    assert_eq!(seen.header("content-length").unwrap(), seen.body.len().to_string());

    // Other content types pass untouched; multipart with body operations is refused by name.
    let got = h1(p.addr(0), post("text/plain", "secret=s")).await;
    assert_eq!((got.status, up.seen().pop().unwrap().body), (200, b"secret=s".to_vec()));
    let got = h1(p.addr(0), post("multipart/form-data; boundary=x", "--x--")).await;
    assert_eq!(got.status, 415, "{}", got.body);
    assert!(got.body.contains("multipart/form-data bodies are not transformed"), "{}", got.body);
    // A body over the 8 MiB buffer is refused, not sent unedited.
    let got = h1(p.addr(0), post("application/json", &"x".repeat((8 << 20) + 1))).await;
    assert_eq!(got.status, 413, "{}", got.body);
}

#[tokio::test]
async fn request_transformer_moves_a_form_to_the_query_with_http_method_get() {
    let (p, up) = ok_upstream("plugins:\n- name: request-transformer\n  config: {http_method: GET}\n").await;
    let req = Request::post("/f?a=0")
        .header("host", "e")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from("a=1&b=2")))
        .unwrap();
    assert_eq!(h1(p.addr(0), req).await.status, 200);
    let seen = up.seen().pop().unwrap();
    assert!(seen.head.starts_with("GET /f?a=0&a=1&b=2 HTTP/1.1"), "{}", seen.head);
}

#[tokio::test]
async fn request_transformer_never_buffers_grpc_and_edits_its_metadata() {
    let plugins = "plugins:\n- name: request-transformer\n  route: grpc\n  config: {add: {headers: [\"x-echo-added:1\"], body: [\"a:1\"]}}\n";
    let (p, _web, _grpc) = stack("127.0.0.1:0 http2", plugins).await;
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    // A bidirectional stream answered message by message: a buffered body would never answer.
    let (tx, requests) = client_stream();
    let resp = client.bidi_hello(requests).await.unwrap();
    assert_eq!(resp.metadata().get("x-echo-added").unwrap(), "1");
    let mut replies = resp.into_inner();
    tx.send(HelloRequest { greeting: "one".into() }).await.unwrap();
    assert!(replies.message().await.unwrap().unwrap().reply.contains("one"));
}
