//! The proxy's own HTTP/1.1 upstream client (src/upstream/h1.rs) against a scripted upstream that
//! answers with exact bytes: every framing a response can have (content-length, chunked with
//! extensions and trailers, close-delimited, HEAD/204/304, 1xx interim), request bodies with and
//! without a length, an upstream that answers before reading the upload, one that closes kept-alive
//! connections, and invalid responses. The number of upstream connections accepted shows which
//! exchanges left the connection reusable.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::upstream::*;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Sends requests one after another over one keep-alive client connection.
struct Client {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        Client { send }
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &'static [u8],
    ) -> (u16, http::HeaderMap, Result<Bytes, String>) {
        self.try_request(method, path, body).await.expect("response head")
    }

    /// `Err` when the response head never came.
    async fn try_request(
        &mut self,
        method: &str,
        path: &str,
        body: &'static [u8],
    ) -> Result<(u16, http::HeaderMap, Result<Bytes, String>), hyper::Error> {
        self.send.ready().await?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "up.example")
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), self.send.send_request(req)).await.unwrap()?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = match tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect()).await.unwrap() {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) => Err(e.to_string()),
        };
        Ok((status, headers, body))
    }
}

const OK_HELLO: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

#[tokio::test]
async fn chunked_response_with_extensions_and_trailers_keeps_the_connection() {
    let up = Upstream::start(true, |_| {
        reply(
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-up: 1\r\n\r\n5;ext=1\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\nx-checksum: abc\r\n\r\n"[..],
        )
    })
    .await;
    let p = proxy_to(up.addr).await;
    let mut c = Client::connect(p.addr(0)).await;
    for _ in 0..3 {
        let (status, headers, body) = c.request("GET", "/c", b"").await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-up"], "1");
        assert_eq!(body.unwrap(), "hello, world");
    }
    // Trailers reach a client that can take them (HTTP/2).
    let got = h2c(p.addr(0), get(&format!("http://{}/c", p.addr(0)), "up.example")).await.unwrap();
    assert_eq!(got.body, "hello, world");
    assert_eq!(got.trailers.expect("trailers forwarded")["x-checksum"], "abc");
    assert_eq!(up.accepted(), 1, "a complete chunked exchange leaves the connection reusable");
}

#[tokio::test]
async fn content_length_response_is_reused_and_the_request_head_is_what_the_client_sent() {
    let up = Upstream::start(true, |_| reply(OK_HELLO)).await;
    let p = proxy_to(up.addr).await;
    let mut c = Client::connect(p.addr(0)).await;
    for _ in 0..5 {
        let (status, headers, body) = c.request("GET", "/a/b?q=1", b"").await;
        assert_eq!((status, body.unwrap()), (200, Bytes::from_static(b"hello")));
        assert_eq!(headers["content-length"], "5");
    }
    assert_eq!(up.accepted(), 1);
    let seen = up.seen();
    let first = &seen[0];
    assert!(first.head.starts_with("GET /a/b?q=1 HTTP/1.1\r\n"), "{}", first.head);
    assert_eq!(first.header("host").as_deref(), Some(&*up.addr.to_string()));
    assert_eq!(first.header("x-forwarded-host").as_deref(), Some("up.example"));
    assert_eq!(first.header("content-length"), None, "a GET without body says no length");
    assert_eq!(first.header("transfer-encoding"), None);
}

