//! gRPC through the proxy with real tonic clients and backends: every call shape over h2c and TLS,
//! large messages, metadata and trailers, cancellation, deadlines, balancing, and each error the
//! proxy itself produces (README.md "Where sluice differs from Kong").

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use http::Request;
use http_body_util::Full;
use sluice_demo::echo::echo_client::EchoClient;
use sluice_demo::echo::EchoRequest;
use sluice_demo::hello::hello_service_client::HelloServiceClient;
use sluice_demo::hello::HelloRequest;
use sluice_demo::{methods, spawn, Backend, BackendOptions, MAX_MESSAGE_SIZE};
use tonic::transport::Channel;

const N: usize = 1000;

fn hello(c: Channel) -> HelloServiceClient<Channel> {
    HelloServiceClient::new(c).max_decoding_message_size(MAX_MESSAGE_SIZE).max_encoding_message_size(MAX_MESSAGE_SIZE)
}

fn grpc_service(name: &str, protocol: &str, host: &str, port: u16, extra_route: &str) -> String {
    format!(
        "- name: {name}\n  protocol: {protocol}\n  host: {host}\n  port: {port}\n  routes:\n  - name: {name}\n    protocols: [grpc, grpcs]\n    paths: [\"/\"]\n{extra_route}"
    )
}

async fn four_shapes(client: &mut HelloServiceClient<Channel>) {
    let r = client.say_hello(HelloRequest { greeting: "unary".into() }).await.unwrap();
    assert_eq!(r.get_ref().reply, "hello unary");

    let mut req = tonic::Request::new(HelloRequest { greeting: "s".into() });
    req.metadata_mut().insert("x-reply-count", N.to_string().parse().unwrap());
    let mut stream = client.lots_of_replies(req).await.unwrap().into_inner();
    let mut n = 0;
    while let Some(m) = stream.next().await {
        m.unwrap();
        n += 1;
    }
    assert_eq!(n, N, "server streaming");

    let msgs = futures_util::stream::iter((0..N).map(|i| HelloRequest { greeting: format!("g{i}") }));
    let r = client.lots_of_greetings(msgs).await.unwrap();
    let reply = &r.get_ref().reply;
    assert!(reply.starts_with("hello g0,g1,") && reply.ends_with(&format!(",g{}", N - 1)), "client streaming reply");
    assert_eq!(reply.matches(',').count(), N - 1, "every client message arrived");

    // Bidi: each answer must arrive before the next message is sent (no buffering in between).
    let (tx, rx) = tokio::sync::mpsc::channel::<HelloRequest>(1);
    let mut answers = client.bidi_hello(tokio_stream_from(rx)).await.unwrap().into_inner();
    for i in 0..N {
        tx.send(HelloRequest { greeting: format!("b{i}") }).await.unwrap();
        let a = tokio::time::timeout(Duration::from_secs(5), answers.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(a.reply, format!("hello b{i}"));
    }
    drop(tx);
    assert!(answers.next().await.is_none());
}

fn tokio_stream_from<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    async_stream(move |yielder| async move {
        while let Some(v) = rx.recv().await {
            if yielder.send(v).await.is_err() {
                break;
            }
        }
    })
}

/// A tiny stream adapter over a channel-fed task (no extra crate needed).
fn async_stream<T, F, Fut>(f: F) -> impl futures_util::Stream<Item = T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(f(tx));
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

#[tokio::test]
async fn all_four_call_shapes_over_h2c_and_tls() {
    install_provider();
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2, 127.0.0.1:0 http2 ssl", &[]).await;
    let (ca, cert, key) = ca_and_leaf(&["grpc.example.com"]);
    let certs = certificates_yaml(&[(&cert, &key, "grpc.example.com")]);
    p.push_ok(&format!("{}{certs}", grpc_config(b.addr()))).await;
    four_shapes(&mut hello(grpc_channel(p.addr(0), "grpc.example.com").await)).await;
    four_shapes(&mut hello(grpc_tls_channel(p.addr(1), "grpc.example.com", &ca).await)).await;
}

