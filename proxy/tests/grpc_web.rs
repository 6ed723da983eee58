//! The grpc-web plugin with a raw HTTP client (hyper) against a real tonic backend: binary and
//! text mode over HTTP/1.1 and h2c, text split into odd base64 chunks, unary and server
//! streaming, every trailer in the final frame, errors before and after the upstream answered,
//! CORS alone and with the cors plugin, grpc routes, metrics, and a 10,000-message stream
//! through the real binary with its memory measured; then published clients: connect-node's
//! gRPC-Web transport, and connect-web in a real browser (Debian's chromium, playwright-core) on a
//! page from another origin. Needs node/npm and chromium (`make deps`: scripts/install-deps.sh).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{Buf, Bytes};
use common::*;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice_demo::{spawn, BackendOptions};
use tokio::net::TcpStream;

const SAY_HELLO: &str = "/hello.HelloService/SayHello";
const LOTS_OF_REPLIES: &str = "/hello.HelloService/LotsOfReplies";

/// A `HelloRequest` (field 1, a string) in a gRPC length-prefixed frame.
fn hello_frame(greeting: &str) -> Vec<u8> {
    let mut msg = vec![0x0a];
    let mut n = greeting.len();
    while n >= 0x80 {
        msg.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    msg.push(n as u8);
    msg.extend_from_slice(greeting.as_bytes());
    let mut frame = vec![0];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    frame
}

/// The `reply` string of a `HelloResponse` message.
fn hello_reply(mut msg: &[u8]) -> String {
    assert_eq!(msg.get_u8(), 0x0a, "field 1");
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let b = msg.get_u8();
        len |= ((b & 0x7f) as usize) << shift;
        shift += 7;
        if b < 0x80 {
            break;
        }
    }
    String::from_utf8(msg[..len].to_vec()).unwrap()
}

/// A gRPC-Web response body split into its messages and its trailer frame.
#[derive(Debug, Default)]
struct WebBody {
    replies: Vec<String>,
    trailers: BTreeMap<String, String>,
    trailer_frames: usize,
}

fn parse_web(mut body: &[u8]) -> WebBody {
    let mut out = WebBody::default();
    while !body.is_empty() {
        assert_eq!(out.trailer_frames, 0, "nothing may follow the trailer frame");
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        let (payload, rest) = body.split_at(len);
        body = rest;
        if flag & 0x80 != 0 {
            out.trailer_frames += 1;
            for line in std::str::from_utf8(payload).unwrap().split("\r\n").filter(|l| !l.is_empty()) {
                let (k, v) = line.split_once(':').unwrap();
                out.trailers.insert(k.trim().to_string(), v.trim().to_string());
            }
        } else {
            out.replies.push(hello_reply(payload));
        }
    }
    out
}

struct WebGot {
    status: u16,
    headers: http::HeaderMap,
    body: WebBody,
}

/// Reads a gRPC-Web response whole (text mode decoded first).
async fn read_web(resp: http::Response<Incoming>) -> WebGot {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let collected = resp.into_body().collect().await.unwrap();
    assert!(collected.trailers().is_none(), "gRPC-Web has no HTTP trailers");
    let raw = collected.to_bytes();
    let text =
        headers.get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("application/grpc-web-text"));
    let bytes = if text { STANDARD.decode(&raw).expect("one base64 string") } else { raw.to_vec() };
    WebGot { status, headers, body: parse_web(&bytes) }
}

type ChunkBody =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<http_body::Frame<Bytes>, std::io::Error>>>>;

/// A body sent as these chunks (separate DATA frames over h2, chunks over HTTP/1.1).
fn chunked(chunks: Vec<Vec<u8>>) -> ChunkBody {
    StreamBody::new(futures_util::stream::iter(
        chunks.into_iter().map(|c| Ok(http_body::Frame::data(Bytes::from(c)))).collect::<Vec<_>>(),
    ))
}

fn web_request(path: &str, content_type: &str, body: ChunkBody, headers: &[(&str, &str)]) -> Request<ChunkBody> {
    let mut b = Request::post(path).header("host", "web.example").header("content-type", content_type);
    b = b.header("x-grpc-web", "1").header("origin", "https://app.example");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body).unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Version {
    H1,
    H2,
}

