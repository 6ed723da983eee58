//! The demo backend, called directly with real tonic clients over real TCP (h2c and TLS): every call shape, the
//! knobs, cancellation accounting, reflection, health, message size limits and shutdown.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sluice_demo::echo::echo_client::EchoClient;
use sluice_demo::echo::EchoRequest;
use sluice_demo::hello::hello_service_client::HelloServiceClient;
use sluice_demo::hello::HelloRequest;
use sluice_demo::methods;
use sluice_demo::user::user_client::UserClient;
use sluice_demo::user::LoginRequest;
use sluice_demo::{self_signed, spawn, Backend, BackendOptions, MAX_MESSAGE_SIZE};
use tokio::sync::mpsc;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request};

const WAIT: Duration = Duration::from_secs(10);

async fn plaintext(name: &str) -> (Backend, Channel) {
    let backend = spawn(BackendOptions::named(name)).await.expect("spawn");
    let channel = Endpoint::from_shared(backend.url()).expect("url").connect().await.expect("connect");
    (backend, channel)
}

async fn tls(name: &str) -> (Backend, Channel) {
    let (cert, key) = self_signed(&["localhost", "127.0.0.1"]);
    let backend = spawn(BackendOptions::named(name).with_tls(cert.clone(), key)).await.expect("spawn tls");
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(cert)).domain_name("localhost");
    let endpoint = Endpoint::from_shared(backend.url()).expect("url").tls_config(tls).expect("tls config");
    (backend, endpoint.connect().await.expect("connect tls"))
}

fn hello(greeting: &str) -> HelloRequest {
    HelloRequest { greeting: greeting.to_owned() }
}