#[tokio::test]
async fn preserve_host_and_a_root_service_path_send_the_request_as_it_came() {
    let up = Upstream::start(true, |_| reply(OK_HELLO)).await;
    let (ip, port) = (up.addr.ip(), up.addr.port());
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&format!(
        "_format_version: '3.0'\nservices:\n\
         - name: root\n  protocol: http\n  host: {ip}\n  port: {port}\n  path: /\n  routes:\n\
         \x20 - name: root\n    paths: ['/']\n    strip_path: false\n    preserve_host: true\n\
         - name: based\n  protocol: http\n  host: {ip}\n  port: {port}\n  path: /base\n  routes:\n\
         \x20 - name: based\n    paths: ['/b/']\n    strip_path: false\n"
    ))
    .await;
    let mut c = Client::connect(p.addr(0)).await;
    for path in ["/a/b?q=1", "/", "/b/x?y=2"] {
        let (status, _, body) = c.request("GET", path, b"").await;
        assert_eq!((status, body.unwrap()), (200, Bytes::from_static(b"hello")), "{path}");
    }
    // Another client host right after: the upstream gets that one, not the previous request's.
    let mut raw = TcpStream::connect(p.addr(0)).await.unwrap();
    raw.write_all(b"GET /other HTTP/1.1\r\nhost: other.example:8080\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    read_until(&mut raw, &mut buf, b"hello").await.expect("a response");
    let seen: Vec<(String, Option<String>)> =
        up.seen().iter().map(|s| (s.head.lines().next().unwrap_or("").to_string(), s.header("host"))).collect();
    let want = |line: &str, host: &str| (line.to_string(), Some(host.to_string()));
    assert_eq!(
        seen,
        vec![
            want("GET /a/b?q=1 HTTP/1.1", "up.example"),
            want("GET / HTTP/1.1", "up.example"),
            want("GET /base/b/x?y=2 HTTP/1.1", &up.addr.to_string()),
            want("GET /other HTTP/1.1", "other.example:8080"),
        ]
    );
}

#[tokio::test]
async fn close_delimited_response_is_read_to_the_end_and_not_reused() {
    let up = Upstream::start(true, |_| Reply {
        bytes: b"HTTP/1.1 200 OK\r\nx-up: 1\r\n\r\nuntil the end".to_vec(),
        close: true,
    })
    .await;
    let p = proxy_to(up.addr).await;
    let mut c = Client::connect(p.addr(0)).await;
    for _ in 0..2 {
        let (status, _, body) = c.request("GET", "/", b"").await;
        assert_eq!((status, body.unwrap()), (200, Bytes::from_static(b"until the end")));
    }
    assert_eq!(up.accepted(), 2);
}

#[tokio::test]
async fn head_204_304_and_interim_100_have_no_body_and_keep_the_connection() {
    let up = Upstream::start(true, |req| {
        let path = req.head.split(' ').nth(1).unwrap_or("");
        reply(match (req.head.starts_with("HEAD"), path) {
            (true, _) => &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"[..],
            (false, "/204") => b"HTTP/1.1 204 No Content\r\n\r\n",
            (false, "/304") => b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\netag: x\r\n\r\n",
            (false, "/100") => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            _ => OK_HELLO,
        })
    })
    .await;
    let p = proxy_to(up.addr).await;
    let mut c = Client::connect(p.addr(0)).await;
    let (status, headers, body) = c.request("HEAD", "/", b"").await;
    assert_eq!((status, body.unwrap().len()), (200, 0));
    assert_eq!(headers["content-length"], "5", "HEAD keeps the length of what GET would send");
    let (status, _, body) = c.request("GET", "/204", b"").await;
    assert_eq!((status, body.unwrap().len()), (204, 0));
    let (status, _, body) = c.request("GET", "/304", b"").await;
    assert_eq!((status, body.unwrap().len()), (304, 0));
    let (status, _, body) = c.request("GET", "/100", b"").await;
    assert_eq!((status, body.unwrap()), (200, Bytes::from_static(b"hello")));
    let (status, _, body) = c.request("GET", "/", b"").await;
    assert_eq!((status, body.unwrap()), (200, Bytes::from_static(b"hello")));
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn request_bodies_go_with_their_length_or_chunked() {
    let up = Upstream::start(true, |_| reply(OK_HELLO)).await;
    let p = proxy_to(up.addr).await;
    // HTTP/1.1 client with a length: the length goes upstream.
    let mut c = Client::connect(p.addr(0)).await;
    assert_eq!(c.request("POST", "/len", b"0123456789").await.0, 200);
    // An empty POST still says its length.
    assert_eq!(c.request("POST", "/empty", b"").await.0, 200);
    // HTTP/2 client streaming a body without content-length: sent chunked.
    let stream = TcpStream::connect(p.addr(0)).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let body = StreamBody::new(tokio_stream_from(rx));
    let req = Request::builder().method("POST").uri(format!("http://{}/chunked", p.addr(0))).body(body).unwrap();
    let resp = tokio::spawn(async move { send.send_request(req).await });
    for part in ["first ", "second ", "third"] {
        tx.send(Ok(Frame::data(Bytes::from(part)))).await.unwrap();
    }
    drop(tx);
    let resp = resp.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "hello");

    let seen = up.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].header("content-length").as_deref(), Some("10"));
    assert_eq!(seen[0].body, b"0123456789");
    assert_eq!(seen[1].header("content-length").as_deref(), Some("0"));
    assert_eq!(seen[2].header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(seen[2].header("content-length"), None);
    assert_eq!(seen[2].body, b"first second third");
}