async fn send(addr: SocketAddr, version: Version, req: Request<ChunkBody>) -> http::Response<Incoming> {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    match version {
        Version::H1 => {
            let (mut s, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            s.send_request(req).await.unwrap()
        }
        Version::H2 => {
            let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
            tokio::spawn(conn);
            s.send_request(req).await.unwrap()
        }
    }
}

/// The binary frame, or its base64 in chunks of `split` characters (text mode).
fn encode(text: bool, frame: &[u8], split: usize) -> (ChunkBody, &'static str) {
    if text {
        let b64 = STANDARD.encode(frame).into_bytes();
        (chunked(b64.chunks(split).map(<[u8]>::to_vec).collect()), "application/grpc-web-text")
    } else {
        (chunked(vec![frame.to_vec()]), "application/grpc-web+proto")
    }
}

/// A grpc service at `backend` with one route (`protocols`, `paths`, strip_path on for http
/// routes) and the route's `plugins` (YAML list items indented for the route).
fn web_config(backend: SocketAddr, protocols: &str, paths: &str, plugins: &str) -> String {
    format!(
        "_format_version: '3.0'\nservices:\n- name: g\n  protocol: grpc\n  host: {}\n  port: {}\n  routes:\n  - name: web\n    protocols: {protocols}\n    paths: {paths}\n{strip}    plugins:\n{plugins}",
        backend.ip(),
        backend.port(),
        strip = if protocols.contains("http") { "    strip_path: true\n" } else { "" },
    )
}

const GRPC_WEB: &str = "    - name: grpc-web\n";

#[tokio::test]
async fn unary_and_server_streaming_in_binary_and_text_over_http1_and_h2c() {
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    // strip_path on a prefix of the method path: Kong's default (pass_stripped_path false) still
    // sends the client's whole path upstream.
    p.push_ok(&web_config(b.addr(), "[http, https]", "['/hello.HelloService']", GRPC_WEB)).await;
    for version in [Version::H1, Version::H2] {
        for (text, split) in [(false, 0), (true, 1), (true, 3), (true, 5), (true, 1000)] {
            let case = format!("{version:?} text={text} split={split}");
            let (body, ct) = encode(text, &hello_frame("web"), split);
            let got =
                read_web(send(p.addr(0), version, web_request(SAY_HELLO, ct, body, &[("x-echo-color", "blue")])).await)
                    .await;
            assert_eq!(got.status, 200, "{case}");
            let want_ct = if text { "application/grpc-web-text+proto" } else { "application/grpc-web+proto" };
            assert_eq!(got.headers["content-type"], want_ct, "{case}");
            assert_eq!(got.headers["access-control-allow-origin"], "*", "{case}");
            assert_eq!(got.headers["access-control-expose-headers"], "grpc-status,grpc-message", "{case}");
            assert_eq!(got.headers["x-echo-color"], "blue", "{case}: response metadata");
            assert_eq!(got.body.replies, ["hello web"], "{case}");
            assert_eq!(got.body.trailer_frames, 1, "{case}");
            assert_eq!(got.body.trailers.get("grpc-status").map(String::as_str), Some("0"), "{case}");
            assert_eq!(
                got.body.trailers.get("x-trailer-echo-color").map(String::as_str),
                Some("blue"),
                "{case}: every trailer"
            );

            let (body, ct) = encode(text, &hello_frame("s"), split);
            let req = web_request(LOTS_OF_REPLIES, ct, body, &[("x-reply-count", "5"), ("x-echo-trace", "t1")]);
            let got = read_web(send(p.addr(0), version, req).await).await;
            let want: Vec<String> = (1..=5).map(|i| format!("hello s #{i}")).collect();
            assert_eq!(got.body.replies, want, "{case}");
            assert_eq!(got.body.trailers.get("grpc-status").map(String::as_str), Some("0"), "{case}");
            assert_eq!(got.body.trailers.get("x-trailer-echo-trace").map(String::as_str), Some("t1"), "{case}");
        }
    }
}

/// The gRPC status a gRPC-Web reply carries: in its headers (trailers-only) or its last frame.
fn status_of(got: &WebGot) -> (String, String) {
    let from = |k: &str| {
        got.headers
            .get(k)
            .map(|v| v.to_str().unwrap().to_string())
            .or_else(|| got.body.trailers.get(k).cloned())
            .unwrap_or_default()
    };
    (from("grpc-status"), from("grpc-message"))
}

#[tokio::test]
async fn errors_reach_the_client_in_grpc_web_form() {
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let terminate = "    - name: request-termination\n      config: {status_code: 403, message: go away}\n";
    let config = web_config(b.addr(), "[http, https]", "['/hello.HelloService']", GRPC_WEB);
    let other = format!(
        "  - name: blocked\n    protocols: [http, https]\n    paths: ['/blocked']\n    plugins:\n{GRPC_WEB}{terminate}"
    );
    let down = "- name: down\n  protocol: grpc\n  host: 127.0.0.1\n  port: 1\n  routes:\n  - name: down\n    protocols: [http, https]\n    paths: ['/down']\n    plugins:\n    - name: grpc-web\n      config: {pass_stripped_path: true}\n";
    p.push_ok(&format!("{config}{other}{down}")).await;
    for version in [Version::H1, Version::H2] {
        // The upstream's own error status (trailers-only from tonic).
        let (body, ct) = encode(false, &hello_frame("x"), 0);
        let got =
            read_web(send(p.addr(0), version, web_request(SAY_HELLO, ct, body, &[("x-fail-code", "5")])).await).await;
        assert_eq!((got.status, status_of(&got)), (200, ("5".into(), "failed%20on%20purpose".into())), "{version:?}");
        assert_eq!(got.headers["content-type"], "application/grpc-web+proto");
        // A plugin's refusal before the upstream: PERMISSION_DENIED, gRPC-Web content type.
        let (body, ct) = encode(true, &hello_frame("x"), 4);
        let got = read_web(send(p.addr(0), version, web_request("/blocked/M", ct, body, &[])).await).await;
        assert_eq!((got.status, status_of(&got)), (200, ("7".into(), "go away".into())), "{version:?}");
        assert_eq!(got.headers["content-type"], "application/grpc-web-text+proto");
        assert_eq!(got.headers["access-control-allow-origin"], "*");
        // The upstream cannot be reached: UNAVAILABLE.
        let (body, ct) = encode(false, &hello_frame("x"), 0);
        let got = read_web(send(p.addr(0), version, web_request("/down/M", ct, body, &[])).await).await;
        assert_eq!((got.status, status_of(&got).0), (200, "14".into()), "{version:?}");
        // Text mode that is not base64 never reaches the upstream as garbage.
        let req = web_request(SAY_HELLO, "application/grpc-web-text", chunked(vec![b"AAAA!!!!".to_vec()]), &[]);
        let got = read_web(send(p.addr(0), version, req).await).await;
        assert_ne!(status_of(&got).0, "0", "{version:?}: bad base64 must fail the call");
        // Not gRPC-Web at all on a grpc-web route: Kong's 400.
        let req = Request::post(SAY_HELLO)
            .header("host", "w")
            .header("content-type", "text/plain")
            .body(chunked(vec![]))
            .unwrap();
        assert_eq!(send(p.addr(0), version, req).await.status(), 400);
    }
}

#[tokio::test]
async fn an_upstream_reset_mid_stream_ends_with_a_status_frame() {
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&web_config(b.addr(), "[http, https]", "['/']", GRPC_WEB)).await;
    for (version, text) in [(Version::H1, false), (Version::H1, true), (Version::H2, true)] {
        let (body, ct) = encode(text, &hello_frame("r"), 7);
        let headers = [("x-reply-count", "1000"), ("x-reply-interval-ms", "20"), ("x-reset-after-ms", "150")];
        let got = read_web(send(p.addr(0), version, web_request(LOTS_OF_REPLIES, ct, body, &headers)).await).await;
        assert!(
            !got.body.replies.is_empty() && got.body.replies.len() < 1000,
            "{version:?}: {}",
            got.body.replies.len()
        );
        assert_eq!(got.body.trailer_frames, 1, "{version:?}");
        let status = got.body.trailers.get("grpc-status").cloned().unwrap_or_default();
        assert!(status != "0" && !status.is_empty(), "{version:?}: status {status}");
    }
}

