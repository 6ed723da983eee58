//! Proxy core, in-process with real clients: one `http2` port serving h2c gRPC and HTTP/1.1,
//! TLS with ALPN and SNI certificate choice, HTTP/1.1-only ports, atomic config pushes, and
//! streams that outlive many pushes.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice_demo::hello::hello_service_client::HelloServiceClient;
use sluice_demo::hello::HelloRequest;
use sluice_demo::{spawn, BackendOptions};
use tokio_stream_shim::StreamExt as _;

mod tokio_stream_shim {
    pub use futures_util::StreamExt;
}

#[tokio::test]
async fn one_http2_port_serves_h2c_grpc_and_http1() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&basic_config(web.addr, grpc.addr())).await;

    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    let reply = client.say_hello(HelloRequest { greeting: "Kong".into() }).await.unwrap();
    assert_eq!(reply.get_ref().reply, "hello Kong");

    let got = h1(p.addr(0), get("/some/path?x=1", "example.com")).await;
    assert_eq!(got.status, 200);
    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(v["backend"], "web");
    assert_eq!(v["uri"], "/some/path?x=1");
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["headers"]["x-forwarded-proto"], "http");
    assert_eq!(v["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(v["headers"]["x-forwarded-host"], "example.com");
    assert_eq!(v["headers"]["x-forwarded-port"], p.addr(0).port().to_string());
}

#[tokio::test]
async fn port_without_http2_answers_http1_only() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0", &[]).await;
    p.push_ok(&basic_config(web.addr, grpc.addr())).await;
    assert_eq!(h1(p.addr(0), get("/", "a")).await.status, 200);
    let h2 = h2c(
        p.addr(0),
        Request::builder().uri(format!("http://a:{}/", p.addr(0).port())).body(Full::new(Bytes::new())).unwrap(),
    )
    .await;
    assert!(h2.is_err(), "h2c must not be spoken on a port without http2");
}