fn with_metadata<T>(message: T, pairs: &[(&'static str, &str)]) -> Request<T> {
    let mut request = Request::new(message);
    for (k, v) in pairs {
        request.metadata_mut().insert(*k, v.parse().expect("metadata value"));
    }
    request
}

/// All four call shapes, checked on one channel; shared by the h2c and TLS tests.
async fn four_shapes(channel: Channel, backend: &Backend) {
    let mut client = HelloServiceClient::new(channel);

    let response = client.say_hello(hello("Kong")).await.expect("unary");
    assert_eq!(response.get_ref().reply, "hello Kong");
    assert_eq!(response.metadata().get("x-backend-name").and_then(|v| v.to_str().ok()), Some(backend.name()));

    let mut replies = client.lots_of_replies(hello("s")).await.expect("server stream").into_inner();
    let mut got = Vec::new();
    while let Some(reply) = replies.message().await.expect("reply") {
        got.push(reply.reply);
    }
    assert_eq!(got, ["hello s #1", "hello s #2", "hello s #3"]);

    let request = with_metadata(hello("many"), &[("x-reply-count", "1000")]);
    let mut replies = client.lots_of_replies(request).await.expect("server stream 1000").into_inner();
    let mut count = 0;
    while let Some(reply) = replies.message().await.expect("reply") {
        count += 1;
        assert_eq!(reply.reply, format!("hello many #{count}"));
    }
    assert_eq!(count, 1000);

    let greetings = futures_util::stream::iter((0..1000).map(|i| hello(&format!("g{i}"))));
    let reply = client.lots_of_greetings(greetings).await.expect("client stream").into_inner().reply;
    let names: Vec<&str> = reply.strip_prefix("hello ").expect("prefix").split(',').collect();
    assert_eq!(names.len(), 1000);
    assert_eq!((names[0], names[999]), ("g0", "g999"));

    // Bidi: each answer arrives before the next request is sent, so the backend does not buffer.
    let (tx, rx) = mpsc::channel(1);
    let outbound = tokio_stream_from(rx);
    tx.send(hello("b0")).await.expect("send");
    let mut inbound = client.bidi_hello(outbound).await.expect("bidi").into_inner();
    for i in 0..100 {
        let reply = tokio::time::timeout(WAIT, inbound.message()).await.expect("reply in time").expect("reply");
        assert_eq!(reply.expect("some").reply, format!("hello b{i}"));
        if i < 99 {
            tx.send(hello(&format!("b{}", i + 1))).await.expect("send");
        }
    }
    drop(tx);
    assert!(inbound.message().await.expect("end").is_none());

    let stats = backend.stats();
    for method in [methods::SAY_HELLO, methods::LOTS_OF_GREETINGS, methods::BIDI_HELLO] {
        assert!(stats.wait_until(WAIT, |s| s.completed(method) == 1).await, "{method} completed once");
    }
    assert!(stats.wait_until(WAIT, |s| s.completed(methods::LOTS_OF_REPLIES) == 2).await);
    assert_eq!(stats.total_cancelled(), 0);
}

/// An mpsc receiver as a request stream (tokio-stream is not a dependency).
fn tokio_stream_from<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

#[tokio::test]
async fn four_shapes_over_h2c() {
    let (backend, channel) = plaintext("plain").await;
    four_shapes(channel, &backend).await;
}

#[tokio::test]
async fn four_shapes_over_tls() {
    let (backend, channel) = tls("secure").await;
    assert!(backend.is_tls());
    four_shapes(channel, &backend).await;
}

#[tokio::test]
async fn tls_negotiates_h2_with_alpn() {
    use sluice_demo::tls::{client_config, Verify};
    let (cert, key) = self_signed(&["localhost"]);
    let backend = spawn(BackendOptions::named("alpn").with_tls(cert.clone(), key)).await.expect("spawn");
    let config = client_config(&Verify::Ca(cert)).expect("client config");
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(backend.addr()).await.expect("tcp");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let stream = connector.connect(name, tcp).await.expect("handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn echo_reports_backend_method_and_big_payload() {
    let (backend, channel) = plaintext("echo-1").await;
    let mut client = EchoClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let payload: Vec<u8> = (0..16 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let reply = client
        .echo_v2(EchoRequest { message: "big".into(), payload: payload.clone() })
        .await
        .expect("echo v2")
        .into_inner();
    assert_eq!((reply.message.as_str(), reply.backend.as_str()), ("big", "echo-1"));
    assert_eq!(reply.method, methods::ECHO_V2);
    assert!(reply.payload == payload, "16 MiB payload echoed unchanged");
    let reply = client.echo(EchoRequest { message: "m".into(), payload: vec![] }).await.expect("echo");
    assert_eq!(reply.into_inner().method, methods::ECHO);
    let mut user = UserClient::new(backend_channel(&backend).await);
    let login = user.login(LoginRequest { username: "ada".into() }).await.expect("login").into_inner();
    assert_eq!((login.message.as_str(), login.backend.as_str()), ("hello ada", "echo-1"));
    assert_eq!(backend.stats().started(methods::LOGIN), 1);
}

async fn backend_channel(backend: &Backend) -> Channel {
    Endpoint::from_shared(backend.url()).expect("url").connect().await.expect("connect")
}

#[tokio::test]
async fn records_request_metadata_per_method() {
    let (backend, _) = plaintext("meta").await;
    let endpoint =
        Endpoint::from_shared(backend.url()).expect("url").origin("http://example.com:8000".parse().expect("origin"));
    let mut client = HelloServiceClient::new(endpoint.connect().await.expect("connect"));
    let mut request = with_metadata(hello("m"), &[("x-forwarded-for", "10.1.2.3")]);
    request.set_timeout(Duration::from_secs(30));
    client.say_hello(request).await.expect("call");
    let seen = backend.stats().last_request(methods::SAY_HELLO).expect("seen");
    assert_eq!(seen.authority.as_deref(), Some("example.com:8000"));
    assert_eq!(seen.header("x-forwarded-for"), Some("10.1.2.3"));
    assert!(seen.header("grpc-timeout").is_some_and(|t| t.ends_with('m') || t.ends_with('u')), "{seen:?}");
    assert!(backend.stats().last_request(methods::ECHO).is_none());
}

#[tokio::test]
async fn fail_code_knob_and_echoed_headers_and_trailers() {
    let (backend, channel) = plaintext("knobs").await;
    let mut client = HelloServiceClient::new(channel);
    let request = with_metadata(hello("x"), &[("x-fail-code", "14"), ("x-echo-token", "abc")]);
    let status = client.say_hello(request).await.expect_err("fails");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "failed on purpose");
    assert_eq!(status.metadata().get("x-echo-token").and_then(|v| v.to_str().ok()), Some("abc"));
    assert_eq!(status.metadata().get("x-trailer-echo-token").and_then(|v| v.to_str().ok()), Some("abc"));
    assert_eq!(status.metadata().get("x-backend-name").and_then(|v| v.to_str().ok()), Some("knobs"));

    let request = with_metadata(hello("x"), &[("x-echo-token", "def"), ("x-reply-count", "2")]);
    let response = client.lots_of_replies(request).await.expect("stream");
    assert_eq!(response.metadata().get("x-echo-token").and_then(|v| v.to_str().ok()), Some("def"));
    let mut stream = response.into_inner();
    while stream.message().await.expect("reply").is_some() {}
    let trailers = stream.trailers().await.expect("trailers").expect("some trailers");
    assert_eq!(trailers.get("x-trailer-echo-token").and_then(|v| v.to_str().ok()), Some("def"));

    let bad = with_metadata(hello("x"), &[("x-delay-ms", "soon")]);
    assert_eq!(client.say_hello(bad).await.expect_err("bad knob").code(), Code::InvalidArgument);
    let stats = backend.stats();
    assert!(stats.wait_until(WAIT, |s| s.completed(methods::SAY_HELLO) == 2).await);
    assert_eq!(stats.cancelled(methods::SAY_HELLO), 0);
}

#[tokio::test]
async fn delay_knob_waits_and_cancellation_is_seen_quickly() {
    let (backend, channel) = plaintext("slow").await;
    let mut client = HelloServiceClient::new(channel);
    let started = Instant::now();
    let request = with_metadata(hello("d"), &[("x-delay-ms", "150")]);
    client.say_hello(request).await.expect("delayed call");
    assert!(started.elapsed() >= Duration::from_millis(150));

    // Unary: the client gives up while the handler sleeps.
    let request = with_metadata(hello("d"), &[("x-delay-ms", "30000")]);
    let call = tokio::time::timeout(Duration::from_millis(200), client.say_hello(request)).await;
    assert!(call.is_err(), "the call was still sleeping");
    let gave_up = Instant::now();
    let stats = backend.stats();
    let cancelled_at = stats.wait_for_cancel(methods::SAY_HELLO, 1, WAIT).await.expect("cancel observed");
    assert!(cancelled_at.saturating_duration_since(gave_up) < Duration::from_millis(100), "seen within 100 ms");
    assert_eq!(stats.completed(methods::SAY_HELLO), 1);

    // Server streaming: the client drops the stream between two replies.
    let request = with_metadata(hello("s"), &[("x-reply-count", "100"), ("x-reply-interval-ms", "10000")]);
    let mut replies = client.lots_of_replies(request).await.expect("stream").into_inner();
    assert_eq!(replies.message().await.expect("first").expect("some").reply, "hello s #1");
    drop(replies);
    let gave_up = Instant::now();
    let cancelled_at = stats.wait_for_cancel(methods::LOTS_OF_REPLIES, 1, WAIT).await.expect("cancel observed");
    assert!(cancelled_at.saturating_duration_since(gave_up) < Duration::from_millis(100), "seen within 100 ms");
    assert_eq!(stats.completed(methods::LOTS_OF_REPLIES), 0);
    assert_eq!(stats.total_cancelled(), 2);
}

#[tokio::test]
async fn reflection_lists_services_in_both_versions() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient as V1;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest as V1Request;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse as V1Response;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as V1Alpha;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;

    let (_backend, channel) = plaintext("reflect").await;
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(V1Request::ListServices(String::new())),
    };
    let mut replies =
        V1::new(channel.clone()).server_reflection_info(futures_util::stream::iter([request])).await.expect("v1");
    let reply = replies.get_mut().next().await.expect("one reply").expect("ok");
    let Some(V1Response::ListServicesResponse(list)) = reply.message_response else { panic!("{reply:?}") };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    for expected in ["com.example.User", "echo.Echo", "grpc.health.v1.Health", "hello.HelloService"] {
        assert!(names.iter().any(|n| n == expected), "{expected} in {names:?}");
    }

    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::ListServices(String::new())),
    };
    let mut replies =
        V1Alpha::new(channel).server_reflection_info(futures_util::stream::iter([request])).await.expect("v1alpha");
    let reply = replies.get_mut().next().await.expect("one reply").expect("ok");
    let Some(AlphaResponse::ListServicesResponse(list)) = reply.message_response else { panic!("{reply:?}") };
    assert!(list.service.iter().any(|s| s.name == "hello.HelloService"));
}