/// A receiver as a `Stream`, for `StreamBody`.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn early_response_before_the_upload_is_read_reaches_the_client() {
    let up = Upstream::start(false, |_| Reply {
        bytes: b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo much".to_vec(),
        close: true,
    })
    .await;
    let p = proxy_to(up.addr).await;
    static BIG: [u8; 4 << 20] = [7u8; 4 << 20];
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        let mut c = Client::connect(p.addr(0)).await;
        c.request("POST", "/upload", &BIG).await
    })
    .await
    .expect("an early response must not wait for the upload");
    assert_eq!(got.0, 413);
    assert_eq!(got.2.unwrap(), "too much");
}

#[tokio::test]
async fn upstream_closing_kept_alive_connections_costs_no_request() {
    // Every response says keep-alive, then the upstream closes: the proxy either sees the close
    // before reuse or retries the (idempotent, bodiless) request on a fresh connection.
    let up = Upstream::start(true, |_| Reply { bytes: OK_HELLO.to_vec(), close: true }).await;
    let p = proxy_to(up.addr).await;
    let mut c = Client::connect(p.addr(0)).await;
    for i in 0..50 {
        let (status, _, body) = c.request("GET", "/", b"").await;
        assert_eq!(status, 200, "request {i}");
        assert_eq!(body.unwrap(), "hello");
    }
    assert_eq!(up.accepted(), 50);
}

#[tokio::test]
async fn invalid_upstream_responses_are_502_and_a_short_body_is_cut() {
    let up = Upstream::start(true, |req| {
        let path = req.head.split(' ').nth(1).unwrap_or("").to_string();
        let bytes: &[u8] = match path.as_str() {
            "/garbage" => b"NOT HTTP AT ALL\r\n\r\n",
            "/lengths" => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
            "/chunks" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            "/upgrade" => b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
            // Found by the differential fuzz target: RFC 9112 §6.1, faulty framing.
            // Transfer-encoding would override it, but an invalid length is refused, not ignored.
            "/te-bad-length" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5x\r\n\r\n0\r\n\r\n",
            "/te-on-1.0" => b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "/trailer-lf" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nt: x\n\r\n",
            "/short" => b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this",
            _ => OK_HELLO,
        };
        Reply { bytes: bytes.to_vec(), close: true }
    })
    .await;
    let p = proxy_to(up.addr).await;
    for path in ["/garbage", "/lengths", "/upgrade", "/te-on-1.0", "/te-bad-length"] {
        let got = h1(p.addr(0), get(path, "up.example")).await;
        assert_eq!(got.status, 502, "{path}: {}", got.body);
    }
    // Invalid chunk framing and an upstream closing inside the body come after the status: the
    // client's response is cut off (no head at all, or a body that fails), never complete.
    for path in ["/chunks", "/trailer-lf", "/short"] {
        let mut c = Client::connect(p.addr(0)).await;
        if let Ok((status, _, body)) = c.try_request("GET", path, b"").await {
            assert_eq!(status, 200, "{path}");
            assert!(body.is_err(), "{path}: a cut body must not look complete");
        }
    }
    // The proxy is fine afterwards.
    assert_eq!(h1(p.addr(0), get("/", "up.example")).await.status, 200);
}