#[tokio::test]
async fn streamed_replies_arrive_as_they_are_sent() {
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&web_config(b.addr(), "[http, https]", "['/']", GRPC_WEB)).await;
    for (version, text) in [(Version::H1, true), (Version::H2, false)] {
        let (body, ct) = encode(text, &hello_frame("slow"), 3);
        let headers = [("x-reply-count", "3"), ("x-reply-interval-ms", "400")];
        let resp = send(p.addr(0), version, web_request(LOTS_OF_REPLIES, ct, body, &headers)).await;
        let start = Instant::now();
        let mut body = resp.into_body();
        let mut first = Vec::new();
        // The first message (5 + 15 bytes, base64 in text mode) comes before the second is sent.
        while first.len() < if text { 24 } else { 20 } {
            let f = body.frame().await.unwrap().unwrap();
            if let Ok(d) = f.into_data() {
                first.extend_from_slice(&d);
            }
        }
        assert!(start.elapsed() < Duration::from_millis(350), "{version:?}: first message after {:?}", start.elapsed());
    }
}

/// A browser's CORS preflight for a gRPC-Web call to `path` from another origin.
fn preflight(path: &str) -> Request<ChunkBody> {
    Request::options(path)
        .header("host", "w")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-grpc-web,x-user-agent,grpc-timeout,x-custom")
        .body(chunked(vec![]))
        .unwrap()
}