#[tokio::test]
async fn health_is_serving_for_every_service() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let (_backend, channel) = plaintext("health").await;
    let mut client = HealthClient::new(channel);
    for service in ["", "hello.HelloService", "echo.Echo", "com.example.User"] {
        let reply = client.check(HealthCheckRequest { service: service.into() }).await.expect(service);
        assert_eq!(reply.into_inner().status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = client.check(HealthCheckRequest { service: "nope.Nope".into() }).await;
    assert_eq!(unknown.expect_err("unknown service").code(), Code::NotFound);
}

#[tokio::test]
async fn dropping_the_backend_closes_the_port() {
    let (backend, _) = plaintext("gone").await;
    let addr = backend.addr();
    drop(backend);
    let refused = async {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };
    assert!(refused.await, "port still accepting after drop");
}

#[tokio::test]
async fn shutdown_finishes_and_closes_the_port() {
    let (backend, _) = plaintext("bye").await;
    let addr = backend.addr();
    tokio::time::timeout(WAIT, backend.shutdown()).await.expect("shutdown in time");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn bad_tls_material_is_an_error() {
    let result = spawn(BackendOptions::named("bad").with_tls("nope".into(), "nope".into())).await;
    assert!(result.is_err());
}

#[tokio::test]
async fn reset_knob_resets_the_stream_after_headers() {
    let (backend, channel) = plaintext("reset").await;
    let mut client = HelloServiceClient::new(channel);
    let request = with_metadata(
        hello("r"),
        &[("x-reply-count", "1000"), ("x-reply-interval-ms", "200"), ("x-reset-after-ms", "100")],
    );
    let response = client.lots_of_replies(request).await.expect("headers arrive");
    assert_eq!(response.metadata().get("x-backend-name").and_then(|v| v.to_str().ok()), Some("reset"));
    let mut replies = response.into_inner();
    assert_eq!(replies.message().await.expect("first reply").expect("some").reply, "hello r #1");
    let status = tokio::time::timeout(WAIT, replies.message()).await.expect("in time").expect_err("reset");
    assert_eq!(status.code(), Code::Internal, "{status:?}");

    let request = with_metadata(hello("u"), &[("x-reset-after-ms", "0")]);
    let status = client.say_hello(request).await.expect_err("unary reset before the message");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    let stats = backend.stats();
    assert!(stats.wait_until(WAIT, |s| s.completed(methods::SAY_HELLO) == 1).await);
    assert_eq!(stats.total_cancelled(), 0, "a reset by the backend is not a client cancellation");
}

#[tokio::test]
async fn dropping_the_backend_cuts_open_calls() {
    let (backend, channel) = plaintext("killed").await;
    let stats = backend.stats();
    let mut client = HelloServiceClient::new(channel);
    let request = with_metadata(hello("k"), &[("x-reply-count", "10"), ("x-reply-interval-ms", "60000")]);
    let mut replies = client.lots_of_replies(request).await.expect("stream").into_inner();
    assert_eq!(replies.message().await.expect("first").expect("some").reply, "hello k #1");
    drop(backend);
    let next = tokio::time::timeout(WAIT, replies.message()).await.expect("the call ends at once");
    assert!(next.is_err(), "an error, not a clean end: {next:?}");
    assert!(stats.wait_until(WAIT, |s| s.cancelled(methods::LOTS_OF_REPLIES) == 1).await);
}
