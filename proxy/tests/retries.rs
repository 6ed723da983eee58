//! Retries that are safe for gRPC, against real HTTP/2 backends: streams refused with
//! REFUSED_STREAM and a backend shutting down with GOAWAY in the middle of 10,000 calls cost no
//! call when another target is up; a 1 MiB request body is not replayed and fails cleanly;
//! attempts never exceed `retries` + 1 (each retry says which it is in `x-sluice-attempt-count`)
//! and never outlive the `grpc-timeout` deadline. With `retry_on_unavailable` a trailers-only
//! UNAVAILABLE answer is retried too; `retry_buffer_size` bounds the body kept for a replay.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::grpc_backends::{Backend, RefusingBackend};
use common::*;
use futures_util::stream::{self, StreamExt};
use sluice_demo::echo::echo_client::EchoClient;
use sluice_demo::echo::EchoRequest;
use tokio::time::Instant;
use tonic::{Code, Status};

const CALLS: usize = 10_000;
const CONCURRENCY: usize = 32;

/// A gRPC service over upstream `u` (round-robin over `targets`) with `retries`.
fn config(targets: &[SocketAddr], retries: u32) -> String {
    config_with(targets, retries, "")
}

/// [`config`] with more service fields (`extra`: YAML lines indented for the service).
fn config_with(targets: &[SocketAddr], retries: u32, extra: &str) -> String {
    let targets: String = targets.iter().map(|t| format!("  - target: {t}\n")).collect();
    format!(
        "_format_version: '3.0'\nupstreams:\n- name: u\n  targets:\n{targets}services:\n- name: g\n  protocol: grpc\n  \
         host: u\n  port: 80\n  retries: {retries}\n{extra}  routes:\n  - name: g\n    protocols: [grpc]\n    paths: ['/']\n"
    )
}

async fn proxy_with(config: &str) -> TestProxy {
    let proxy = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    proxy.push_ok(config).await;
    proxy
}

fn request(payload: usize) -> EchoRequest {
    EchoRequest { message: "hi".into(), payload: vec![7u8; payload] }
}

async fn echo(client: &mut EchoClient<tonic::transport::Channel>, payload: usize) -> Result<String, Status> {
    client.echo(request(payload)).await.map(|r| r.into_inner().backend)
}

