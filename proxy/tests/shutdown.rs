//! The real `sluice-proxy` binary: SIGTERM drains open gRPC streams and exits before the drain
//! deadline + 1 s, a stream longer than the deadline is cut at it, and a bad setting exits 64
//! naming the offending token before anything is bound.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use sluice_demo::hello::hello_service_client::HelloServiceClient;
use sluice_demo::hello::HelloRequest;
use sluice_demo::{spawn, BackendOptions};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_sluice-proxy");

struct Proc {
    child: Child,
    proxy: Vec<SocketAddr>,
    _dir: tempfile::TempDir,
}

/// Starts the binary with a declarative config routing gRPC to `backend` and `drain_ms`; returns
/// once it logged its bound addresses.
async fn start(backend: SocketAddr, drain_ms: u64) -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kong.yaml");
    std::fs::write(
        &config,
        format!(
            "_format_version: '3.0'\nservices:\n- name: g\n  protocol: grpc\n  host: {}\n  port: {}\n  routes:\n  - name: g\n    protocols: [grpc]\n    paths: [\"/\"]\n",
            backend.ip(),
            backend.port()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .env_clear()
        .env("KONG_PROXY_LISTEN", "127.0.0.1:0 http2")
        .env("KONG_STATUS_LISTEN", "127.0.0.1:0")
        .env("SLUICE_ADMIN_SOCKET", dir.path().join("admin.sock"))
        .env("KONG_DECLARATIVE_CONFIG", &config)
        .env("KONG_PROXY_ACCESS_LOG", "off")
        .env("SLUICE_DRAIN_TIMEOUT_MS", drain_ms.to_string())
        .env("KONG_NGINX_WORKER_PROCESSES", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let proxy = common::process::started_addrs(&mut child, Duration::from_secs(20)).await;
    Proc { child, proxy, _dir: dir }
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
}

fn stream_request(count: u32, interval_ms: u32) -> tonic::Request<HelloRequest> {
    let mut req = tonic::Request::new(HelloRequest { greeting: "drain".into() });
    req.metadata_mut().insert("x-reply-count", count.to_string().parse().unwrap());
    req.metadata_mut().insert("x-reply-interval-ms", interval_ms.to_string().parse().unwrap());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_open_grpc_stream_finish_then_exits() {
    let backend = spawn(BackendOptions::named("b")).await.unwrap();
    let drain = Duration::from_secs(5);
    let mut p = start(backend.addr(), drain.as_millis() as u64).await;
    let mut client = HelloServiceClient::new(grpc_channel(p.proxy[0], "example.com").await);
    // 10 replies 100 ms apart: about 1 s.
    let mut stream = client.lots_of_replies(stream_request(10, 100)).await.unwrap().into_inner();
    assert_eq!(stream.next().await.unwrap().unwrap().reply, "hello drain #1");

    let term = Instant::now();
    sigterm(&p.child);
    // Listeners close at once: new connections are refused while the stream drains.
    let addr = p.proxy[0];
    let refused = tokio::time::timeout(Duration::from_secs(2), async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "the listener still accepts after SIGTERM");

    let mut n = 1;
    while let Some(m) = stream.next().await {
        n += 1;
        assert_eq!(m.unwrap().reply, format!("hello drain #{n}"));
    }
    assert_eq!(n, 10, "the open stream was cut");
    let status = tokio::time::timeout(drain + Duration::from_secs(1), p.child.wait())
        .await
        .expect("the proxy did not exit before drain + 1 s")
        .unwrap();
    assert!(status.success(), "{status}");
    // Drained as soon as the stream ended, not at the deadline.
    assert!(term.elapsed() < Duration::from_secs(3), "exit took {:?}", term.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_longer_than_the_drain_deadline_is_cut_at_it() {
    let backend = spawn(BackendOptions::named("b")).await.unwrap();
    let drain = Duration::from_millis(1000);
    let mut p = start(backend.addr(), drain.as_millis() as u64).await;
    let mut client = HelloServiceClient::new(grpc_channel(p.proxy[0], "example.com").await);
    // 100 replies 100 ms apart: 10 s, far past the deadline.
    let mut stream = client.lots_of_replies(stream_request(100, 100)).await.unwrap().into_inner();
    stream.next().await.unwrap().unwrap();
    let term = Instant::now();
    sigterm(&p.child);
    let status = tokio::time::timeout(drain + Duration::from_secs(1), p.child.wait())
        .await
        .expect("the proxy did not exit before drain + 1 s")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(term.elapsed() >= drain - Duration::from_millis(50), "exited before the deadline: {:?}", term.elapsed());
    let mut got = 1;
    let end = loop {
        match stream.next().await {
            Some(Ok(_)) => got += 1,
            Some(Err(s)) => break Some(s.code()),
            None => break None,
        }
    };
    assert!(got < 100, "the stream was not cut");
    assert!(
        matches!(end, Some(tonic::Code::Unavailable | tonic::Code::Internal | tonic::Code::Unknown)),
        "stream ended with {end:?} after {got} messages"
    );
}

#[test]
fn a_bad_listen_setting_exits_64_naming_the_token_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("admin.sock");
    let out = std::process::Command::new(BIN)
        .env_clear()
        .env("KONG_PROXY_LISTEN", "0.0.0.0:8000 bogus")
        .env("SLUICE_ADMIN_SOCKET", &sock)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus") && err.contains("KONG_PROXY_LISTEN"), "{err}");
    assert!(!sock.exists(), "the admin socket was created");
}