#[tokio::test]
async fn sixteen_mib_message_and_metadata_and_trailers_pass_through() {
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&grpc_config(b.addr())).await;
    let mut client = EchoClient::new(grpc_channel(p.addr(0), "example.com").await)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let payload: Vec<u8> = (0..16 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut req = tonic::Request::new(EchoRequest { message: "big".into(), payload: payload.clone() });
    req.metadata_mut().insert("x-echo-color", "blue".parse().unwrap());
    let resp = client.echo(req).await.unwrap();
    assert_eq!(resp.metadata().get("x-echo-color").unwrap(), "blue");
    assert_eq!(resp.metadata().get("x-backend-name").unwrap(), "g1");
    assert_eq!(resp.get_ref().payload.len(), payload.len());
    assert!(resp.get_ref().payload == payload, "payload intact");

    // Trailers: use a streaming call so trailers are observable.
    let mut req = tonic::Request::new(HelloRequest { greeting: "t".into() });
    req.metadata_mut().insert("x-echo-trace", "abc".parse().unwrap());
    let mut stream =
        hello(grpc_channel(p.addr(0), "example.com").await).lots_of_replies(req).await.unwrap().into_inner();
    while stream.next().await.is_some() {}
    let trailers = stream.trailers().await.unwrap().unwrap();
    assert_eq!(trailers.get("x-trailer-echo-trace").unwrap(), "abc");
    // The backend saw the forwarding headers and the client's authority (preserve_host defaults to
    // false in Kong, so the upstream sees the service host).
    let seen = b.stats().last_request(methods::LOTS_OF_REPLIES).unwrap();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("te"), Some("trailers"));
}

