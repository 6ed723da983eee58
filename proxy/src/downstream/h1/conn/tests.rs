//! The connection loop driven through in-memory I/O, one behaviour per test: reads split at every
//! byte, pipelining, the request body handed to the handler as it arrives, `100 Continue`,
//! lingering close, and the header and keep-alive timeouts. Every test runs on tokio's paused
//! clock (no real waiting: the clock jumps to the next timer when every task is idle), and every
//! wait is bounded by [`STUCK`] of that clock, so a loop that stops making progress fails its test
//! at once instead of hanging it.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::DATE;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::*;
use crate::response_body::ProxyBody;

const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long (on the paused clock) a test waits for any one step.
const STUCK: Duration = Duration::from_secs(60);
/// Set on every answer, so that the loop adds none and the bytes on the wire are known.
const FIXED_DATE: &str = "Mon, 07 Dec 2026 00:00:00 GMT";

/// The client's end of a connection served by [`serve`] on a spawned task.
struct Client {
    io: DuplexStream,
    served: JoinHandle<Result<(), H1ServerError>>,
    /// Held so that the loop does not see a shutdown.
    _shutdown: watch::Sender<bool>,
}

fn start<H: Handler>(handler: H, one_byte_reads: bool) -> Client {
    let (io, server) = tokio::io::duplex(8 << 10);
    let (tx, rx) = watch::channel(false);
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let conn = Arc::new(ConnInfo { client: addr, peer: addr, local_port: 0, tls: false, sni: None });
    let limits = H1Limits { header_timeout: HEADER_TIMEOUT, max_head: 64 << 10 };
    let handler = Arc::new(handler);
    let served = if one_byte_reads {
        tokio::spawn(serve(OneByteReads { io: server, pending: false }, conn, handler, limits, rx))
    } else {
        tokio::spawn(serve(server, conn, handler, limits, rx))
    };
    Client { io, served, _shutdown: tx }
}

/// `step`'s output, or a panic naming `what` when it takes longer than [`STUCK`].
async fn within<T>(what: &str, step: impl Future<Output = T>) -> T {
    tokio::time::timeout(STUCK, step).await.unwrap_or_else(|_| panic!("{what}: no progress in {STUCK:?}"))
}

impl Client {
    async fn send(&mut self, bytes: &[u8]) {
        within("client write", self.io.write_all(bytes)).await.expect("client write");
    }

    /// Reads exactly `n` bytes.
    async fn read(&mut self, n: usize) -> String {
        let mut buf = vec![0; n];
        within("client read", self.io.read_exact(&mut buf)).await.expect("client read");
        String::from_utf8(buf).expect("utf-8 answer")
    }

    /// Reads until the server closes its side.
    async fn read_to_end(&mut self) -> String {
        let mut buf = Vec::new();
        within("client read", self.io.read_to_end(&mut buf)).await.expect("client read");
        String::from_utf8(buf).expect("utf-8 answer")
    }

    /// How the connection loop ended.
    async fn served(&mut self) -> Result<(), H1ServerError> {
        within("connection loop", &mut self.served).await.expect("loop task")
    }
}

/// Server-side I/O whose every read yields one byte, after a `Pending` in between: a request
/// arrives split at every byte boundary.
struct OneByteReads {
    io: DuplexStream,
    pending: bool,
}

impl AsyncRead for OneByteReads {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let pending = !self.pending;
        if std::mem::replace(&mut self.pending, pending) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let mut one = [0u8; 1];
        let mut limited = ReadBuf::new(&mut one);
        let polled = Pin::new(&mut self.io).poll_read(cx, &mut limited);
        buf.put_slice(limited.filled());
        polled
    }
}

impl AsyncWrite for OneByteReads {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A response with [`FIXED_DATE`] and `text` as its body.
fn answer(status: u16, text: String) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(text));
    *resp.status_mut() = StatusCode::from_u16(status).expect("status");
    resp.headers_mut().insert(DATE, http::HeaderValue::from_static(FIXED_DATE));
    resp
}

/// The bytes of [`answer`]`(200, text)` on the wire.
fn wire_200(text: &str, close: bool) -> String {
    let close = if close { "connection: close\r\n" } else { "" };
    format!("HTTP/1.1 200 OK\r\ndate: {FIXED_DATE}\r\ncontent-length: {}\r\n{close}\r\n{text}", text.len())
}

/// Reads the whole request body, then answers `<method> <path> <body>`.
struct Echo;

impl Handler for Echo {
    async fn call(
        self: Arc<Self>,
        req: Request<ClientBody>,
        _: Arc<ConnInfo>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            Err(e) => format!("body failed: {e}"),
        };
        Ok(answer(200, format!("{} {} {body}", parts.method, parts.uri.path())))
    }
}

/// Answers 413 at once, never reading the request body.
struct Refuse;

impl Handler for Refuse {
    async fn call(
        self: Arc<Self>,
        _: Request<ClientBody>,
        _: Arc<ConnInfo>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        Ok(answer(413, "too large".into()))
    }
}

/// Reports each body frame as it arrives, then answers with the whole body.
struct Frames(mpsc::UnboundedSender<Bytes>);

