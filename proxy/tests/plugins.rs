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
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let plugins = "plugins:\n- name: cors\n  route: web\n  config: {origins: [\"https://app.example\"], max_age: 600, credentials: true}\n";
    p.push_ok(&config_with(web.addr, grpc.addr(), plugins)).await;
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
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let plugins = "plugins:\n- name: cors\n  config: {origins: [\"https://.*\\\\.good\\\\.example\"], exposed_headers: [x-total]}\n";
    p.push_ok(&config_with(web.addr, grpc.addr(), plugins)).await;
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
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let plugins = "plugins:\n- name: ip-restriction\n  route: web\n  config: {allow: [127.0.0.1]}\n- name: ip-restriction\n  route: grpc\n  config: {allow: [10.0.0.0/8], status: 401, message: go away}\n";
    p.push_ok(&config_with(web.addr, grpc.addr(), plugins)).await;
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
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0", &[]).await;
    let plugins = "plugins:\n- name: correlation-id\n  config: {echo_downstream: true}\n- name: request-termination\n  config: {status_code: 503}\n";
    p.push_ok(&config_with(web.addr, grpc.addr(), plugins)).await;
    let got = h1(p.addr(0), get("/", "example.com")).await;
    assert_eq!(got.status, 503);
    assert!(got.body.contains("Service unavailable"), "{}", got.body);
    assert!(got.headers.contains_key("kong-request-id"));
}