#[tokio::test]
async fn client_cancel_reaches_upstream_within_100ms() {
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&grpc_config(b.addr())).await;
    let mut client = hello(grpc_channel(p.addr(0), "example.com").await);
    let mut req = tonic::Request::new(HelloRequest { greeting: "slow".into() });
    req.metadata_mut().insert("x-delay-ms", "10000".parse().unwrap());
    let call = tokio::spawn(async move { client.say_hello(req).await });
    let stats = b.stats();
    tokio::time::timeout(Duration::from_secs(5), async {
        while stats.started(methods::SAY_HELLO) == 0 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("call reached the backend");
    let cancelled_at = Instant::now();
    call.abort();
    tokio::time::timeout(Duration::from_secs(2), async {
        while stats.cancelled(methods::SAY_HELLO) == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("backend saw the cancel");
    let seen = stats.method(methods::SAY_HELLO).last_cancel.unwrap();
    let lag = seen.saturating_duration_since(cancelled_at);
    assert!(lag < Duration::from_millis(100), "cancel reached upstream after {lag:?}");
}

#[tokio::test]
async fn deadline_200ms_on_5s_call_is_deadline_exceeded_within_300ms_and_cancels_upstream() {
    // A raw h2 client sends the deadline and has no timer of its own: only the proxy can end the
    // call. (tonic's client also arms a local timer from `grpc-timeout` and reports CANCELLED when
    // it wins the race; grpcio reports DEADLINE_EXCEEDED either way, see the Python test.)
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&grpc_config(b.addr())).await;
    let req = Request::builder()
        .method("POST")
        .uri(format!("http://example.com{}", methods::SAY_HELLO))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "200m")
        .header("x-delay-ms", "5000")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let t0 = Instant::now();
    let got = h2c(p.addr(0), req).await.unwrap();
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(300), "took {took:?}");
    assert!(took >= Duration::from_millis(190), "ended before the deadline: {took:?}");
    assert_eq!(got.status, 200);
    let status = got.headers.get("grpc-status").or_else(|| got.trailers.as_ref().and_then(|t| t.get("grpc-status")));
    assert_eq!(status.unwrap(), "4");
    // The upstream got the remaining time, shorter than the client's, and saw the cancel.
    let seen = b.stats().last_request(methods::SAY_HELLO).unwrap();
    let fwd = seen.header("grpc-timeout").unwrap().to_string();
    let mut h = http::HeaderMap::new();
    h.insert("grpc-timeout", fwd.parse().unwrap());
    let remaining = proxy::wire::grpc::parse_timeout(&h).unwrap();
    assert!(remaining <= Duration::from_millis(200) && remaining > Duration::from_millis(150), "forwarded {fwd}");
    let stats = b.stats();
    tokio::time::timeout(Duration::from_secs(2), async {
        while stats.cancelled(methods::SAY_HELLO) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("upstream saw the cancel");
}

/// An h2 server that answers headers and one message, then resets the stream once the test says
/// the message reached the client: the proxy must end the gRPC call with status trailers, never hang.
async fn resetting_upstream(go: std::sync::Arc<tokio::sync::Notify>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let go = go.clone();
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(s).await.unwrap();
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    let go = go.clone();
                    tokio::spawn(async move {
                        let resp =
                            http::Response::builder().header("content-type", "application/grpc").body(()).unwrap();
                        let mut send = respond.send_response(resp, false).unwrap();
                        send.send_data(Bytes::from_static(&[0, 0, 0, 0, 2, 10, 0]), false).unwrap();
                        go.notified().await;
                        send.send_reset(h2::Reason::INTERNAL_ERROR);
                    });
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn upstream_reset_after_headers_ends_with_grpc_status_trailers() {
    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let go = std::sync::Arc::new(tokio::sync::Notify::new());
    let (addr, _task) = resetting_upstream(go.clone()).await;
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&grpc_config(addr)).await;
    let req = Request::builder()
        .method("POST")
        .uri(format!("http://example.com{}", methods::SAY_HELLO))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let stream = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap().len(), 7, "the message before the reset arrives");
    go.notify_one();
    let mut trailers = None;
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(f) = body.frame().await {
            if let Ok(t) = f.unwrap().into_trailers() {
                trailers = Some(t);
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the call must end, not hang");
    let trailers = trailers.expect("status trailers after the reset");
    let code = trailers.get("grpc-status").unwrap().to_str().unwrap();
    assert!(code == "13" || code == "14", "grpc-status {code}");
    assert_eq!(trailers.get("grpc-message").unwrap(), "upstream stream reset");
}

#[tokio::test]
async fn upstream_reset_before_headers_is_unavailable() {
    // A server that resets every stream at once (REFUSED_STREAM): nothing reached the client yet.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let _task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(s).await.unwrap();
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    respond.send_reset(h2::Reason::INTERNAL_ERROR);
                }
            });
        }
    });
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&grpc_config(addr)).await;
    let err = hello(grpc_channel(p.addr(0), "example.com").await)
        .say_hello(HelloRequest { greeting: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
}

async fn backend_names(p: &TestProxy, calls: usize) -> HashMap<String, usize> {
    let mut client = EchoClient::new(grpc_channel(p.addr(0), "example.com").await);
    let mut counts = HashMap::new();
    for _ in 0..calls {
        let r = client.echo(EchoRequest { message: "w".into(), payload: vec![] }).await.unwrap();
        *counts.entry(r.into_inner().backend).or_insert(0) += 1;
    }
    counts
}

fn upstream_config(name: &str, algorithm: &str, targets: &[(&Backend, u32)]) -> String {
    let t: String = targets.iter().map(|(b, w)| format!("  - target: {}\n    weight: {w}\n", b.addr())).collect();
    format!(
        "_format_version: '3.0'\nservices:\n{}upstreams:\n- name: {name}\n  algorithm: {algorithm}\n  targets:\n{t}",
        grpc_service("g", "grpc", name, 80, "")
    )
}

#[tokio::test]
async fn weighted_split_80_20_over_2000_calls_and_weight_zero_gets_nothing() {
    let (a, b, c) = (
        spawn(BackendOptions::named("a")).await.unwrap(),
        spawn(BackendOptions::named("b")).await.unwrap(),
        spawn(BackendOptions::named("c")).await.unwrap(),
    );
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&upstream_config("pool.upstream", "round-robin", &[(&a, 80), (&b, 20), (&c, 0)])).await;
    let counts = backend_names(&p, 2000).await;
    let share = |n: &str| *counts.get(n).unwrap_or(&0) as f64 / 2000.0;
    assert!((share("a") - 0.8).abs() <= 0.05, "{counts:?}");
    assert!((share("b") - 0.2).abs() <= 0.05, "{counts:?}");
    assert_eq!(counts.get("c"), None, "{counts:?}");
}