/// Runs `CALLS` calls, `CONCURRENCY` at a time, calling `midway` once half are done; returns
/// the failures.
async fn load(client: EchoClient<tonic::transport::Channel>, midway: impl FnOnce()) -> Vec<Status> {
    let mut midway = Some(midway);
    let mut failures = Vec::new();
    let mut done = 0;
    let mut calls = stream::iter(0..CALLS)
        .map(|_| {
            let mut c = client.clone();
            async move { echo(&mut c, 16).await }
        })
        .buffer_unordered(CONCURRENCY);
    while let Some(r) = calls.next().await {
        done += 1;
        if let Err(s) = r {
            failures.push(s);
        }
        if done == CALLS / 2 {
            if let Some(f) = midway.take() {
                f();
            }
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_streams_mid_load_cost_no_call() {
    // a refuses every 10th stream; b (tonic) answers everything.
    let a = RefusingBackend::start("a", |n| n % 10 == 9, Duration::ZERO).await;
    let b = Backend::start("b").await;
    let proxy = proxy_with(&config(&[a.addr, b.addr], 5)).await;
    let client = EchoClient::new(grpc_channel(proxy.addr(0), "localhost").await);
    let failures = load(client, || {}).await;
    assert!(failures.is_empty(), "{} failed calls, first: {:?}", failures.len(), failures.first());
    let refused = a.streams() / 10;
    assert!(refused > 100, "the load exercised refusals ({refused})");
    // Every refused call was retried once, on b, which saw the attempt number.
    assert_eq!(b.calls() + a.streams() - refused, CALLS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_mid_load_costs_no_call() {
    let mut a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let proxy = proxy_with(&config(&[a.addr, b.addr], 5)).await;
    let client = EchoClient::new(grpc_channel(proxy.addr(0), "localhost").await);
    let failures = load(client, || a.shut_down()).await;
    assert!(failures.is_empty(), "{} failed calls, first: {:?}", failures.len(), failures.first());
    assert!(a.calls() > 0 && a.calls() < CALLS, "a served until it went away ({})", a.calls());
    assert_eq!(a.calls() + b.calls(), CALLS, "every call answered exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1mib_body_is_not_replayed_and_fails_cleanly() {
    let a = RefusingBackend::start("a", |_| true, Duration::ZERO).await;
    let b = RefusingBackend::start("b", |_| true, Duration::ZERO).await;
    let proxy = proxy_with(&config(&[a.addr, b.addr], 5)).await;
    let mut client = EchoClient::new(grpc_channel(proxy.addr(0), "localhost").await);
    let err = echo(&mut client, 1 << 20).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(a.streams() + b.streams(), 1, "a 1 MiB body is over the replay buffer: one attempt");
    // The proxy is fine afterwards: a small call is retried as far as retries allow.
    let err = echo(&mut client, 16).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_never_exceed_retries_plus_one_and_say_which_they_are() {
    let a = RefusingBackend::start("a", |_| true, Duration::ZERO).await;
    let b = RefusingBackend::start("b", |_| true, Duration::ZERO).await;
    let proxy = proxy_with(&config(&[a.addr, b.addr], 3)).await;
    let mut client = EchoClient::new(grpc_channel(proxy.addr(0), "localhost").await);
    let err = echo(&mut client, 16).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(a.streams() + b.streams(), 4, "retries: 3 -> 4 attempts");
    assert_eq!((a.streams(), b.streams()), (2, 2), "each retry goes to the other target");
    let mut seen: Vec<Option<String>> =
        a.attempts.lock().unwrap().iter().chain(b.attempts.lock().unwrap().iter()).cloned().collect();
    seen.sort();
    assert_eq!(seen, vec![None, Some("2".into()), Some("3".into()), Some("4".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_never_outlive_the_grpc_deadline() {
    // Each attempt is refused 150 ms in; a 400 ms deadline leaves room for three at most.
    let a = RefusingBackend::start("a", |_| true, Duration::from_millis(150)).await;
    let b = RefusingBackend::start("b", |_| true, Duration::from_millis(150)).await;
    let proxy = proxy_with(&config(&[a.addr, b.addr], 10)).await;
    // A raw HTTP/2 call: the deadline goes as grpc-timeout only, with no client-side timer
    // racing the proxy's answer. Body: one EchoRequest { message: "hi" }.
    let req = http::Request::post("http://localhost/echo.Echo/Echo")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "400m")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(&[0, 0, 0, 0, 4, 0x0a, 2, b'h', b'i'])))
        .unwrap();
    let start = Instant::now();
    let got = h2c(proxy.addr(0), req).await.unwrap();
    let took = start.elapsed();
    let status = got.trailers.as_ref().and_then(|t| t.get("grpc-status")).or(got.headers.get("grpc-status"));
    assert_eq!(status.map(|s| s.to_str().unwrap()), Some("4"), "DEADLINE_EXCEEDED: {:?}", got.headers);
    assert!(took < Duration::from_millis(400 + 150), "the call outlived its deadline: {took:?}");
    let attempts = a.streams() + b.streams();
    assert!((2..=3).contains(&attempts), "{attempts} attempts in 400 ms of 150 ms refusals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_trailers_only_is_retried_only_with_retry_on_unavailable() {
    // a answers every call UNAVAILABLE (trailers-only, as tonic does); b answers.
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    a.behaviour.unavailable.store(true, std::sync::atomic::Ordering::SeqCst);
    let proxy = proxy_with(&config_with(&[a.addr, b.addr], 2, "  retry_on_unavailable: true\n")).await;
    let mut client = EchoClient::new(grpc_channel(proxy.addr(0), "localhost").await);
    for i in 0..40 {
        assert_eq!(echo(&mut client, 16).await.map_err(|s| (i, s)).unwrap(), "b", "call {i}");
    }
    assert!(a.calls() >= 10, "round-robin sent calls to a first ({})", a.calls());
    assert_eq!(b.calls(), 40, "every call answered by b once");
    // Without the knob the UNAVAILABLE reaches the client (Kong's behaviour).
    proxy.push_ok(&config(&[a.addr, b.addr], 2)).await;
    let before = a.calls();
    let mut failed = 0;
    for _ in 0..40 {
        match echo(&mut client, 16).await {
            Ok(backend) => assert_eq!(backend, "b"),
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "{s:?}");
                assert_eq!(s.message(), "told to be unavailable");
                failed += 1;
            }
        }
    }
    assert_eq!(failed, a.calls() - before, "each call a answered failed, and only those");
    assert!(failed >= 10, "round-robin still sends calls to a ({failed})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_buffer_size_bounds_the_body_replayed() {
    // Both refuse every stream 20 ms in (the body has been sent and recorded by then).
    let a = RefusingBackend::start("a", |_| true, Duration::from_millis(20)).await;
    let b = RefusingBackend::start("b", |_| true, Duration::from_millis(20)).await;
    let proxy = proxy_with(&config_with(&[a.addr, b.addr], 1, "  retry_buffer_size: 64\n")).await;
    let mut client = EchoClient::new(grpc_channel(proxy.addr(0), "localhost").await);
    // The body: 5-byte gRPC prefix, `message: "hi"` (4 bytes), `payload` (2 + n bytes) = 11 + n.
    let err = echo(&mut client, 64 - 11).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(a.streams() + b.streams(), 2, "a 64-byte body fits the bound: retried once");
    let err = echo(&mut client, 65 - 11).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(a.streams() + b.streams(), 3, "a 65-byte body is over the bound: one attempt");
}