#[tokio::test]
async fn https_upstream_is_verified_and_its_tls_connection_kept_alive() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    install_provider();
    let (ca, cert, key) = ca_and_leaf(&["backend.internal"]);
    let certs = CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let tls = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
    let up = Upstream::start_tls(true, Some(Arc::new(tls)), |_| reply(OK_HELLO)).await;
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let config = |with_ca: bool| {
        format!(
            "_format_version: '3.0'\nservices:\n- name: s\n  protocol: https\n  host: backend.internal\n  port: 443\n  tls_verify: true\n{}  routes:\n  - name: r\n    paths: ['/']\nupstreams:\n- name: backend.internal\n  targets:\n  - target: {}\nca_certificates:\n- id: 11111111-1111-4111-8111-111111111111\n  cert: {}\n",
            if with_ca { "  ca_certificates: [11111111-1111-4111-8111-111111111111]\n" } else { "" },
            up.addr,
            serde_json::to_string(&ca).unwrap()
        )
    };
    p.push_ok(&config(true)).await;
    let mut c = Client::connect(p.addr(0)).await;
    for _ in 0..5 {
        let (status, _, body) = c.request("POST", "/tls", b"over tls").await;
        assert_eq!((status, body.unwrap()), (200, Bytes::from_static(b"hello")));
    }
    assert_eq!(up.accepted(), 1, "one TLS connection, kept alive");
    let seen = up.seen();
    assert_eq!(seen[4].body, b"over tls");
    assert!(seen[4].header("host").unwrap().starts_with("backend.internal"), "{:?}", seen[4].header("host"));
    // Verification without the CA: 502, never a plaintext fallback.
    p.push_ok(&config(false)).await;
    assert_eq!(c.request("GET", "/tls", b"").await.0, 502);
}

#[tokio::test]
async fn expect_100_continue_gets_the_body_through() {
    let up = Upstream::start(true, |_| reply(OK_HELLO)).await;
    let p = proxy_to(up.addr).await;
    let mut tcp = TcpStream::connect(p.addr(0)).await.unwrap();
    tcp.write_all(b"POST /up HTTP/1.1\r\nhost: up.example\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    // The body is sent only once the proxy says 100 Continue.
    let mut got = Vec::new();
    let interim =
        tokio::time::timeout(Duration::from_secs(10), read_until(&mut tcp, &mut got, b"\r\n\r\n")).await.unwrap();
    assert!(interim.is_some() && got.starts_with(b"HTTP/1.1 100 Continue"), "{}", String::from_utf8_lossy(&got));
    got.clear();
    tcp.write_all(b"ping").await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), read_until(&mut tcp, &mut got, b"hello")).await.unwrap();
    assert!(end.is_some() && got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    assert_eq!(up.seen()[0].body, b"ping");
}

/// The read timeout on kept-alive connections. Each upstream connection keeps one timer, left at
/// an earlier request's deadline and moved only when needed (src/upstream_h1.rs, `poll_deadline`):
/// a shorter timeout after a longer one on the same connection still fires in time, a timer left
/// from the previous request does not cut the next one short, and a connection whose response
/// timed out is not used again.
#[tokio::test]
async fn read_timeout_holds_on_kept_alive_connections() {
    // `/slow` is never answered; the connection stays open.
    let up =
        Upstream::start(true, |req| if req.head.starts_with("GET /slow ") { reply(&b""[..]) } else { reply(OK_HELLO) })
            .await;
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let service = |name: &str, read_timeout: u64| {
        format!(
            "- name: {name}\n  protocol: http\n  host: {}\n  port: {}\n  read_timeout: {read_timeout}\n  routes:\n  - name: {name}\n    paths: ['/{name}']\n",
            up.addr.ip(),
            up.addr.port()
        )
    };
    p.push_ok(&format!("_format_version: '3.0'\nservices:\n{}{}", service("long", 30_000), service("short", 400)))
        .await;
    let mut c = Client::connect(p.addr(0)).await;

    // The connection's timer is armed 30 s ahead; the next request on it allows 400 ms.
    assert_eq!(c.request("GET", "/long/fast", b"").await.0, 200);
    let sent = std::time::Instant::now();
    assert_eq!(c.request("GET", "/short/slow", b"").await.0, 504);
    let waited = sent.elapsed();
    assert!(waited >= Duration::from_millis(400), "timed out early, after {waited:?}");
    assert!(waited < Duration::from_secs(20), "the 30 s timer of the previous request was kept: {waited:?}");
    assert_eq!(up.accepted(), 1, "both services share the kept-alive connection");

    // A fresh connection: its timer stands at the first request's deadline, then fires while the
    // second request waits, and must not end it before its own 400 ms.
    assert_eq!(c.request("GET", "/short/fast", b"").await.0, 200);
    assert_eq!(up.accepted(), 2, "the connection that timed out was not reused");
    // Not a wait for readiness: time has to pass so that the first deadline falls inside the next request.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = std::time::Instant::now();
    assert_eq!(c.request("GET", "/short/slow", b"").await.0, 504);
    let waited = sent.elapsed();
    assert!(waited >= Duration::from_millis(400), "cut short by the previous request's timer, after {waited:?}");

    assert_eq!(c.request("GET", "/long/fast", b"").await.0, 200);
    assert_eq!(up.accepted(), 3);
}