#[tokio::test]
async fn preflights_and_the_cors_plugin() {
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let cors = "    - name: cors\n      config: {origins: ['https://app.example']}\n";
    let stripped = "    - name: grpc-web\n      config: {pass_stripped_path: true}\n";
    let with_cors =
        format!("  - name: with-cors\n    protocols: [http, https]\n    paths: ['/c']\n    plugins:\n{stripped}{cors}");
    p.push_ok(&format!("{}{with_cors}", web_config(b.addr(), "[http, https]", "['/hello.HelloService']", GRPC_WEB)))
        .await;
    // grpc-web alone answers the preflight.
    let resp = send(p.addr(0), Version::H1, preflight(SAY_HELLO)).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(h["access-control-allow-methods"], "POST");
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    for name in ["content-type", "grpc-timeout", "x-grpc-web", "x-user-agent", "x-custom"] {
        assert!(allowed.split(',').any(|a| a.trim() == name), "{name} not in {allowed}");
    }
    // With the cors plugin: its answer and its origin, the gRPC headers still exposed.
    let resp = send(p.addr(0), Version::H1, preflight("/c/hello.HelloService/SayHello")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "https://app.example");
    let (body, ct) = encode(false, &hello_frame("c"), 0);
    let got =
        read_web(send(p.addr(0), Version::H2, web_request("/c/hello.HelloService/SayHello", ct, body, &[])).await)
            .await;
    assert_eq!(got.body.replies, ["hello c"], "pass_stripped_path: the route-stripped path goes upstream");
    assert_eq!(got.headers["access-control-allow-origin"], "https://app.example");
    assert!(got.headers["access-control-expose-headers"].to_str().unwrap().contains("grpc-status"));
}

