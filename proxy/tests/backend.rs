//! How the proxy reaches its backends beyond plain routing: names under `.invalid` fail at once
//! (the controller's invalid-backend target), host names resolve through the DNS cache, and the
//! service fields that shape the upstream exchange (timeouts, TLS to the upstream).

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice_demo::hello::hello_service_client::HelloServiceClient;
use sluice_demo::hello::HelloRequest;

/// The target the controller gives the invalid-backend share of a Gateway API rule.
const INVALID_TARGET: &str = "invalid-backend.sluice.invalid:1";

#[tokio::test]
async fn invalid_backend_is_an_immediate_unavailable() {
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&format!(
        "_format_version: '3.0'\nupstreams:\n- name: u\n  targets:\n  - target: {INVALID_TARGET}\nservices:\n- name: g\n  protocol: grpc\n  host: u\n  routes:\n  - name: g\n    protocols: [grpc]\n    paths: ['/']\n"
    ))
    .await;
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    for _ in 0..20 {
        let started = Instant::now();
        let mut req = tonic::Request::new(HelloRequest { greeting: "x".into() });
        req.set_timeout(Duration::from_secs(5));
        let err = client.say_hello(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        // Without a lookup the answer is local: far below any resolver timeout.
        assert!(started.elapsed() < Duration::from_millis(500), "took {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn host_names_resolve_through_the_cache() {
    let backend = sluice_demo::spawn(sluice_demo::BackendOptions::named("b")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    // `localhost`, not an address: the proxy resolves it (once, then from the cache).
    p.push_ok(&grpc_config(backend.addr()).replace("host: 127.0.0.1", "host: localhost")).await;
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    let r = client.say_hello(HelloRequest { greeting: "dns".into() }).await.unwrap();
    assert_eq!(r.get_ref().reply, "hello dns");
}

/// A gRPC-over-TLS config to `backend` (as `backend.internal`), verified against `server_ca`,
/// with `extra` merged into the service.
fn mtls_config(
    backend: std::net::SocketAddr,
    server_ca: &str,
    client: (&str, &str),
    extra: serde_json::Value,
) -> String {
    let mut service = serde_json::json!({
        "name": "s", "protocol": "grpcs", "host": "backend.internal", "port": 443, "tls_verify": true,
        "ca_certificates": ["11111111-1111-4111-8111-111111111111"],
        "routes": [{"name": "r", "protocols": ["grpc"], "paths": ["/"]}]
    });
    for (k, v) in extra.as_object().unwrap() {
        service[k] = v.clone();
    }
    serde_json::json!({
        "_format_version": "3.0",
        "services": [service],
        "upstreams": [{"name": "backend.internal", "targets": [{"target": backend.to_string()}]}],
        "ca_certificates": [{"id": "11111111-1111-4111-8111-111111111111", "cert": server_ca}],
        "certificates": [{"id": "22222222-2222-4222-8222-222222222222", "cert": client.0, "key": client.1}]
    })
    .to_string()
}

#[tokio::test]
async fn client_certificate_is_presented_to_an_upstream_that_requires_one() {
    install_provider();
    let (server_ca, server_cert, server_key) = ca_and_leaf(&["backend.internal"]);
    let (client_ca, client_cert, client_key) = ca_and_leaf(&["sluice-proxy"]);
    let b = sluice_demo::spawn(
        sluice_demo::BackendOptions::named("mtls").with_tls(server_cert, server_key).with_client_ca(client_ca),
    )
    .await
    .unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let client = (client_cert.as_str(), client_key.as_str());
    let with_cert = serde_json::json!({"client_certificate": {"id": "22222222-2222-4222-8222-222222222222"}});

    p.push_ok(&mtls_config(b.addr(), &server_ca, client, with_cert.clone())).await;
    let mut hello = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    let r = hello.say_hello(HelloRequest { greeting: "mtls".into() }).await.unwrap();
    assert_eq!(r.get_ref().reply, "hello mtls");

    // Without the client certificate the backend refuses the handshake: UNAVAILABLE.
    p.push_ok(&mtls_config(b.addr(), &server_ca, client, serde_json::json!({}))).await;
    let err = hello.say_hello(HelloRequest { greeting: "none".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");

    // A client certificate on a cleartext service, or one that names no certificate, is refused
    // by name.
    let mut bad = mtls_config(b.addr(), &server_ca, client, with_cert.clone()).replace("\"grpcs\"", "\"grpc\"");
    let (status, body) = p.push(&bad).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("client_certificate"), "{body}");
    bad = mtls_config(b.addr(), &server_ca, client, serde_json::json!({"client_certificate": {"id": "nope"}}));
    let (status, body) = p.push(&bad).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown certificate 'nope'"), "{body}");
}

#[tokio::test]
async fn tls_verify_depth_limits_the_upstream_chain() {
    install_provider();
    let (server_ca, server_cert, server_key) = ca_and_leaf(&["backend.internal"]);
    let (_, client_cert, client_key) = ca_and_leaf(&["unused"]);
    let b = sluice_demo::spawn(sluice_demo::BackendOptions::named("depth").with_tls(server_cert, server_key))
        .await
        .unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let client = (client_cert.as_str(), client_key.as_str());
    let mut hello = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);

    // leaf <- CA: one issuer above the leaf. Depth 1 accepts it, depth 0 does not.
    p.push_ok(&mtls_config(b.addr(), &server_ca, client, serde_json::json!({"tls_verify_depth": 1}))).await;
    assert!(hello.say_hello(HelloRequest { greeting: "d1".into() }).await.is_ok());
    p.push_ok(&mtls_config(b.addr(), &server_ca, client, serde_json::json!({"tls_verify_depth": 0}))).await;
    let err = hello.say_hello(HelloRequest { greeting: "d0".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let (status, body) =
        p.push(&mtls_config(b.addr(), &server_ca, client, serde_json::json!({"tls_verify_depth": 65}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("tls_verify_depth"), "{body}");
}

#[tokio::test]
async fn write_timeout_ends_a_call_whose_upstream_takes_no_body() {
    // An HTTP/2 upstream with a 1 KiB stream window that never reads a request body nor answers.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let _server = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut conn =
                    h2::server::Builder::new().initial_window_size(1024).handshake::<_, bytes::Bytes>(s).await.unwrap();
                let mut held = Vec::new();
                while let Some(Ok(stream)) = conn.accept().await {
                    held.push(stream); // kept, unread and unanswered
                }
            });
        }
    });
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let config = grpc_config(addr).replace("  routes:", "  write_timeout: 300\n  read_timeout: 60000\n  routes:");
    p.push_ok(&config).await;
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    let started = Instant::now();
    let mut req = tonic::Request::new(HelloRequest { greeting: "x".repeat(256 * 1024) });
    req.set_timeout(Duration::from_secs(30));
    let err = client.say_hello(req).await.unwrap_err();
    // The stalled upload ends after write_timeout, long before read_timeout or the deadline.
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn http_route_to_an_h2c_service_speaks_http2_upstream() {
    // What the controller makes of a Service port with appProtocol kubernetes.io/h2c under an
    // HTTPRoute: an HTTP route whose service is `grpc` (HTTP/2 without TLS).
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let _server = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let body = format!("{:?} {}", req.version(), req.uri().path());
                    Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from(body),
                    )))
                });
                let io = hyper_util::rt::TokioIo::new(s);
                let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    let p = TestProxy::start("127.0.0.1:0", &[]).await;
    p.push_ok(&format!(
        "_format_version: '3.0'\nservices:\n- name: h2c\n  protocol: grpc\n  host: {}\n  port: {}\n  routes:\n  - name: web\n    protocols: [http]\n    paths: ['/']\n",
        addr.ip(),
        addr.port()
    ))
    .await;
    let got = h1(p.addr(0), get("/items/1", "h2c.example.com")).await;
    assert_eq!((got.status, got.body.as_str()), (200, "HTTP/2.0 /items/1"));
}

