//! Failing neighbours: an upstream killed mid-stream or refusing connections, a
//! controller that dies mid-push or pushes garbage, an upstream that goes quiet mid-stream, a proxy
//! restart (with and without the config cache), and a certificate rotation under an open TLS
//! stream. Each has one exact outcome.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use sluice_demo::hello::hello_service_client::HelloServiceClient;
use sluice_demo::hello::HelloRequest;
use sluice_demo::{spawn, BackendOptions};
use tokio::io::AsyncWriteExt;
use tonic::transport::Channel;

fn service(name: &str, host: &str, backend: SocketAddr) -> String {
    format!(
        "- name: {name}\n  protocol: grpc\n  host: {}\n  port: {}\n  routes:\n  - name: {name}\n    protocols: [grpc, grpcs]\n    hosts: [{host}]\n    paths: [\"/\"]\n",
        backend.ip(),
        backend.port()
    )
}

fn streaming(count: u32, interval_ms: u32) -> tonic::Request<HelloRequest> {
    let mut req = tonic::Request::new(HelloRequest { greeting: "f".into() });
    req.metadata_mut().insert("x-reply-count", count.to_string().parse().unwrap());
    req.metadata_mut().insert("x-reply-interval-ms", interval_ms.to_string().parse().unwrap());
    req
}

/// Reads a server stream to its end: (messages, final status code).
async fn drain(mut s: tonic::Streaming<sluice_demo::hello::HelloResponse>) -> (usize, tonic::Code) {
    let mut n = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.next()).await.expect("stream hung") {
            Some(Ok(_)) => n += 1,
            Some(Err(e)) => return (n, e.code()),
            None => return (n, tonic::Code::Ok),
        }
    }
}