#[tokio::test]
async fn tls_port_negotiates_h2_and_http1_and_picks_certificate_by_sni() {
    install_provider();
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2 ssl, 127.0.0.1:0 ssl", &[]).await;
    let (ca_a, cert_a, key_a) = ca_and_leaf(&["a.example.com"]);
    let (ca_w, cert_w, key_w) = ca_and_leaf(&["*.wild.example.com"]);
    let certs = certificates_yaml(&[(&cert_a, &key_a, "a.example.com"), (&cert_w, &key_w, "*.wild.example.com")]);
    p.push_ok(&format!("{}{}", basic_config(web.addr, grpc.addr()), certs)).await;

    // ALPN h2 with the exact-SNI certificate (verified against its own CA).
    let tls = tls_connect(p.addr(0), "a.example.com", tls_client(&ca_a, &[b"h2", b"http/1.1"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(Request::builder().uri("https://a.example.com/x").body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["headers"]["x-forwarded-proto"], "https");

    // ALPN http/1.1 with the wildcard certificate.
    let tls = tls_connect(p.addr(0), "x.wild.example.com", tls_client(&ca_w, &[b"http/1.1"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let resp = send.send_request(get("/y", "x.wild.example.com")).await.unwrap();
    assert_eq!(resp.status(), 200);

    // An unknown SNI gets the default (self-signed) certificate, which neither CA trusts.
    assert!(tls_connect(p.addr(0), "unknown.example.org", tls_client(&ca_a, &[b"h2"])).await.is_err());

    // A TLS port without http2 never negotiates h2.
    let tls = tls_connect(p.addr(1), "a.example.com", tls_client(&ca_a, &[b"h2", b"http/1.1"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    // gRPC over TLS through tonic.
    let mut client = HelloServiceClient::new(grpc_tls_channel(p.addr(0), "a.example.com", &ca_a).await);
    let reply = client.say_hello(HelloRequest { greeting: "tls".into() }).await.unwrap();
    assert_eq!(reply.get_ref().reply, "hello tls");
}

#[tokio::test]
async fn bad_push_names_the_entity_and_keeps_serving_without_a_failed_request() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let good = basic_config(web.addr, grpc.addr());
    p.push_ok(&good).await;
    let (_, status) = admin_request(&p.socket(), "GET", "/status", None).await;
    let hash_before: serde_json::Value = serde_json::from_str(&status).unwrap();

    // Load while pushing: every request must succeed.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut loaders = Vec::new();
    for _ in 0..4 {
        let (stop, failures, done, addr) = (stop.clone(), failures.clone(), done.clone(), p.addr(0));
        loaders.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) && n < 5000 {
                n += 1;
                match send.send_request(get("/load", "example.com")).await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.into_body().collect().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    let cases = [
        ("bad-regex", "  - name: bad-regex\n    paths: ['~/(']\n", "paths.1"),
        ("dup", "  - name: web\n    paths: ['/dup']\n", "name"),
        ("orphan", "", "service"),
    ];
    for (name, extra_route, field) in cases {
        let bad = if name == "orphan" {
            format!("{good}routes:\n- name: orphan\n  service: nope\n  paths: ['/o']\n")
        } else {
            good.replacen("  routes:\n  - name: web\n", &format!("  routes:\n{extra_route}  - name: web\n"), 1)
        };
        let (status, body) = p.push(&bad).await;
        assert_eq!(status, 400, "{name}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let errs = v["flattened_errors"].as_array().unwrap();
        let hit = errs.iter().find(|e| {
            e["entity_type"] == "route" && (e["entity_name"] == name || (name == "dup" && e["entity_name"] == "web"))
        });
        let hit = hit.unwrap_or_else(|| panic!("{name}: no error for the route in {body}"));
        assert_eq!(hit["errors"][0]["field"], field, "{body}");
    }
    let (_, status) = admin_request(&p.socket(), "GET", "/status", None).await;
    let hash_after: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        hash_before["configuration_hash"], hash_after["configuration_hash"],
        "a rejected config must change nothing"
    );

    // Good pushes under load, too.
    for i in 0..20 {
        let cfg = good.replace("paths: [\"/\"]", &format!("paths: [\"/\", \"/v{i}\"]"));
        p.push_ok(&cfg).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        l.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(done.load(Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn server_stream_survives_100_pushes() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let good = basic_config(web.addr, grpc.addr());
    p.push_ok(&good).await;

    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    let mut req = tonic::Request::new(HelloRequest { greeting: "stream".into() });
    req.metadata_mut().insert("x-reply-count", "200".parse().unwrap());
    req.metadata_mut().insert("x-reply-interval-ms", "5".parse().unwrap());
    let mut stream = client.lots_of_replies(req).await.unwrap().into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.reply.starts_with("hello stream"));
    for i in 0..100 {
        // Alternate two configs so every push is a real swap.
        let cfg = if i % 2 == 0 { good.replace("name: web\n    paths", "name: web2\n    paths") } else { good.clone() };
        p.push_ok(&cfg).await;
    }
    let mut n = 1;
    while let Some(m) = stream.next().await {
        m.unwrap();
        n += 1;
    }
    assert_eq!(n, 200, "every streamed message arrives");
}

#[tokio::test]
async fn status_listener_reports_readiness_hash_and_metrics() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let ready = h1(p.status_addr(), get("/status/ready", "x")).await;
    assert_eq!(ready.status, 503);
    let status = h1(p.status_addr(), get("/status", "x")).await;
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(v["configuration_hash"], "00000000000000000000000000000000");

    let cfg = basic_config(web.addr, grpc.addr());
    let (code, body) = p.push(&cfg).await;
    assert_eq!(code, 201);
    let pushed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h1(p.status_addr(), get("/status/ready", "x")).await.status, 200);
    let status = h1(p.status_addr(), get("/status", "x")).await;
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(v["configuration_hash"], pushed["configuration_hash"]);
    // Same config with check_hash: 304, nothing changes.
    let (code, _) = admin_request(&p.socket(), "POST", "/config?check_hash=1", Some(cfg.clone())).await;
    assert_eq!(code, 304);
    // GET /config returns what is live.
    let (code, body) = admin_request(&p.socket(), "GET", "/config", None).await;
    assert_eq!(code, 200);
    let live: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(live["services"][0]["name"], "web");

    let metrics = h1(p.status_addr(), get("/metrics", "x")).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("kong_node_info"), "{}", metrics.body);
    // /metrics on a proxy port is routed like any path: here the catch-all web route answers.
    let routed = h1(p.addr(0), get("/metrics", "x")).await;
    let v: serde_json::Value = serde_json::from_str(&routed.body).unwrap();
    assert_eq!(v["backend"], "web");
}

#[tokio::test]
async fn admin_socket_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let p = TestProxy::start("127.0.0.1:0", &[]).await;
    let mode = std::fs::metadata(p.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn no_route_answers_kong_404_and_grpc_unimplemented() {
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let got = h1(p.addr(0), get("/nothing", "example.com")).await;
    assert_eq!(got.status, 404);
    assert_eq!(got.body, r#"{"message":"no Route matched with those values"}"#);
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    let err = client.say_hello(HelloRequest { greeting: "x".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert_eq!(err.message(), "no Route matched with those values");
}

#[tokio::test]
async fn h2_responses_get_a_date_and_the_length_of_a_known_body() {
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let got = h2c(p.addr(0), get("http://example.com/nothing", "example.com")).await.unwrap();
    assert_eq!(got.status, 404);
    let date = got.headers.get("date").expect("date").to_str().unwrap();
    assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
    let length = got.headers.get("content-length").expect("content-length").to_str().unwrap();
    assert_eq!(length, got.body.len().to_string(), "{:?}", got.headers);
}
