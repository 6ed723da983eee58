//! Downstream HTTP/1.x: the server side of a client's HTTP/1.0 or HTTP/1.1 connection, run on the
//! connection's task. hyper's server spent about 10,000 instructions per keep-alive request around
//! the proxy's own work (bench/callgrind.sh: a boxed header timer per request, a read buffer
//! re-allocated per request, its dispatcher); this loop does the same job with one timer per
//! connection and one read buffer.
//!
//! One request at a time: its head is parsed with httparse into an `http::Request`, the handler's
//! future is polled here, and the response is written as its body yields. Pipelined requests wait
//! in the read buffer. A request body (RFC 9112 §6: `content-length`, or chunked) is read by this
//! loop when the request's [`H1RequestBody`] asks for more, from whichever task polls it. The
//! response is framed by its `content-length`, else chunked (HTTP/1.1) or by closing (HTTP/1.0);
//! HEAD, 1xx, 204 and 304 responses have no body. hyper's rules are kept: a request head must
//! arrive within the header timeout (also the keep-alive idle limit), a head over the limit gets
//! 431, a malformed one 400, both `transfer-encoding` and `content-length` mean chunked and a
//! closed connection afterwards, `expect: 100-continue` is answered when the body is first read,
//! and a response is given `date` when it has none. A body left unread closes the connection.

use std::future::{poll_fn, Future};
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::buf::Chain;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, EXPECT, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tokio_util::io::poll_read_buf;

use crate::body::{BodyError, ProxyBody};
use crate::downstream::request_body::ClientBody;
use crate::downstream::ConnInfo;
use crate::downstream::Handler;
use crate::respond::{error_response, ProxyError};
use crate::wire::h1::{
    decode, field_at, field_spans, poll_write_all, put_field, Chunked, Decoded, FieldSpan, Framing, FramingHeaders,
    WireError, MAX_HEADERS,
};

/// Read buffer growth step.
const READ_CHUNK: usize = 8 * 1024;
/// Response body frames up to this size are copied next to what is queued (one write for a head
/// and a small body); larger ones are written from their own buffer.
const COALESCE: usize = 16 * 1024;
/// How long a connection closed with request bytes unread keeps reading (and dropping) them, so
/// that its response is not lost to a TCP reset (nginx's lingering close).
const LINGER: Duration = Duration::from_secs(2);