#[tokio::test]
async fn grpc_routes_take_grpc_web_over_http1_and_native_grpc_alike() {
    install_provider();
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2, 127.0.0.1:0 http2 ssl", &[]).await;
    let (ca, cert, key) = ca_and_leaf(&["grpc.example.com"]);
    let certs = certificates_yaml(&[(&cert, &key, "grpc.example.com")]);
    p.push_ok(&format!("{}{certs}", web_config(b.addr(), "[grpc, grpcs]", "['/']", GRPC_WEB))).await;
    for version in [Version::H1, Version::H2] {
        let (body, ct) = encode(true, &hello_frame("g"), 2);
        let got = read_web(send(p.addr(0), version, web_request(SAY_HELLO, ct, body, &[])).await).await;
        assert_eq!(got.body.replies, ["hello g"], "{version:?}");
    }
    let preflight = Request::options(SAY_HELLO)
        .header("host", "w")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .body(chunked(vec![]))
        .unwrap();
    assert_eq!(send(p.addr(0), Version::H1, preflight).await.status(), 200, "no 415 for the preflight");
    // The TLS port, HTTP/1.1 over TLS (a browser without h2).
    let tls = tls_connect(p.addr(1), "grpc.example.com", tls_client(&ca, &[b"http/1.1"])).await.unwrap();
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let (body, ct) = encode(false, &hello_frame("tls"), 0);
    let got = read_web(s.send_request(web_request(SAY_HELLO, ct, body, &[])).await.unwrap()).await;
    assert_eq!(got.body.replies, ["hello tls"]);
    // The TLS port, HTTP/2 (ALPN h2), text mode.
    let tls = tls_connect(p.addr(1), "grpc.example.com", tls_client(&ca, &[b"h2"])).await.unwrap();
    let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let (body, ct) = encode(true, &hello_frame("tls2"), 5);
    let got = read_web(s.send_request(web_request(SAY_HELLO, ct, body, &[])).await.unwrap()).await;
    assert_eq!(got.body.replies, ["hello tls2"]);
    // Native gRPC on the same route.
    let mut client =
        sluice_demo::hello::hello_service_client::HelloServiceClient::new(grpc_channel(p.addr(0), "w").await);
    let r = client.say_hello(sluice_demo::hello::HelloRequest { greeting: "native".into() }).await.unwrap();
    assert_eq!(r.get_ref().reply, "hello native");
}

/// A grpc service at `backend` with one route per `(method regex, plugins)`, shaped as the
/// controller translates a GRPCRoute rule (controller/testdata/translate/grpc-web-plugin/out.yaml):
/// grpc protocols, a `/hello.HelloService/<method>` path regex and a gRPC content-type condition.
fn grpcroute_config(backend: SocketAddr, routes: &[(&str, &str)]) -> String {
    let mut config = format!(
        "_format_version: '3.0'\nservices:\n- name: g\n  protocol: grpc\n  host: {}\n  port: {}\n  routes:\n",
        backend.ip(),
        backend.port()
    );
    for (i, (method, plugins)) in routes.iter().enumerate() {
        config += &format!(
            "  - name: r{i}\n    protocols: [grpc, grpcs]\n    paths: ['~/hello\\.HelloService/{method}$']\n    headers: {{content-type: ['~*^application/grpc']}}\n"
        );
        if !plugins.is_empty() {
            config += &format!("    plugins:\n{plugins}");
        }
    }
    config
}

