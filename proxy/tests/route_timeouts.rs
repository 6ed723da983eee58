//! Route fields that bound or shape an exchange: `request_timeout` and `backend_request_timeout`
//! (Gateway API HTTPRoute `timeouts.request` / `backendRequest`), `request_buffering` and
//! `response_buffering`, and the service's `write_timeout` on HTTP/1.1 upstreams. Stalled
//! upstreams report each connection they hold on a channel (the signal that the proxy reached
//! them); the timeouts themselves are the proxy's.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::upstream::*;
use common::*;
use sluice_demo::hello::hello_service_client::HelloServiceClient;
use sluice_demo::hello::HelloRequest;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// An upstream that accepts connections and never reads nor answers; each accepted connection is
/// reported on the channel and held open. `recv_buffer` shrinks its receive buffer (so that a
/// request body fills it soon).
async fn stalled_upstream(recv_buffer: Option<u32>) -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener: TcpListener = socket.listen(16).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
            let _ = tx.send(());
        }
    });
    (addr, rx)
}

/// A service to `upstream` (`protocol`, `service_extra` fields) with one route on `/` carrying
/// `route_extra` fields.
fn config(upstream: SocketAddr, protocol: &str, service_extra: &str, route_extra: &str) -> String {
    let route_protocols = if protocol == "grpc" { "[grpc]" } else { "[http]" };
    format!(
        "_format_version: '3.0'\nservices:\n- name: s\n  protocol: {protocol}\n  host: {}\n  port: {}\n  retries: 0\n{service_extra}  routes:\n  - name: r\n    protocols: {route_protocols}\n    paths: ['/']\n{route_extra}",
        upstream.ip(),
        upstream.port()
    )
}

/// Asserts the exchange took at least `at_least` and well under the service's 60 s timeouts.
fn assert_took(started: Instant, at_least: Duration) {
    let took = started.elapsed();
    assert!(took >= at_least && took < Duration::from_secs(10), "took {took:?}");
}

/// A plain HTTP request to a stalled upstream on a route with `route_extra`: 504 after `bound`.
async fn stalled_http_answers_504(route_extra: &str, bound: Duration) {
    let (addr, mut reached) = stalled_upstream(None).await;
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&config(addr, "http", "", route_extra)).await;
    let started = Instant::now();
    let got = h1(p.addr(0), get("/slow", "example.com")).await;
    assert_eq!(got.status, 504, "{}", got.body);
    assert_took(started, bound);
    reached.try_recv().expect("the upstream was reached");
}

#[tokio::test]
async fn request_timeout_answers_504_when_the_upstream_stalls() {
    stalled_http_answers_504("    request_timeout: 200\n", Duration::from_millis(200)).await;
}

#[tokio::test]
async fn backend_request_timeout_bounds_the_attempt() {
    let route = "    request_timeout: 30000\n    backend_request_timeout: 200\n";
    stalled_http_answers_504(route, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn request_timeout_ends_a_grpc_call_with_deadline_exceeded() {
    // An HTTP/2 upstream that takes calls and never answers them.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, mut reached) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut conn = h2::server::handshake::<_>(s).await.unwrap();
                let mut held = Vec::new();
                while let Some(Ok(stream)) = conn.accept().await {
                    held.push(stream);
                    let _ = tx.send(());
                }
            });
        }
    });
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&config(addr, "grpc", "", "    request_timeout: 200\n")).await;
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    let started = Instant::now();
    // No grpc-timeout from the client: the route's bound is the only one.
    let err = client.say_hello(HelloRequest { greeting: "x".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert_took(started, Duration::from_millis(200));
    reached.try_recv().expect("the upstream got the call");
}

#[tokio::test]
async fn write_timeout_ends_an_http1_upload_the_upstream_does_not_read() {
    let (addr, mut reached) = stalled_upstream(Some(4096)).await;
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&config(addr, "http", "  write_timeout: 300\n  read_timeout: 60000\n", "")).await;
    // Far more than the socket buffers on both sides hold: the proxy's writes stall.
    let body = bytes::Bytes::from(vec![b'x'; 64 << 20]);
    let req =
        http::Request::post("/upload").header("host", "example.com").body(http_body_util::Full::new(body)).unwrap();
    let started = Instant::now();
    let got = h2c(p.addr(0), req).await.expect("an answer");
    assert_eq!(got.status, 504, "{}", got.body);
    assert_took(started, Duration::from_millis(300));
    reached.try_recv().expect("the upstream was reached");
}

/// A chunked upload of "hello" through the proxy; what the upstream saw of its framing.
async fn upload_framing(route_extra: &str) -> (Option<String>, Option<String>, Vec<u8>) {
    let up = Upstream::start(true, |_| reply("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")).await;
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&config(up.addr, "http", "", route_extra)).await;
    let raw = b"POST /up HTTP/1.1\r\nhost: example.com\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n";
    let answer = half_closed_exchange(p.addr(0), raw, b"").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = up.seen().pop().expect("the upstream got the request");
    (seen.header("content-length"), seen.header("transfer-encoding"), seen.body)
}

#[tokio::test]
async fn request_buffering_true_sends_the_upstream_a_content_length() {
    let (length, coding, body) = upload_framing("    request_buffering: true\n").await;
    assert_eq!((length.as_deref(), coding, body.as_slice()), (Some("5"), None, &b"hello"[..]));
    // Absent (and `false`): streamed, so chunked as the client sent it.
    for extra in ["", "    request_buffering: false\n"] {
        let (length, coding, body) = upload_framing(extra).await;
        assert_eq!((length, coding.as_deref(), body.as_slice()), (None, Some("chunked"), &b"hello"[..]), "{extra}");
    }
}

#[tokio::test]
async fn response_buffering_true_gives_the_client_a_content_length() {
    let up = Upstream::start(true, |_| {
        reply("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n")
    })
    .await;
    for (extra, buffered) in [("    response_buffering: true\n", true), ("", false)] {
        let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
        p.push_ok(&config(up.addr, "http", "", extra)).await;
        let raw = b"GET /down HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n";
        let answer = half_closed_exchange(p.addr(0), raw, b"").await.to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 200"), "{answer}");
        assert_eq!(answer.contains("content-length: 5\r\n"), buffered, "{answer}");
        assert_eq!(answer.contains("transfer-encoding: chunked"), !buffered, "{answer}");
    }
}

#[tokio::test]
async fn buffering_a_grpc_route_is_refused_naming_the_field() {
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for field in ["request_buffering", "response_buffering"] {
        let (status, body) = p.push(&config(addr, "grpc", "", &format!("    {field}: true\n"))).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(field), "{body}");
    }
    p.push_ok(&config(addr, "grpc", "", "    request_buffering: false\n")).await;
}