#[tokio::test]
async fn least_connections_and_refusing_target_is_skipped() {
    let (a, b) = (spawn(BackendOptions::named("a")).await.unwrap(), spawn(BackendOptions::named("b")).await.unwrap());
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let cfg = upstream_config("pool.upstream", "least-connections", &[(&a, 100), (&b, 100)])
        + &format!("  - target: {dead}\n    weight: 100\n");
    p.push_ok(&cfg).await;
    let counts = backend_names(&p, 100).await;
    assert_eq!(counts.values().sum::<usize>(), 100, "every call succeeds despite the refusing target: {counts:?}");
    assert!(counts.get("a").copied().unwrap_or(0) > 20 && counts.get("b").copied().unwrap_or(0) > 20, "{counts:?}");
}

#[tokio::test]
async fn consistent_hashing_on_header_sticks() {
    let (a, b) = (spawn(BackendOptions::named("a")).await.unwrap(), spawn(BackendOptions::named("b")).await.unwrap());
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let cfg = upstream_config("pool.upstream", "consistent-hashing", &[(&a, 100), (&b, 100)]).replace(
        "  algorithm: consistent-hashing\n",
        "  algorithm: consistent-hashing\n  hash_on: header\n  hash_on_header: x-user\n",
    );
    p.push_ok(&cfg).await;
    let mut client = EchoClient::new(grpc_channel(p.addr(0), "example.com").await);
    let mut per_user = HashMap::new();
    for user in 0..20 {
        for _ in 0..5 {
            let mut req = tonic::Request::new(EchoRequest { message: "h".into(), payload: vec![] });
            req.metadata_mut().insert("x-user", user.to_string().parse().unwrap());
            let backend = client.echo(req).await.unwrap().into_inner().backend;
            let first = per_user.entry(user).or_insert_with(|| backend.clone());
            assert_eq!(*first, backend, "user {user} moved");
        }
    }
    let distinct: std::collections::HashSet<_> = per_user.values().collect();
    assert_eq!(distinct.len(), 2, "20 users spread over both targets");
}