/// Why a connection ended without a clean close.
#[derive(Debug, Error)]
pub enum H1ServerError {
    #[error("client connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid request head: {0}")]
    Parse(httparse::Error),
    #[error("request head larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("invalid request target")]
    Target,
    #[error("invalid method")]
    Method,
    #[error("invalid header '{0}'")]
    Header(String),
    #[error("more than one host header")]
    DuplicateHost,
    #[error("HTTP/1.1 request without a host header")]
    MissingHost,
    #[error("invalid host header '{0}'")]
    InvalidHost(String),
    #[error("invalid absolute-form request target")]
    AbsoluteTarget,
    #[error("request framing: {0}")]
    Wire(#[from] WireError),
    #[error("transfer-encoding on an HTTP/1.0 request")]
    TransferEncodingOnHttp10,
    #[error("transfer-encoding whose last coding is not chunked")]
    NotChunked,
    #[error("transfer-encoding lists chunked more than once, or an empty coding")]
    BadCodings,
    #[error("transfer-encoding '{0}' is not implemented")]
    UnknownCoding(String),
    #[error("client closed the connection inside the request head")]
    ClosedInHead,
    #[error("request head not complete within the header timeout")]
    HeaderTimeout,
    #[error("response body: {0}")]
    ResponseBody(BodyError),
    #[error("response body shorter than its content-length")]
    ResponseTooShort,
    #[error("response body longer than its content-length")]
    ResponseTooLong,
}

impl H1ServerError {
    /// The answer a client gets before its connection is closed; `None`: closed without one.
    fn rejection(&self) -> Option<ProxyError> {
        match self {
            H1ServerError::HeadTooLarge(_) | H1ServerError::Parse(httparse::Error::TooManyHeaders) => {
                Some(ProxyError::HeadTooLarge)
            }
            H1ServerError::UnknownCoding(coding) => {
                Some(ProxyError::TransferCodingNotImplemented { coding: coding.clone() })
            }
            H1ServerError::Parse(_)
            | H1ServerError::Target
            | H1ServerError::Method
            | H1ServerError::Header(_)
            | H1ServerError::DuplicateHost
            | H1ServerError::MissingHost
            | H1ServerError::InvalidHost(_)
            | H1ServerError::AbsoluteTarget
            | H1ServerError::Wire(_)
            | H1ServerError::TransferEncodingOnHttp10
            | H1ServerError::NotChunked
            | H1ServerError::BadCodings => Some(ProxyError::InvalidRequest { reason: self.to_string() }),
            _ => None,
        }
    }
}

/// A request body that failed: the client's bytes broke the framing, or the connection ended.
#[derive(Debug, Clone, Error)]
pub enum H1BodyError {
    #[error("request body: {0}")]
    Wire(#[from] WireError),
    #[error("client closed the connection inside the request body")]
    Closed,
    #[error("client connection failed inside the request body: {0}")]
    Io(std::io::ErrorKind),
}

/// How one connection is served.
pub struct H1Limits {
    /// Time to read a request head, counted from when the connection starts waiting for it.
    pub header_timeout: Duration,
    /// Largest request head (431 beyond it).
    pub max_head: usize,
}

/// A parsed request head, before its body is attached.
#[derive(Debug)]
pub struct RequestHead {
    pub parts: http::request::Parts,
    /// `None`: no body.
    pub body: Option<Framing>,
    /// The client lets the connection stay open after this request.
    pub keep_alive: bool,
    /// `expect: 100-continue` on an HTTP/1.1 request with a body.
    pub expect_continue: bool,
}

/// Serves one HTTP/1.x connection until the client closes it, an error, the header timeout, or
/// `shutdown` (which lets the request in flight finish and closes after it).
pub async fn serve<I, H>(
    io: I,
    conn: Arc<ConnInfo>,
    handler: Arc<H>,
    limits: H1Limits,
    shutdown: watch::Receiver<bool>,
) -> Result<(), H1ServerError>
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    H: Handler,
{
    let mut c = Conn {
        io,
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        wbuf: BytesMut::new(),
        big: None,
        spare: HeaderMap::new(),
    };
    // One timer for the connection's life, moved only when it fires early (see `poll_head`).
    let mut timer = Box::pin(tokio::time::sleep(limits.header_timeout));
    // Polled once, so that the task is woken at shutdown; from then on the flag is read instead
    // (a watch borrow is cheaper than polling the future on every request).
    let mut stopping = shutdown.clone();
    let mut stop = pin!(async move {
        let _ = stopping.changed().await;
    });
    let mut watching = false;
    let stopped = |shutdown: &watch::Receiver<bool>| *shutdown.borrow() || shutdown.has_changed().is_err();
    loop {
        let deadline = Instant::now() + limits.header_timeout;
        let head = poll_fn(|cx| {
            if !watching {
                watching = true;
                let _ = stop.as_mut().poll(cx);
            }
            if c.rbuf.is_empty() && stopped(&shutdown) {
                return Poll::Ready(Ok(None));
            }
            c.poll_head(cx, limits.max_head, deadline, timer.as_mut())
        })
        .await;
        let head = match head {
            Ok(Some(head)) => head,
            Ok(None) => return c.close().await,
            Err(e) => {
                if let Some(reject) = e.rejection() {
                    let resp = error_response(&reject, false);
                    let mut w = ResponseWriter::new(&resp, false, false, false);
                    c.put_head(&resp, &mut w);
                    let mut body = resp.into_body();
                    let _ = poll_fn(|cx| c.poll_body(cx, &mut w, Pin::new(&mut body))).await;
                    c.linger().await;
                }
                return Err(e);
            }
        };
        let RequestHead { parts, body, keep_alive, expect_continue } = head;
        let is_head = parts.method == Method::HEAD;
        let http10 = parts.version == Version::HTTP_10;
        let pipe = body.map(|framing| Arc::new(Pipe::new(framing, expect_continue)));
        let client_body = match &pipe {
            Some(p) => ClientBody::H1(H1RequestBody::new(p.clone())),
            None => ClientBody::Empty,
        };
        let mut fut = pin!(handler.clone().call(Request::from_parts(parts, client_body), conn.clone()));
        let resp = poll_fn(|cx| loop {
            if let Poll::Ready(resp) = fut.as_mut().poll(cx) {
                return Poll::Ready(resp.unwrap_or_else(|never| match never {}));
            }
            match &pipe {
                Some(p) if c.feed(p, cx) => continue,
                _ => return Poll::Pending,
            }
        })
        .await;
        let keep_alive = keep_alive && !stopped(&shutdown);
        let mut w = ResponseWriter::new(&resp, is_head, http10, keep_alive);
        c.put_head(&resp, &mut w);
        let (parts, mut body) = resp.into_parts();
        c.spare = parts.headers;
        // The request body may still be read (by the upstream exchange inside the response body).
        poll_fn(|cx| loop {
            if let Poll::Ready(r) = c.poll_body(cx, &mut w, Pin::new(&mut body)) {
                return Poll::Ready(r);
            }
            match &pipe {
                Some(p) if c.feed(p, cx) => continue,
                _ => return Poll::Pending,
            }
        })
        .await?;
        drop(body);
        let body_read = pipe.as_ref().is_none_or(|p| c.finish_body(p));
        if !body_read {
            c.linger().await;
            return Ok(());
        }
        if !w.keep_alive {
            return c.close().await;
        }
    }
}

/// The connection's I/O and buffers.
struct Conn<I> {
    io: I,
    /// Bytes read and not yet consumed (the head being parsed, body bytes, pipelined requests).
    rbuf: BytesMut,
    /// Queued response bytes (the head, small body frames, chunk framing).
    wbuf: BytesMut,
    /// A large body frame and its tail, written after `wbuf`.
    big: Option<Chain<Bytes, Bytes>>,
    /// The last response's header map, emptied into the next request's (no allocation per request).
    spare: HeaderMap,
}

impl<I: AsyncRead + AsyncWrite + Unpin> Conn<I> {
    /// Reads until a whole request head is buffered. `Ok(None)`: the client closed between requests.
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        max_head: usize,
        deadline: Instant,
        mut timer: Pin<&mut Sleep>,
    ) -> Poll<Result<Option<RequestHead>, H1ServerError>> {
        loop {
            if !self.rbuf.is_empty() {
                if let Some(head) = parse_request(&mut self.rbuf, max_head, &mut self.spare)? {
                    return Poll::Ready(Ok(Some(head)));
                }
            }
            self.rbuf.reserve(READ_CHUNK);
            match poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
                Poll::Ready(Ok(0)) if self.rbuf.is_empty() => return Poll::Ready(Ok(None)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(H1ServerError::ClosedInHead)),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => break,
            }
        }
        // The timer is set for an earlier request's deadline (or the connection's first); when it
        // fires before this one's, it moves. Requests that arrive in time never touch it.
        while timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= deadline {
                return Poll::Ready(Err(H1ServerError::HeaderTimeout));
            }
            timer.as_mut().reset(deadline);
        }
        Poll::Pending
    }

    /// Reads the request body for its [`H1RequestBody`] while that wants a frame. True when a
    /// frame (or the body's end or failure) was handed over.
    fn feed(&mut self, pipe: &Pipe, cx: &mut Context<'_>) -> bool {
        let mut s = pipe.lock();
        if s.finished() {
            return false;
        }
        if !s.conn_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.conn_waker = Some(cx.waker().clone());
        }
        if !s.wanted || s.frame.is_some() {
            return false;
        }
        if std::mem::take(&mut s.expect_continue) && self.rbuf.is_empty() {
            self.wbuf.put_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        if !self.wbuf.is_empty() {
            if let Poll::Ready(Err(e)) = poll_write_all(&mut self.io, cx, &mut self.wbuf) {
                s.fail(H1BodyError::Io(e.kind()));
                return true;
            }
        }
        loop {
            match decode(&mut s.framing, &mut self.rbuf) {
                Ok(Decoded::Frame(frame)) => {
                    s.frame = Some(frame);
                    s.ended = matches!(s.framing, Framing::Length(0) | Framing::Done);
                    s.deliver();
                    return true;
                }
                Ok(Decoded::End) => {
                    s.ended = true;
                    s.deliver();
                    return true;
                }
                Ok(Decoded::NeedMore) => {}
                Err(e) => {
                    s.fail(e.into());
                    return true;
                }
            }
            self.rbuf.reserve(READ_CHUNK);
            match poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
                Poll::Ready(Ok(0)) => {
                    s.fail(H1BodyError::Closed);
                    return true;
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    s.fail(H1BodyError::Io(e.kind()));
                    return true;
                }
                Poll::Pending => return false,
            }
        }
    }

    /// After the response: whether the request body is wholly consumed (what is buffered is
    /// decoded and dropped), so that the next request starts at the front of the buffer.
    fn finish_body(&mut self, pipe: &Pipe) -> bool {
        let mut s = pipe.lock();
        if s.failed {
            return false;
        }
        if s.ended {
            return true;
        }
        loop {
            match decode(&mut s.framing, &mut self.rbuf) {
                Ok(Decoded::Frame(_)) => {}
                Ok(Decoded::End) => return true,
                Ok(Decoded::NeedMore) | Err(_) => return false,
            }
        }
    }

    /// Queues the response head.
    fn put_head(&mut self, resp: &Response<ProxyBody>, w: &mut ResponseWriter) {
        let out = &mut self.wbuf;
        out.reserve(128 + resp.headers().len() * 48);
        let status = resp.status();
        out.put_slice(b"HTTP/1.1 ");
        out.put_slice(status.as_str().as_bytes());
        out.put_u8(b' ');
        out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.put_slice(b"\r\n");
        for (name, value) in resp.headers() {
            if name == TRANSFER_ENCODING || name == CONNECTION || (name == CONTENT_LENGTH && w.drop_length) {
                continue;
            }
            put_field(out, name, value);
        }
        match w.framing {
            Out::Length(n) if w.add_length => {
                out.put_slice(b"content-length: ");
                out.put_slice(itoa(n, &mut [0u8; 20]));
                out.put_slice(b"\r\n");
            }
            Out::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
            _ => {}
        }
        if !resp.headers().contains_key(DATE) {
            out.put_slice(b"date: ");
            put_date(out);
            out.put_slice(b"\r\n");
        }
        if !w.keep_alive {
            out.put_slice(b"connection: close\r\n");
        } else if w.http10 {
            out.put_slice(b"connection: keep-alive\r\n");
        }
        out.put_slice(b"\r\n");
    }

    /// Writes the response body as it yields, then flushes. A body that fails or breaks its
    /// `content-length` ends the connection (the client sees a cut response, never a whole one).
    fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        w: &mut ResponseWriter,
        mut body: Pin<&mut ProxyBody>,
    ) -> Poll<Result<(), H1ServerError>> {
        loop {
            if w.done || self.big.is_some() || self.wbuf.len() >= COALESCE {
                ready!(self.poll_write_out(cx))?;
                if w.done {
                    return Poll::Ready(Ok(()));
                }
            }
            if w.framing == Out::None {
                w.done = true;
                continue;
            }
            match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else { continue };
                    if data.is_empty() {
                        continue;
                    }
                    match &mut w.framing {
                        Out::Length(left) => {
                            // Not `ok_or(error)?`: an eager error is dropped on every frame.
                            let Some(rest) = left.checked_sub(data.len() as u64) else {
                                return Poll::Ready(Err(H1ServerError::ResponseTooLong));
                            };
                            *left = rest;
                            self.queue(data, b"");
                        }
                        Out::Chunked => {
                            self.wbuf.put_slice(hex(data.len(), &mut [0u8; 16]));
                            self.wbuf.put_slice(b"\r\n");
                            self.queue(data, b"\r\n");
                        }
                        Out::Close | Out::None => self.queue(data, b""),
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(H1ServerError::ResponseBody(e))),
                Poll::Ready(None) => {
                    match w.framing {
                        Out::Length(0) | Out::Close | Out::None => {}
                        Out::Length(_) => return Poll::Ready(Err(H1ServerError::ResponseTooShort)),
                        Out::Chunked => self.wbuf.put_slice(b"0\r\n\r\n"),
                    }
                    w.done = true;
                }
                Poll::Pending => {
                    // What is queued leaves while the body is awaited.
                    ready!(self.poll_write_out(cx))?;
                    return Poll::Pending;
                }
            }
        }
    }

    /// Queues a body frame and what follows it on the wire (`tail`: a chunk's CRLF).
    fn queue(&mut self, data: Bytes, tail: &'static [u8]) {
        if data.len() <= COALESCE && self.big.is_none() {
            self.wbuf.put_slice(&data);
            self.wbuf.put_slice(tail);
        } else {
            // `wbuf` is written before `big`; the writer takes no frame while `big` waits.
            self.big = Some(data.chain(Bytes::from_static(tail)));
        }
    }

    /// Writes `wbuf`, then `big`, then flushes.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(poll_write_all(&mut self.io, cx, &mut self.wbuf))?;
        if let Some(big) = self.big.as_mut() {
            ready!(poll_write_all(&mut self.io, cx, big))?;
            self.big = None;
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Ends the connection: what is queued is written and the write side shut down.
    async fn close(mut self) -> Result<(), H1ServerError> {
        poll_fn(|cx| self.poll_write_out(cx)).await?;
        let _ = self.io.shutdown().await;
        Ok(())
    }

    /// Ends a connection whose client may still be sending (a body left unread, a rejected
    /// head): shuts the write side down, then reads and drops what comes for up to [`LINGER`],
    /// so that the response is not lost to the reset a close with unread bytes causes.
    async fn linger(mut self) {
        if poll_fn(|cx| self.poll_write_out(cx)).await.is_err() || self.io.shutdown().await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(LINGER, async {
            let mut sink = [0u8; 8192];
            loop {
                match tokio::io::AsyncReadExt::read(&mut self.io, &mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}

/// How the response body goes on the wire.
#[derive(Debug, PartialEq, Eq)]
enum Out {
    /// No body (HEAD, 1xx, 204, 304, or an empty one).
    None,
    /// Bytes still owed to the `content-length` sent.
    Length(u64),
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client, length unknown).
    Close,
}

/// What the response head says about the body and the connection.
struct ResponseWriter {
    framing: Out,
    /// `content-length` is written by us (the response had none).
    add_length: bool,
    /// The response's own `content-length` is not written (it cannot be trusted).
    drop_length: bool,
    keep_alive: bool,
    http10: bool,
    done: bool,
}

impl ResponseWriter {
    fn new(resp: &Response<ProxyBody>, is_head: bool, http10: bool, mut keep_alive: bool) -> Self {
        let status = resp.status();
        let body = resp.body();
        let declared = resp.headers().get(CONTENT_LENGTH).map(|v| crate::wire::h1::parse_decimal(v.as_bytes()));
        let mut add_length = false;
        let mut drop_length = false;
        let framing = if status.is_informational() || status == StatusCode::NO_CONTENT {
            drop_length = true;
            Out::None
        } else if is_head || status == StatusCode::NOT_MODIFIED {
            Out::None
        } else {
            match declared {
                Some(Some(n)) => Out::Length(n),
                declared => {
                    drop_length = declared.is_some();
                    add_length = true;
                    if body.is_end_stream() {
                        Out::Length(0)
                    } else if let Some(n) = body.size_hint().exact() {
                        Out::Length(n)
                    } else if http10 {
                        add_length = false;
                        keep_alive = false;
                        Out::Close
                    } else {
                        add_length = false;
                        Out::Chunked
                    }
                }
            }
        };
        ResponseWriter { framing, add_length, drop_length, keep_alive, http10, done: false }
    }
}

/// Parses a complete request head off the front of `buf`, its fields into `spare` (taken and
/// emptied first). `None` while it is incomplete.
pub fn parse_request(
    buf: &mut BytesMut,
    max_head: usize,
    spare: &mut HeaderMap,
) -> Result<Option<RequestHead>, H1ServerError> {
    let mut spans: [FieldSpan; MAX_HEADERS] = [(0, 0, 0, 0); MAX_HEADERS];
    let (len, method, target, http11, count) = {
        let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, &mut slots) {
            Ok(httparse::Status::Complete(len)) if len > max_head => return Err(H1ServerError::HeadTooLarge(max_head)),
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > max_head => return Err(H1ServerError::HeadTooLarge(max_head)),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(H1ServerError::Parse(e)),
        };
        field_spans(buf, req.headers, &mut spans);
        let base = buf.as_ptr() as usize;
        let method = req.method.map(|m| m.as_ptr() as usize - base..m.as_ptr() as usize - base + m.len());
        let target = req.path.map(|p| p.as_ptr() as usize - base..p.as_ptr() as usize - base + p.len());
        (len, method, target, req.version == Some(1), req.headers.len())
    };
    let raw = buf.split_to(len).freeze();
    // `let else`, not `ok_or(error)?`: an error built eagerly is dropped on every good request.
    let Some(method) = method.and_then(|m| Method::from_bytes(&raw[m]).ok()) else {
        return Err(H1ServerError::Method);
    };
    let Some(uri) = target.and_then(|t| Uri::from_maybe_shared(raw.slice(t)).ok()) else {
        return Err(H1ServerError::Target);
    };
    // Room for the X-Forwarded-* and X-Real-IP fields the proxy adds: the map never grows.
    let mut headers = std::mem::take(spare);
    headers.clear();
    headers.reserve(count + 6);
    let mut framing = FramingHeaders::default();
    let mut host: Option<&FieldSpan> = None;
    let mut hosts = 0;
    let mut expect_continue = false;
    let mut codings: Option<HeaderValue> = None;
    for span in &spans[..count] {
        let (name, value) = field_at(&raw, span).map_err(H1ServerError::Header)?;
        framing.note(&name, &value)?;
        if name == HOST {
            hosts += 1;
            host = Some(span);
        } else if name == EXPECT {
            expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue");
        } else if name == TRANSFER_ENCODING && framing.other_coding && codings.is_none() {
            codings = Some(value.clone());
        }
        headers.append(name, value);
    }
    if hosts > 1 {
        return Err(H1ServerError::DuplicateHost);
    }
    // RFC 9112 §3.2: HTTP/1.1 needs a Host, and it must be a uri-host[:port]. An absolute-form
    // target's authority replaces it (§3.2.2), so the route, the upstream and X-Forwarded-Host
    // all see one host.
    if let Some(authority) = uri.authority() {
        if !matches!(uri.scheme_str(), Some("http" | "https")) || authority.as_str().contains('@') {
            return Err(H1ServerError::AbsoluteTarget);
        }
        let value = HeaderValue::from_str(authority.as_str()).map_err(|_| H1ServerError::AbsoluteTarget)?;
        headers.insert(HOST, value);
    } else {
        match host.map(|&(_, _, vs, ve)| &raw[vs as usize..ve as usize]) {
            Some(h) if !valid_host(h) => {
                return Err(H1ServerError::InvalidHost(String::from_utf8_lossy(h).into_owned()))
            }
            None if http11 => return Err(H1ServerError::MissingHost),
            _ => {}
        }
    }
    let mut keep_alive = if http11 { !framing.close } else { framing.keep_alive && !framing.close };
    let body = match (framing.chunked, framing.length) {
        (Some(_), _) if !http11 => return Err(H1ServerError::TransferEncodingOnHttp10),
        (Some(false), _) => return Err(H1ServerError::NotChunked),
        (Some(true), _) if framing.bad_codings => return Err(H1ServerError::BadCodings),
        // Framed, but with a coding sluice would pass on undecoded as if it were the content.
        (Some(true), _) if framing.other_coding => {
            let listed = codings.as_ref().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            return Err(H1ServerError::UnknownCoding(listed.unwrap_or_default()));
        }
        (Some(true), length) => {
            // Both: chunked wins and the connection ends after this request (RFC 9112 §6.3).
            if length.is_some() {
                headers.remove(CONTENT_LENGTH);
                keep_alive = false;
            }
            Some(Framing::Chunked(Chunked::Size))
        }
        (None, Some(0)) | (None, None) => None,
        (None, Some(n)) => Some(Framing::Length(n)),
    };
    let mut parts = Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = if http11 { Version::HTTP_11 } else { Version::HTTP_10 };
    parts.headers = headers;
    Ok(Some(RequestHead { parts, expect_continue: expect_continue && http11 && body.is_some(), body, keep_alive }))
}

/// Whether a Host field value is `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a
/// bracketed IPv6 literal, or a reg-name / IPv4 address of unreserved, percent-encoded and
/// sub-delim characters, then an optional all-digit port. An empty value is refused too, as nginx
/// does: sluice routes and forwards by it.
pub fn valid_host(v: &[u8]) -> bool {
    let (host, port_ok) = match v.strip_prefix(b"[") {
        Some(rest) => {
            let Some(end) = rest.iter().position(|&b| b == b']') else { return false };
            let literal = std::str::from_utf8(&rest[..end]).ok();
            if literal.and_then(|l| l.parse::<std::net::Ipv6Addr>().ok()).is_none() {
                return false;
            }
            let port = &rest[end + 1..];
            (&b""[..], port.is_empty() || (port[0] == b':' && port[1..].iter().all(u8::is_ascii_digit)))
        }
        // The port is the run of digits at the end, after a ':' (one scan from the end). Any other
        // ':' stays in the host, which it fails.
        None => {
            let digits = v.iter().rev().take_while(|b| b.is_ascii_digit()).count();
            match v.len().checked_sub(digits + 1) {
                Some(colon) if v[colon] == b':' => (&v[..colon], true),
                _ => (v, true),
            }
        }
    };
    // Nearly every Host is a name or an IPv4 address without percent-encodings: one table pass
    // (cheaper per byte than the loop below, which every HTTP/1.1 request would otherwise run).
    let host_ok = host.iter().all(|&b| REG_NAME[b as usize]) || valid_reg_name(host);
    host_ok && !v.is_empty() && port_ok && (v[0] == b'[' || !host.is_empty())
}

/// Whether `host` is a reg-name / IPv4 address: [`REG_NAME`] bytes and `%XX` percent-encodings.
fn valid_reg_name(host: &[u8]) -> bool {
    let mut i = 0;
    while i < host.len() {
        match host[i] {
            b'%' if host.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => i += 3,
            b if REG_NAME[b as usize] => i += 1,
            _ => return false,
        }
    }
    true
}

/// The bytes of a reg-name besides percent-encodings: unreserved and sub-delims (RFC 3986 §3.2.2),
/// as a table, since every HTTP/1.1 request's Host goes through [`valid_host`].
const REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let extra = b"-._~!$&'()*+,;=";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
};

/// A request head, its body (`None`: the bytes ended inside it) and how many bytes of the wire
/// the request took (head, body and its framing): where a pipelined next request starts.
#[doc(hidden)]
pub type DecodedRequest = (RequestHead, Option<Vec<u8>>, usize);

/// A whole request as the proxy reads it, from bytes in memory: head, then body by its framing
/// (`None` for the body when the bytes end inside it). For the fuzz targets `downstream_h1` and
/// `differential_h1`.
#[doc(hidden)]
pub fn decode_request(wire: &[u8], max_head: usize) -> Result<Option<DecodedRequest>, H1ServerError> {
    let mut buf = BytesMut::from(wire);
    let Some(mut head) = parse_request(&mut buf, max_head, &mut HeaderMap::new())? else {
        return Ok(None);
    };
    let mut body = Vec::new();
    if let Some(framing) = head.body.as_mut() {
        loop {
            match decode(framing, &mut buf)? {
                Decoded::Frame(f) => {
                    if let Some(d) = f.data_ref() {
                        body.extend_from_slice(d);
                    }
                }
                Decoded::End => break,
                Decoded::NeedMore => return Ok(Some((head, None, wire.len() - buf.len()))),
            }
        }
    }
    let used = wire.len() - buf.len();
    Ok(Some((head, Some(body), used)))
}

/// The state a request body shares with the connection loop that reads it.
pub struct Pipe {
    state: Mutex<PipeState>,
}

struct PipeState {
    framing: Framing,
    /// Decoded and not yet taken.
    frame: Option<Frame<Bytes>>,
    /// The body's last frame is decoded (it may still wait in `frame`).
    ended: bool,
    failed: bool,
    error: Option<H1BodyError>,
    /// The body was polled and waits for a frame.
    wanted: bool,
    /// `100 Continue` is owed before the first read.
    expect_continue: bool,
    /// Size of a `content-length` body not yet handed over.
    remaining: Option<u64>,
    body_waker: Option<Waker>,
    conn_waker: Option<Waker>,
}

impl Pipe {
    fn new(framing: Framing, expect_continue: bool) -> Self {
        let remaining = match framing {
            Framing::Length(n) => Some(n),
            _ => None,
        };
        Pipe {
            state: Mutex::new(PipeState {
                framing,
                frame: None,
                ended: false,
                failed: false,
                error: None,
                wanted: false,
                expect_continue,
                remaining,
                body_waker: None,
                conn_waker: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        // Nothing panics while holding it; a poisoned pipe is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PipeState {
    fn finished(&self) -> bool {
        self.ended || self.failed
    }

    fn deliver(&mut self) {
        self.wanted = false;
        if let Some(w) = self.body_waker.take() {
            w.wake();
        }
    }

    fn fail(&mut self, e: H1BodyError) {
        self.failed = true;
        self.error = Some(e);
        self.deliver();
    }
}

/// An HTTP/1.x request body: frames decoded by the connection loop as they are asked for.
pub struct H1RequestBody {
    pipe: Arc<Pipe>,
    done: bool,
    /// The body failed: every later poll fails the same way and it never reads as ended, so that
    /// nothing (a retry on another connection) can mistake it for a complete, shorter body.
    failed: Option<H1BodyError>,
}

impl H1RequestBody {
    fn new(pipe: Arc<Pipe>) -> Self {
        H1RequestBody { pipe, done: false, failed: None }
    }

    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, H1BodyError>>> {
        if let Some(e) = &self.failed {
            return Poll::Ready(Some(Err(e.clone())));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let mut s = self.pipe.lock();
        if let Some(frame) = s.frame.take() {
            if let (Some(left), Some(d)) = (s.remaining.as_mut(), frame.data_ref()) {
                *left = left.saturating_sub(d.len() as u64);
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(e) = s.error.take() {
            self.failed = Some(e.clone());
            return Poll::Ready(Some(Err(e)));
        }
        if s.finished() {
            self.done = true;
            return Poll::Ready(None);
        }
        s.wanted = true;
        if !s.body_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.body_waker = Some(cx.waker().clone());
        }
        // The connection loop is woken unless it is this very task (it reads after this poll).
        let conn = s.conn_waker.as_ref().filter(|w| !w.will_wake(cx.waker())).cloned();
        drop(s);
        if let Some(w) = conn {
            w.wake();
        }
        Poll::Pending
    }

    pub fn is_end_stream(&self) -> bool {
        if self.failed.is_some() {
            return false;
        }
        if self.done {
            return true;
        }
        let s = self.pipe.lock();
        s.ended && s.frame.is_none()
    }

    pub fn size_hint(&self) -> SizeHint {
        match self.pipe.lock().remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Drop for H1RequestBody {
    fn drop(&mut self) {
        // Nobody reads the rest; the connection loop stops waiting for the body to ask.
        let conn = self.pipe.lock().conn_waker.take();
        if let Some(w) = conn {
            w.wake();
        }
    }
}

/// The decimal digits of `n`.
fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// The lowercase hex digits of `n` (a chunk size).
fn hex(mut n: usize, buf: &mut [u8; 16]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Appends the current time as an HTTP date.
fn put_date(out: &mut BytesMut) {
    out.put_slice(crate::wire::http_date::now().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<RequestHead>, H1ServerError> {
        parse_request(&mut BytesMut::from(raw), 64 << 10, &mut HeaderMap::new())
    }

    fn ok(raw: &str) -> RequestHead {
        head(raw).unwrap().expect("complete head")
    }

    #[test]
    fn request_heads_parse_with_their_framing_and_keep_alive() {
        let h = ok("GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n\r\n");
        assert_eq!((h.parts.method, h.parts.uri.path(), h.parts.uri.query()), (Method::GET, "/a", Some("b=1")));
        assert_eq!(
            (h.parts.headers["host"].as_bytes(), h.body.is_none(), h.keep_alive),
            (&b"example.com"[..], true, true)
        );
        assert_eq!(ok("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello").body, Some(Framing::Length(5)));
        assert_eq!(ok("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n").body, None);
        assert_eq!(
            ok("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n").body,
            Some(Framing::Chunked(Chunked::Size))
        );
        let both = ok("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(
            (both.body, both.keep_alive, both.parts.headers.contains_key("content-length")),
            (Some(Framing::Chunked(Chunked::Size)), false, false)
        );
        assert!(!ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        let abs = ok("GET http://example.com:8080/x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((abs.parts.uri.host(), abs.parts.uri.path()), (Some("example.com"), "/x"));
        assert_eq!(abs.parts.headers["host"], "example.com:8080", "the target's authority replaces Host");
        let abs = ok("GET http://example.com/x HTTP/1.1\r\n\r\n");
        assert_eq!(abs.parts.headers["host"], "example.com", "absolute-form needs no Host");
        for host in
            ["example.com", "example.com:8000", "a-b.c_d~e", "10.0.0.1:80", "[::1]", "[2001:db8::1]:443", "x%41y"]
        {
            assert_eq!(ok(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")).parts.headers["host"], host);
        }
        assert!(ok("GET / HTTP/1.0\r\n\r\n").parts.headers.get("host").is_none(), "HTTP/1.0 may leave Host out");
        assert!(ok("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").expect_continue);
        assert!(
            !ok("GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n").expect_continue,
            "no body, nothing to continue"
        );
        assert!(head("GET / HTTP/1.1\r\nHost: a").unwrap().is_none(), "partial");
    }

    #[test]
    fn bad_heads_are_named_and_answered() {
        let status = |raw: &str| head(raw).err().and_then(|e| e.rejection()).map(|r| r.http_status());
        for raw in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET /\x01 HTTP/1.1\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
        ] {
            assert_eq!(status(raw), Some(400), "{raw:?}");
        }
        // RFC 9112 §3.2: a missing or malformed Host is 400, named in the answer.
        for raw in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: example.com:abc\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a/b@evil.example\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: user@example.com\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: \r\n\r\n",
            "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: [not-v6]\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x%4\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: bad host\r\n\r\n",
            "GET http://user@example.com/ HTTP/1.1\r\n\r\n",
            "GET ftp://example.com/ HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(status(raw), Some(400), "{raw:?}");
        }
        let missing = head("GET / HTTP/1.1\r\n\r\n").unwrap_err().rejection().unwrap();
        assert_eq!(missing.to_string(), "Bad request: HTTP/1.1 request without a host header");
        // Transfer codings (RFC 9112 §6.1): only chunked is implemented; it must be last, once.
        for raw in [
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(status(raw), Some(501), "{raw:?}");
        }
        let named = head("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(
            named.unwrap_err().rejection().unwrap().to_string(),
            "Transfer-Encoding 'gzip, chunked' is not implemented"
        );
        for raw in [
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,chunked\r\n\r\n",
        ] {
            assert_eq!(status(raw), Some(400), "{raw:?}");
        }
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(70 << 10));
        assert_eq!(status(&big), Some(431));
        assert_eq!(status(&big[..60 << 10]), None, "a partial head within the limit waits");
        assert_eq!(status(&big[..(66 << 10)]), Some(431), "a partial head past the limit is rejected early");
        let many: String = (0..MAX_HEADERS + 1).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Some(431));
    }

    /// Writes `body` framed as `framing` through a fresh connection; what the client receives.
    async fn written(framing: Out, body: ProxyBody) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let (io, mut client) = tokio::io::duplex(1 << 20);
        let mut c = Conn { io, rbuf: BytesMut::new(), wbuf: BytesMut::new(), big: None, spare: HeaderMap::new() };
        let mut w = ResponseWriter {
            framing,
            add_length: false,
            drop_length: false,
            keep_alive: true,
            http10: false,
            done: false,
        };
        let mut body = body;
        poll_fn(|cx| c.poll_body(cx, &mut w, Pin::new(&mut body))).await.unwrap();
        drop(c);
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn frames_above_the_copy_size_keep_their_framing() {
        let big = vec![b'x'; COALESCE + 1];
        let mut want = format!("{:x}\r\n", big.len()).into_bytes();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"\r\n0\r\n\r\n");
        assert!(written(Out::Chunked, ProxyBody::full(big.clone())).await == want, "chunked");
        let small = written(Out::Chunked, ProxyBody::full(&b"hello"[..])).await;
        assert_eq!(small, b"5\r\nhello\r\n0\r\n\r\n");
        assert!(written(Out::Length(big.len() as u64), ProxyBody::full(big.clone())).await == big, "length");
    }

    #[test]
    fn hosts_are_a_uri_host_and_an_optional_port() {
        for ok in [
            "h",
            "example.com:8000",
            "127.0.0.1:18095",
            "a%2Fb",
            "[::1]",
            "[::1]:80",
            "host:",
            "1234",
            "a-b.c~!$&'()*+,;=",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            ":80",
            "a:b:80",
            "a:b1",
            "example.com:abc",
            "exa mple.com",
            "a/b@evil",
            "[::1",
            "[zz]",
            "[::1]x",
            "%2",
            "%zz",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn numbers_and_dates_are_written_plainly() {
        assert_eq!(itoa(0, &mut [0; 20]), b"0");
        assert_eq!(itoa(u64::MAX, &mut [0; 20]), u64::MAX.to_string().as_bytes());
        assert_eq!(hex(0x1f40, &mut [0; 16]), b"1f40");
        assert_eq!(hex(usize::MAX, &mut [0; 16]), format!("{:x}", usize::MAX).as_bytes());
        let mut out = BytesMut::new();
        put_date(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(httpdate::parse_http_date(text).is_ok(), "{text}");
    }
}