/// A route as the controller translates a GRPCRoute (grpc protocols, a method path regex, a gRPC
/// content-type header condition) with grpc-web: a browser's preflight, which has no content type,
/// still reaches the plugin, and gRPC-Web calls are routed.
#[tokio::test]
async fn grpcroute_shaped_routes_take_browser_preflights_and_grpc_web() {
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let config = grpcroute_config(b.addr(), &[("SayHello", GRPC_WEB), ("LotsOfReplies", "")]);
    p.push_ok(&config).await;
    let resp = send(p.addr(0), Version::H1, preflight(SAY_HELLO)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert_eq!(resp.headers()["access-control-allow-methods"], "POST");
    for (version, text) in [(Version::H1, true), (Version::H2, false)] {
        let (body, ct) = encode(text, &hello_frame("route"), 3);
        let got = read_web(send(p.addr(0), version, web_request(SAY_HELLO, ct, body, &[])).await).await;
        assert_eq!(got.body.replies, ["hello route"], "{version:?}");
        assert_eq!(got.headers["access-control-allow-origin"], "*");
    }
    // Without grpc-web on the route, or without a route, a preflight finds nothing.
    assert_eq!(send(p.addr(0), Version::H1, preflight(LOTS_OF_REPLIES)).await.status(), 404);
    assert_eq!(send(p.addr(0), Version::H1, preflight("/hello.HelloService/Nope")).await.status(), 404);
    // A plain OPTIONS (no Access-Control-Request-Method) is not a preflight.
    let plain = Request::options(SAY_HELLO).header("host", "w").body(chunked(vec![])).unwrap();
    assert_eq!(send(p.addr(0), Version::H1, plain).await.status(), 404);
}

#[tokio::test]
async fn grpc_web_calls_are_counted_with_their_client_protocol() {
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&web_config(b.addr(), "[http, https]", "['/']", GRPC_WEB)).await;
    for code in ["0", "0", "9"] {
        let (body, ct) = encode(false, &hello_frame("m"), 0);
        read_web(send(p.addr(0), Version::H1, web_request(SAY_HELLO, ct, body, &[("x-fail-code", code)])).await).await;
    }
    let mut c = sluice_demo::hello::hello_service_client::HelloServiceClient::new(grpc_channel(p.addr(0), "w").await);
    c.say_hello(sluice_demo::hello::HelloRequest { greeting: "n".into() }).await.unwrap();
    let metrics = h1(p.status_addr(), get("/metrics", "localhost")).await.body;
    let line = |protocol: &str, status: &str| {
        format!("sluice_grpc_requests_total{{client_protocol=\"{protocol}\",grpc_method=\"SayHello\",grpc_service=\"hello.HelloService\",grpc_status=\"{status}\",route=\"web\",service=\"g\"}}")
    };
    let value =
        |l: String| metrics.lines().find(|x| x.starts_with(&l)).map(|x| x.rsplit(' ').next().unwrap().to_string());
    assert_eq!(value(line("grpc-web", "0")).as_deref(), Some("2"), "{metrics}");
    assert_eq!(value(line("grpc-web", "9")).as_deref(), Some("1"), "{metrics}");
    assert_eq!(value(line("grpc", "0")).as_deref(), Some("1"), "{metrics}");
}