#[tokio::test]
async fn invalid_backend_share_of_a_split_fails_at_once_and_the_rest_succeeds() {
    // The controller's shape for a rule with one valid and one invalid backend of equal weight:
    // retries 0 and a tcp_failures threshold that never trips keep the invalid share exact.
    let backend = sluice_demo::spawn(sluice_demo::BackendOptions::named("valid")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&format!(
        "_format_version: '3.0'\nupstreams:\n- name: u\n  healthchecks:\n    passive:\n      unhealthy:\n        tcp_failures: 4294967295\n  targets:\n  - target: {}\n  - target: {INVALID_TARGET}\nservices:\n- name: g\n  protocol: grpc\n  host: u\n  retries: 0\n  routes:\n  - name: g\n    protocols: [grpc]\n    paths: ['/']\n",
        backend.addr()
    ))
    .await;
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    let (mut ok, mut unavailable) = (0, 0);
    for _ in 0..100 {
        let started = Instant::now();
        let mut req = tonic::Request::new(HelloRequest { greeting: "x".into() });
        req.set_timeout(Duration::from_secs(5));
        match client.say_hello(req).await {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
                unavailable += 1;
            }
        }
        assert!(started.elapsed() < Duration::from_millis(500), "took {:?}", started.elapsed());
    }
    assert_eq!((ok, unavailable), (50, 50), "round-robin over equal weights alternates");
}

/// A gRPC-over-TLS service to `backend` through upstream `u`, whose `host_header` is `sni`
/// (what the controller makes of a BackendTLSPolicy's `hostname`), verified against `ca`.
fn backend_tls_config(backend: std::net::SocketAddr, ca: &str, sni: &str) -> String {
    serde_json::json!({
        "_format_version": "3.0",
        "services": [{
            "name": "s", "protocol": "grpcs", "host": "u", "port": 443, "tls_verify": true,
            "ca_certificates": ["11111111-1111-4111-8111-111111111111"],
            "routes": [{"name": "r", "protocols": ["grpc"], "paths": ["/"]}]
        }],
        "upstreams": [{"name": "u", "host_header": sni, "targets": [{"target": backend.to_string()}]}],
        "ca_certificates": [{"id": "11111111-1111-4111-8111-111111111111", "cert": ca}]
    })
    .to_string()
}

#[tokio::test]
async fn upstream_host_header_is_the_tls_name_sent_and_verified() {
    install_provider();
    let (ca, cert, key) = ca_and_leaf(&["backend.internal"]);
    let (other_ca, _, _) = ca_and_leaf(&["backend.internal"]);
    let b = sluice_demo::spawn(sluice_demo::BackendOptions::named("btls").with_tls(cert, key)).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let mut hello = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);

    // The upstream's name is `u`; the certificate is for backend.internal, which host_header names.
    p.push_ok(&backend_tls_config(b.addr(), &ca, "backend.internal")).await;
    let r = hello.say_hello(HelloRequest { greeting: "tls".into() }).await.unwrap();
    assert_eq!(r.get_ref().reply, "hello tls");

    // Another name, or another CA: the handshake fails and the call gets UNAVAILABLE.
    for (ca, sni) in [(&ca, "wrong.internal"), (&other_ca, "backend.internal")] {
        p.push_ok(&backend_tls_config(b.addr(), ca, sni)).await;
        let err = hello.say_hello(HelloRequest { greeting: "x".into() }).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{sni}: {err:?}");
    }
}