#[tokio::test]
async fn grpcs_upstream_with_verification_and_ca() {
    install_provider();
    let (ca, cert, key) = ca_and_leaf(&["backend.internal"]);
    let b = spawn(BackendOptions::named("tls").with_tls(cert, key)).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let svc = |verify: bool, with_ca: bool| {
        format!(
            "_format_version: '3.0'\nservices:\n- name: s\n  protocol: grpcs\n  host: backend.internal\n  port: 443\n  tls_verify: {verify}\n{}  routes:\n  - name: r\n    protocols: [grpc]\n    paths: ['/']\nupstreams:\n- name: backend.internal\n  targets:\n  - target: {}\nca_certificates:\n- id: 11111111-1111-4111-8111-111111111111\n  cert: {}\n",
            if with_ca { "  ca_certificates: [11111111-1111-4111-8111-111111111111]\n" } else { "" },
            b.addr(),
            serde_json::to_string(&ca).unwrap()
        )
    };
    p.push_ok(&svc(true, true)).await;
    let mut client = hello(grpc_channel(p.addr(0), "example.com").await);
    assert_eq!(client.say_hello(HelloRequest { greeting: "s".into() }).await.unwrap().get_ref().reply, "hello s");
    // Verification without the CA fails: UNAVAILABLE, never a plaintext fallback.
    p.push_ok(&svc(true, false)).await;
    let err = client.say_hello(HelloRequest { greeting: "s".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    // Kong's default tls_verify=false accepts it.
    p.push_ok(&svc(false, false)).await;
    assert!(client.say_hello(HelloRequest { greeting: "s".into() }).await.is_ok());
}

/// Opens `total` long calls on `channel`, 50 at a time, cancelling each batch once it reached the
/// backend; returns how many reached it.
async fn cancel_flood(channel: &Channel, stats: &sluice_demo::Stats, total: usize) -> u64 {
    let before = stats.started(methods::SAY_HELLO);
    for _ in 0..total / 50 {
        let mut calls = Vec::new();
        for _ in 0..50 {
            let mut client = hello(channel.clone());
            let mut req = tonic::Request::new(HelloRequest { greeting: "c".into() });
            req.metadata_mut().insert("x-delay-ms", "60000".parse().unwrap());
            calls.push(tokio::spawn(async move { client.say_hello(req).await }));
        }
        let want = stats.started(methods::SAY_HELLO) + 50;
        // Wait until the batch reached the backend (or failed: a cut connection fails its calls).
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while stats.started(methods::SAY_HELLO) < want && !calls.iter().all(|c| c.is_finished()) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        for c in calls {
            c.abort();
        }
    }
    stats.started(methods::SAY_HELLO) - before
}

#[tokio::test]
async fn five_thousand_cancelled_streams_then_100_calls_succeed() {
    // The concern here is the upstream side: 5,000 client cancels reset 5,000 streams on ONE pooled
    // upstream h2 connection, which must not trip h2's local-reset limit (GOAWAY for every stream).
    // The downstream Rapid Reset detector would (rightly, by default) cut a client that resets this
    // much, so this client is given room: SLUICE_H2_RESET_MIN_STREAMS.
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[("SLUICE_H2_RESET_MIN_STREAMS", "1000000")]).await;
    p.push_ok(&grpc_config(b.addr())).await;
    let channel = grpc_channel(p.addr(0), "example.com").await;
    let stats = b.stats();
    let reached = cancel_flood(&channel, &stats, 5000).await;
    assert_eq!(reached, 5000, "every call of the flood reached the backend over one client connection");
    tokio::time::timeout(Duration::from_secs(10), async {
        while stats.cancelled(methods::SAY_HELLO) < 5000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the backend saw 5,000 cancels");
    let mut client = hello(channel.clone());
    for i in 0..100 {
        let r = client.say_hello(HelloRequest { greeting: format!("n{i}") }).await;
        assert!(r.is_ok(), "call {i} after the cancel flood failed: {r:?}");
    }
}

#[tokio::test]
async fn cancel_flood_with_default_limits_costs_only_the_flooding_connection() {
    // With the default Rapid Reset limits the flooding connection is cut; the client (tonic
    // reconnects) and everyone else keep working, and the upstream connection survives.
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&grpc_config(b.addr())).await;
    let bystander = grpc_channel(p.addr(0), "example.com").await;
    let flooding = grpc_channel(p.addr(0), "example.com").await;
    let stats = b.stats();
    cancel_flood(&flooding, &stats, 1000).await;
    let mut by = hello(bystander);
    let mut fl = hello(flooding);
    for i in 0..100 {
        assert!(by.say_hello(HelloRequest { greeting: format!("b{i}") }).await.is_ok(), "bystander call {i}");
    }
    let mut ok = 0;
    for i in 0..100 {
        // The first call on a cut channel may fail while tonic reconnects.
        if fl.say_hello(HelloRequest { greeting: format!("f{i}") }).await.is_ok() {
            ok += 1;
        }
    }
    assert!(ok >= 99, "the flooding client recovers: {ok}/100");
}

#[tokio::test]
async fn reflection_and_health_pass_through() {
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&grpc_config(b.addr())).await;
    let channel = grpc_channel(p.addr(0), "example.com").await;
    let services = sluice_demo::grpc_call::list_services(channel.clone(), Default::default()).await.unwrap();
    assert!(services.contains(&"hello.HelloService".to_string()), "{services:?}");
    assert!(services.contains(&"echo.Echo".to_string()), "{services:?}");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let r = health.check(tonic_health::pb::HealthCheckRequest { service: "hello.HelloService".into() }).await.unwrap();
    assert_eq!(r.get_ref().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
}