/// The real binary (its memory is its own): a 10,000-message server stream of 8 KiB messages
/// (80 MiB; base64 text over HTTP/1.1, binary over h2c), read slowly enough that buffering would
/// show, leaves its RSS flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_message_stream_with_flat_proxy_memory() {
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = common::process::proxy_process(&web_config(b.addr(), "[http, https]", "['/']", GRPC_WEB)).await;
    let (addr, pid) = (p.addr, p.child.id().unwrap());
    let rss = || common::process::vm_rss_kib(pid);
    let greeting = "x".repeat(8 * 1024);
    for (version, text) in [(Version::H1, true), (Version::H2, false)] {
        let (body, ct) = encode(text, &hello_frame(&greeting), 4096);
        let req = web_request(LOTS_OF_REPLIES, ct, body, &[("x-reply-count", "10000")]);
        let resp = send(addr, version, req).await;
        let before = rss();
        let mut body = resp.into_body();
        let (mut bytes, mut peak, mut frames) = (0usize, before, 0u64);
        while let Some(f) = body.frame().await {
            if let Ok(d) = f.unwrap().into_data() {
                bytes += d.len();
                frames += 1;
                if frames % 256 == 0 {
                    peak = peak.max(rss());
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        let per_message = 5 + 3 + greeting.len() + " #9999".len();
        let min = if text { 10_000 * (per_message - 10) * 4 / 3 } else { 10_000 * (per_message - 10) };
        assert!(bytes > min, "{version:?}: {bytes} bytes");
        println!("{version:?} text={text}: {bytes} bytes, RSS {before} KiB -> peak {peak} KiB");
        assert!(peak < before + 16 * 1024, "{version:?}: RSS grew from {before} to {peak} KiB");
    }
}

/// The npm packages of tools/grpc-web-node (scripts/node-tools.sh installs them once, outside the
/// repository) beside a copy of its scripts: ESM resolves packages from the script's directory.
fn node_client_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tools = std::process::Command::new(root.join("scripts/node-tools.sh")).output().unwrap();
    assert!(tools.status.success(), "scripts/node-tools.sh (npm packages): {}", String::from_utf8_lossy(&tools.stderr));
    let modules = std::path::PathBuf::from(String::from_utf8(tools.stdout).unwrap().trim()).join("node_modules");
    let dir = tempfile::tempdir().unwrap();
    for file in ["client.mjs", "hello.mjs", "browser.mjs", "page.html"] {
        std::fs::copy(root.join("tools/grpc-web-node").join(file), dir.path().join(file)).unwrap();
    }
    std::os::unix::fs::symlink(&modules, dir.path().join("node_modules")).unwrap();
    (dir, modules)
}

/// What both connect clients must get back (tools/grpc-web-node/hello.mjs).
fn connect_calls_answer() -> serde_json::Value {
    let stream: Vec<String> = (1..=10).map(|i| format!("hello s #{i}")).collect();
    serde_json::json!({
        "unary": "hello web", "unaryTrailer": "blue",
        "stream": stream, "streamTrailer": "t9",
        "error": {"code": 7, "message": "failed on purpose"},
    })
}

async fn node(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = tokio::process::Command::new("node").args(args).kill_on_drop(true).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "node {args:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A published gRPC-Web client: connect-node's gRPC-Web transport (tools/grpc-web-node/client.mjs)
/// over HTTP/1.1 and h2c: unary and server streaming with their trailers, and an error status.
#[tokio::test]
async fn connect_node_grpc_web_client_over_http1_and_h2c() {
    let (dir, _) = node_client_dir();
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&web_config(b.addr(), "[http, https]", "['/']", GRPC_WEB)).await;
    let script = dir.path().join("client.mjs");
    let url = format!("http://{}", p.addr(0));
    for version in ["1.1", "2"] {
        let got = node(&[script.as_os_str(), url.as_ref(), version.as_ref()]).await;
        assert_eq!(got, connect_calls_answer(), "HTTP/{version}");
    }
}

/// Serves the page, hello.mjs and the npm packages (the page's origin: not the proxy's).
async fn page_server(dir: std::path::PathBuf) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let dir = dir.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let path = match req.uri().path() {
                    "/" => "page.html".to_string(),
                    p => p.trim_start_matches('/').to_string(),
                };
                let file = (!path.contains("..")).then(|| std::fs::read(dir.join(&path)).ok()).flatten();
                let ct = if path.ends_with(".html") { "text/html" } else { "text/javascript" };
                let resp = match file {
                    Some(bytes) => http::Response::builder()
                        .header("content-type", ct)
                        .body(http_body_util::Full::new(Bytes::from(bytes))),
                    None => http::Response::builder().status(404).body(http_body_util::Full::new(Bytes::new())),
                };
                async move { resp }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
        }
    });
    addr
}

/// A real browser: Debian's chromium (headless, driven by playwright-core) loads a page from another
/// origin whose script, connect-web's gRPC-Web transport, makes a unary and a server-streaming call
/// through sluice (HTTP/1.1, CORS preflights answered by the grpc-web plugin alone) and a failing
/// one; replies, trailers and the error status must come back, and no CORS error may be logged.
/// Run against an http route and against routes shaped as a GRPCRoute's.
#[tokio::test]
async fn a_browser_calls_through_sluice_from_another_origin() {
    let (dir, _) = node_client_dir();
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let page = page_server(dir.path().to_path_buf()).await;
    // An http route, then routes shaped as a GRPCRoute's (preflights without a content type).
    let grpcroute = grpcroute_config(b.addr(), &[("[^/]+", GRPC_WEB)]);
    for config in [web_config(b.addr(), "[http, https]", "['/']", GRPC_WEB), grpcroute] {
        p.push_ok(&config).await;
        let url = format!("http://{page}/?proxy=http://{}", p.addr(0));
        let got = node(&[dir.path().join("browser.mjs").as_os_str(), url.as_ref()]).await;
        let console = got["console"].as_array().unwrap();
        assert!(
            !console
                .iter()
                .any(|m| m.as_str().unwrap().contains("CORS") || m.as_str().unwrap().contains("Access-Control")),
            "the browser reported a CORS error: {console:?}\n{config}"
        );
        assert_eq!(got["result"], connect_calls_answer(), "console: {console:?}\n{config}");
    }
}