fn hello(c: Channel) -> HelloServiceClient<Channel> {
    HelloServiceClient::new(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_killed_mid_stream_ends_that_stream_only() {
    let a = spawn(BackendOptions::named("a")).await.unwrap();
    let b = spawn(BackendOptions::named("b")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&format!(
        "_format_version: '3.0'\nservices:\n{}{}",
        service("a", "a.example", a.addr()),
        service("b", "b.example", b.addr())
    ))
    .await;
    let mut on_a = hello(grpc_channel(p.addr(0), "a.example").await);
    let mut on_b = hello(grpc_channel(p.addr(0), "b.example").await);
    let mut sa = on_a.lots_of_replies(streaming(100, 50)).await.unwrap().into_inner();
    let sb = on_b.lots_of_replies(streaming(20, 50)).await.unwrap().into_inner();
    let b_task = tokio::spawn(drain(sb));
    for i in 1..=3 {
        assert_eq!(sa.next().await.unwrap().unwrap().reply, format!("hello f #{i}"));
    }
    a.kill();
    let (more, code) = drain(sa).await;
    assert_eq!(more, 0, "messages after the kill");
    assert!(matches!(code, tonic::Code::Unavailable | tonic::Code::Internal), "ended with {code:?}");
    assert_eq!(code, tonic::Code::Unavailable, "sluice maps an upstream connection loss to UNAVAILABLE");
    // The other backend's stream on the same client connection pool is unaffected.
    assert_eq!(b_task.await.unwrap(), (20, tonic::Code::Ok));
    // A new call to the dead upstream is refused at connect: UNAVAILABLE, quickly.
    let t = Instant::now();
    let err = on_a.say_hello(HelloRequest { greeting: "x".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
    drop(b);
}

/// An upstream host that went silent with a stream open (no FIN, no RST: a dead node, a dropped
/// route): the proxy's keepalive PING goes unanswered, it closes that connection, and the stream
/// ends with UNAVAILABLE long before the service's 60 s read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upstream_is_cut_by_keepalive_while_a_stream_is_open() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (silence, silenced) = tokio::sync::oneshot::channel::<()>();
    let upstream = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut conn = h2::server::handshake(tcp).await.unwrap();
        let (_request, mut respond) = conn.accept().await.unwrap().unwrap();
        let head = http::Response::builder().header("content-type", "application/grpc").body(()).unwrap();
        let stream = respond.send_response(head, false).unwrap();
        // Serve the connection (the headers go out) until told to go silent; then keep it open
        // without reading or answering anything (returned, so nothing is dropped or closed).
        tokio::select! {
            _ = std::future::poll_fn(|cx| conn.poll_closed(cx)) => panic!("the proxy closed the connection early"),
            _ = silenced => {}
        }
        (conn, stream)
    });
    let p = TestProxy::start(
        "127.0.0.1:0 http2",
        &[("SLUICE_UPSTREAM_H2_KEEPALIVE_INTERVAL_MS", "200"), ("SLUICE_UPSTREAM_H2_KEEPALIVE_TIMEOUT_MS", "300")],
    )
    .await;
    p.push_ok(&format!("_format_version: '3.0'\nservices:\n{}", service("silent", "silent.example", addr))).await;
    let t = Instant::now();
    let stream = hello(grpc_channel(p.addr(0), "silent.example").await)
        .lots_of_replies(streaming(1, 0))
        .await
        .unwrap()
        .into_inner();
    silence.send(()).unwrap();
    assert_eq!(drain(stream).await, (0, tonic::Code::Unavailable));
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    drop(upstream.await.unwrap());
}

#[tokio::test]
async fn upstream_refusing_connections_gives_502_and_unavailable() {
    // A port that was just free: connections are refused.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&basic_config(dead, dead)).await;
    let t = Instant::now();
    let got = h1(p.addr(0), get("/", "example.com")).await;
    assert_eq!(got.status, 502, "{}", got.body);
    let err = hello(grpc_channel(p.addr(0), "example.com").await)
        .say_hello(HelloRequest { greeting: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "took {:?}", t.elapsed());
}

#[tokio::test]
async fn garbage_and_half_sent_pushes_keep_the_last_good_config() {
    let echo = echo_http("e").await;
    let p = TestProxy::start("127.0.0.1:0", &[]).await;
    p.push_ok(&basic_config(echo.addr, echo.addr)).await;
    let hash = p.running().state.hash();
    // Garbage, a schema error and a hostile 10 KiB value: 400 each, nothing changes.
    let long = format!("_format_version: '3.0'\nservices:\n- name: x\n  host: {}\n  port: 1\n", "a".repeat(10 << 10));
    for bad in ["{{{ not yaml", "_format_version: '3.0'\nservices:\n- name: x\n  port: 99999\n", &long] {
        let (status, body) = p.push(bad).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(p.running().state.hash(), hash);
    }
    // A controller that dies in the middle of a push: the half body is never applied.
    let mut s = tokio::net::UnixStream::connect(p.socket()).await.unwrap();
    s.write_all(b"POST /config HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n_format_version: '3.0'\n")
        .await
        .unwrap();
    drop(s);
    // Nothing to wait for in a correct proxy; give a wrong apply a moment to show.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(p.running().state.hash(), hash);
    assert_eq!(h1(p.addr(0), get("/", "example.com")).await.status, 200);
}

async fn ready(p: &TestProxy) -> u16 {
    h1(p.status_addr(), get("/status/ready", "localhost")).await.status
}

#[tokio::test]
async fn restart_without_cache_waits_for_a_push_and_with_cache_serves_at_once() {
    let echo = echo_http("e").await;
    let config = basic_config(echo.addr, echo.addr);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = cache_dir.path().join("sub").join("config.yaml");
    std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
    let cache_env = cache.display().to_string();

    // Without a cache: a restarted proxy is not ready and routes nothing until the controller re-pushes.
    let mut p = TestProxy::start("127.0.0.1:0", &[]).await;
    p.push_ok(&config).await;
    p.running.take().unwrap().shutdown().await;
    let p = TestProxy::start("127.0.0.1:0", &[]).await;
    assert_eq!(ready(&p).await, 503);
    assert_eq!(h1(p.addr(0), get("/", "example.com")).await.status, 404);
    p.push_ok(&config).await;
    assert_eq!(ready(&p).await, 200);

    // With a cache: every accepted push is saved (0600); a rejected one is not.
    let mut p = TestProxy::start("127.0.0.1:0", &[("SLUICE_CONFIG_CACHE", &cache_env)]).await;
    assert_eq!(ready(&p).await, 503, "no cache file yet");
    p.push_ok(&config).await;
    let hash = p.running().state.hash();
    assert_eq!(p.push("{{{").await.0, 400);
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&cache).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&cache).unwrap(), config);
    }
    p.running.take().unwrap().shutdown().await;
    let p = TestProxy::start("127.0.0.1:0", &[("SLUICE_CONFIG_CACHE", &cache_env)]).await;
    assert_eq!(p.running().state.hash(), hash);
    assert_eq!(ready(&p).await, 200);
    assert_eq!(h1(p.addr(0), get("/", "example.com")).await.status, 200);
    // No temp files left next to the cache.
    assert_eq!(std::fs::read_dir(cache.parent().unwrap()).unwrap().count(), 1);
    drop(p);

    // A corrupt cache does not stop the proxy: it starts empty and waits for a push.
    std::fs::write(&cache, "{{{").unwrap();
    let p = TestProxy::start("127.0.0.1:0", &[("SLUICE_CONFIG_CACHE", &cache_env)]).await;
    assert_eq!(ready(&p).await, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificate_is_used_by_new_handshakes_while_open_streams_continue() {
    install_provider();
    let backend = spawn(BackendOptions::named("b")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2 ssl", &[]).await;
    let (ca1, cert1, key1) = ca_and_leaf(&["grpc.example.com"]);
    let (ca2, cert2, key2) = ca_and_leaf(&["grpc.example.com"]);
    let config = |cert: &str, key: &str| {
        format!(
            "_format_version: '3.0'\nservices:\n{}certificates:\n- cert: {}\n  key: {}\n  snis: [grpc.example.com]\n",
            service("g", "grpc.example.com", backend.addr()),
            serde_json::to_string(cert).unwrap(),
            serde_json::to_string(key).unwrap()
        )
    };
    p.push_ok(&config(&cert1, &key1)).await;
    let mut old = hello(grpc_tls_channel(p.addr(0), "grpc.example.com", &ca1).await);
    // 40 replies 50 ms apart: about 2 s, spanning the rotation.
    let mut open = old.lots_of_replies(streaming(40, 50)).await.unwrap().into_inner();
    open.next().await.unwrap().unwrap();

    p.push_ok(&config(&cert2, &key2)).await;
    // New handshakes present the new certificate: trusted by CA2, rejected by CA1.
    let tls = tls_connect(p.addr(0), "grpc.example.com", tls_client(&ca2, &[b"h2"])).await.unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    use rustls::pki_types::pem::PemObject;
    assert_eq!(leaf, rustls::pki_types::CertificateDer::from_pem_slice(cert2.as_bytes()).unwrap());
    assert!(tls_connect(p.addr(0), "grpc.example.com", tls_client(&ca1, &[b"h2"])).await.is_err());
    let mut new = hello(grpc_tls_channel(p.addr(0), "grpc.example.com", &ca2).await);
    assert_eq!(new.say_hello(HelloRequest { greeting: "n".into() }).await.unwrap().get_ref().reply, "hello n");

    // The stream opened under the old certificate runs to its end.
    assert_eq!(drain(open).await, (39, tonic::Code::Ok));
}

/// A service's `read_timeout` bounds the gap between two messages of a stream, not the stream:
/// replies 150 ms apart under 400 ms run for 750 ms, and when the upstream then stays quiet for
/// longer the call ends with DEADLINE_EXCEEDED about 400 ms after its last message.
#[tokio::test]
async fn read_timeout_bounds_the_gap_between_stream_messages_not_the_stream() {
    let b = spawn(BackendOptions::named("gaps")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let config = format!(
        "_format_version: '3.0'\nservices:\n- name: gaps\n  protocol: grpc\n  host: {}\n  port: {}\n  read_timeout: 400\n  routes:\n  - name: gaps\n    protocols: [grpc, grpcs]\n    paths: [\"/\"]\n",
        b.addr().ip(),
        b.addr().port()
    );
    p.push_ok(&config).await;
    let mut c = hello(grpc_channel(p.addr(0), "gaps.example").await);

    let t = Instant::now();
    let stream = c.lots_of_replies(streaming(6, 150)).await.unwrap().into_inner();
    assert_eq!(drain(stream).await, (6, tonic::Code::Ok));
    assert!(t.elapsed() >= Duration::from_millis(750), "the stream was shorter than its gaps: {:?}", t.elapsed());

    let mut stream = c.lots_of_replies(streaming(2, 3000)).await.unwrap().into_inner();
    stream.next().await.unwrap().unwrap();
    let last = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("stream hung");
    let gap = last.elapsed();
    let status = end.expect("the stream ended without a status").expect_err("the quiet upstream's reply came through");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    assert_eq!(status.message(), "The upstream server is timing out");
    assert!(
        gap >= Duration::from_millis(390) && gap < Duration::from_millis(2000),
        "ended {gap:?} after the last message"
    );
}