impl Handler for Frames {
    async fn call(
        self: Arc<Self>,
        req: Request<ClientBody>,
        _: Arc<ConnInfo>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let mut body = req.into_body();
        let mut all = String::new();
        while let Some(frame) = body.frame().await {
            let data = frame.expect("body frame").into_data().expect("data frame");
            all.push_str(std::str::from_utf8(&data).expect("utf-8 body"));
            let _ = self.0.send(data);
        }
        Ok(answer(200, all))
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_split_at_every_byte_is_read_whole() {
    let mut c = start(Echo, true);
    c.send(b"POST /split HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n")
        .await;
    c.send(b"GET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    let got = c.read_to_end().await;
    assert_eq!(got, wire_200("POST /split hello world", false) + &wire_200("GET /next ", true));
    c.served().await.expect("clean close");
}

#[tokio::test(start_paused = true)]
async fn pipelined_requests_are_answered_in_order() {
    let mut c = start(Echo, false);
    c.send(
        concat!(
            "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
            "POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n",
            "GET /4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .as_bytes(),
    )
    .await;
    let want = [wire_200("GET /1 ", false), wire_200("POST /2 abc", false), wire_200("POST /3 de", false)].concat()
        + &wire_200("GET /4 ", true);
    assert_eq!(c.read_to_end().await, want);
    c.served().await.expect("clean close");
}

#[tokio::test(start_paused = true)]
async fn the_request_body_streams_to_the_handler_while_the_loop_waits() {
    let (tx, mut frames) = mpsc::unbounded_channel();
    let mut c = start(Frames(tx), false);
    c.send(b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n").await;
    // The handler has the first chunk before the client has sent the rest.
    assert_eq!(within("handler", frames.recv()).await.expect("first frame"), "hello");
    c.send(b"6\r\n world\r\n").await;
    assert_eq!(within("handler", frames.recv()).await.expect("second frame"), " world");
    c.send(b"0\r\n\r\n").await;
    let want = wire_200("hello world", false);
    assert_eq!(c.read(want.len()).await, want);
}

#[tokio::test(start_paused = true)]
async fn expect_continue_is_answered_when_the_body_is_read() {
    let mut c = start(Echo, false);
    c.send(b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n").await;
    // The client holds its body back until told to continue.
    let interim = "HTTP/1.1 100 Continue\r\n\r\n";
    assert_eq!(c.read(interim.len()).await, interim);
    c.send(b"hello").await;
    let want = wire_200("PUT /x hello", false);
    assert_eq!(c.read(want.len()).await, want);
}

#[tokio::test(start_paused = true)]
async fn expect_continue_is_not_sent_when_the_handler_answers_first() {
    let mut c = start(Refuse, false);
    c.send(b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n").await;
    let got = c.read_to_end().await;
    assert!(got.starts_with("HTTP/1.1 413 Payload Too Large\r\n"), "{got}");
    assert!(!got.contains("100 Continue"), "{got}");
    // The body was never read, so the connection is not reused: the loop lingers, then ends.
    c.io.shutdown().await.expect("client shutdown");
    c.served().await.expect("lingering close");
}

#[tokio::test(start_paused = true)]
async fn an_unread_body_after_an_error_answer_is_drained_for_a_while_then_closed() {
    let mut c = start(Refuse, false);
    let started = Instant::now();
    c.send(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n").await;
    let got = c.read_to_end().await;
    assert!(got.starts_with("HTTP/1.1 413 Payload Too Large\r\n") && got.ends_with("too large"), "{got}");
    // Far more than the pipe holds: it goes through only because the loop reads and drops it.
    c.send(&vec![b'x'; 256 << 10]).await;
    assert!(started.elapsed() < LINGER, "drained without waiting");
    c.served().await.expect("lingering close");
    assert!(started.elapsed() >= LINGER, "the loop kept reading for {LINGER:?}");
    let after = c.io.write_all(b"more").await;
    assert_eq!(after.expect_err("closed").kind(), io::ErrorKind::BrokenPipe);
}

#[tokio::test(start_paused = true)]
async fn a_head_not_complete_within_the_header_timeout_closes_without_an_answer() {
    let mut c = start(Echo, false);
    let started = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHo").await;
    assert_eq!(c.read_to_end().await, "");
    assert!(matches!(c.served().await, Err(H1ServerError::HeaderTimeout)));
    assert_eq!(started.elapsed(), HEADER_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_closes_after_the_header_timeout() {
    let mut c = start(Echo, false);
    let want = wire_200("GET /a ", false);
    c.send(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(c.read(want.len()).await, want);
    // Idle for less than the limit: the connection still serves, and its idle time starts over.
    tokio::time::sleep(HEADER_TIMEOUT - Duration::from_secs(1)).await;
    c.send(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(c.read(want.len()).await, want);
    let idle_from = Instant::now();
    assert_eq!(c.read_to_end().await, "");
    assert_eq!(idle_from.elapsed(), HEADER_TIMEOUT);
    assert!(matches!(c.served().await, Err(H1ServerError::HeaderTimeout)));
}