/// Data loss, found from outside: an idempotent request whose body never arrived (the client left
/// after `Content-Length: 10`, or after `100 Continue`) or broke (a bad first chunk size) went
/// again on a fresh connection as a complete request with an empty body, and the client got 200.
/// A body that did not complete is never completed upstream, and the answer is the client's 400.
#[tokio::test]
async fn a_request_whose_body_did_not_complete_is_never_completed_upstream() {
    let up = Upstream::start(true, |_| reply(OK_HELLO)).await;
    let p = proxy_to(up.addr).await;
    let cases: [(&str, &[u8], &[u8]); 5] = [
        ("PUT", b"PUT /left HTTP/1.1\r\nhost: up.example\r\ncontent-length: 10\r\n\r\n", b""),
        ("DELETE", b"DELETE /short HTTP/1.1\r\nhost: up.example\r\ncontent-length: 10\r\n\r\nabc", b""),
        (
            "PUT",
            b"PUT /continue HTTP/1.1\r\nhost: up.example\r\ncontent-length: 10\r\nexpect: 100-continue\r\n\r\n",
            b"abc",
        ),
        ("GET", b"GET /badchunk HTTP/1.1\r\nhost: up.example\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n", b""),
        ("PUT", b"PUT /cut HTTP/1.1\r\nhost: up.example\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n", b""),
    ];
    for (method, raw, then) in cases {
        // A kept-alive upstream connection in the pool, as after any earlier request.
        let mut c = Client::connect(p.addr(0)).await;
        assert_eq!(c.request("GET", "/warm", b"").await.0, 200);
        let out = half_closed_exchange(p.addr(0), raw, then).await;
        let line = String::from_utf8_lossy(raw).lines().next().unwrap_or_default().to_string();
        assert!(out.starts_with("HTTP/1.1 400 "), "{line}: the client gets 400, got {out:?}");
        assert!(out.contains("Bad request: "), "{line}: {out}");
        let completed: Vec<String> = up
            .seen()
            .iter()
            .filter(|s| s.head.starts_with(method) && !s.head.contains("/warm"))
            .map(|s| s.head.clone())
            .collect();
        assert!(completed.is_empty(), "{line}: the upstream got {completed:?}");
    }
}

/// Trailer fields that must not be trailers (RFC 9110 §6.5.1: framing, routing, controls,
/// authentication, content metadata) are dropped; the rest go on in the last chunk.
#[tokio::test]
async fn forbidden_trailer_fields_are_not_forwarded() {
    let up = Upstream::start(true, |_| reply(OK_HELLO)).await;
    let p = proxy_to(up.addr).await;
    let out = half_closed_exchange(
        p.addr(0),
        b"POST /t HTTP/1.1\r\nhost: up.example\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
          3\r\nabc\r\n0\r\ncontent-length: 99\r\ntransfer-encoding: chunked\r\nhost: evil.example\r\n\
          authorization: x\r\nx-checksum: 42\r\n\r\n",
        b"",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].body.as_slice(), seen[0].trailers.clone()), (&b"abc"[..], vec!["x-checksum: 42".to_string()]));
}
