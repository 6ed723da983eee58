//! Upstream HTTP/1.1 (http, https services) on the request's own task. hyper's client runs each
//! connection as a task of its own, hands it every request through a channel and the response
//! back through a oneshot: on a keep-alive HTTP/1.1 request that was a third of the proxy's
//! instructions (bench/callgrind.sh). Here the request's task writes the head (and the body) and
//! parses the response head with httparse; the response body is read by whoever polls it (hyper's
//! server, on that same task), and the connection goes back to the pool the moment the last byte
//! of its response has been read.
//!
//! Framing follows RFC 9112 §6. A request carries its exact length as `content-length`, or is
//! sent chunked when its length is unknown (an HTTP/2 client without `content-length`). A
//! response is empty (HEAD, 204, 304), chunked, `content-length` long or close-delimited; 1xx
//! interim responses are skipped. A connection is reused only after a complete exchange: the
//! response framed by length or chunks, HTTP/1.1 without `connection: close`, the whole request
//! body sent, and nothing unread left over.
//!
//! The request body is written while the response is read, so an upstream that answers early (a
//! 413 before reading an upload) is heard; if it answers before the body is sent, the body keeps
//! flowing while the response body is read, and the connection is closed if the response ends
//! first.

use std::fmt::Write as _;
use std::future::{poll_fn, Future};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_util::io::poll_read_buf;

use crate::downstream::request_body::{ClientBodyError, RequestBody};
use crate::response_body::BodyError;
use crate::upstream::pool::{H1PoolReturn, Io, TimedOut, Unanswered};
use crate::wire::h1::{
    decode, field_at, field_spans, poll_write_all, put_field, Chunked, Decoded, FieldSpan, Framing, FramingHeaders,
    WireError, MAX_HEAD, MAX_HEADERS,
};

/// Read buffer growth step.
const READ_CHUNK: usize = 8 * 1024;
/// Request body frames up to this size are copied next to what is queued (one write for the head
/// and a small body); larger ones are written from their own buffer.
const COALESCE: usize = 16 * 1024;

#[derive(Debug, Error)]
pub enum H1Error {
    #[error("upstream connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("upstream closed the connection before a complete response head")]
    ClosedBeforeResponse,
    #[error("upstream closed the connection inside the response body")]
    ClosedInBody,
    #[error("invalid upstream response head: {0}")]
    Parse(httparse::Error),
    #[error("upstream response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid header '{0}' in upstream response")]
    Header(String),
    #[error("upstream response: {0}")]
    Wire(#[from] WireError),
    #[error("upstream answered 101 Switching Protocols, which was not asked for")]
    Upgrade,
    #[error("upstream sent transfer-encoding on an HTTP/1.0 response")]
    TransferEncodingOnHttp10,
    #[error("reading the request body: {0}")]
    RequestBody(#[source] ClientBodyError),
    #[error("request body longer than its content-length")]
    BodyTooLong,
    #[error("request body shorter than its content-length")]
    BodyTooShort,
}

/// One upstream HTTP/1.1 connection, owned by the request using it or idle in the pool.
pub struct H1Conn {
    io: Box<dyn Io>,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
    /// When it went back to the pool.
    pub(crate) idle_since: Instant,
    /// Taken from the pool (it served a request before), not freshly dialled.
    pub(crate) reused: bool,
    /// The response timer: made once per connection and re-armed lazily, see [`poll_deadline`].
    timer: Option<Pin<Box<Sleep>>>,
    /// The service's `write_timeout`: the longest the upstream may leave the request unread
    /// (its socket taking no byte) before the response head; set per request by the pool.
    pub(crate) write_timeout: Option<Duration>,
}

impl H1Conn {
    pub fn new(io: Box<dyn Io>) -> Self {
        H1Conn { io, buf: BytesMut::new(), idle_since: Instant::now(), reused: false, timer: None, write_timeout: None }
    }

    /// Whether an idle connection can take a request: nothing arrived since its last response (no
    /// EOF from an upstream that closed it, no stray bytes). Polls the socket once with a no-op
    /// waker; tokio answers from its readiness state, mostly without a system call.
    pub fn is_reusable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        let mut rb = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(Waker::noop());
        matches!(Pin::new(&mut self.io).poll_read(&mut cx, &mut rb), Poll::Pending)
    }

    /// Sends `req` and waits for the response head. On failure the request is handed back when
    /// it is safe to retry on another connection: nothing of its body was taken, the connection
    /// had served requests before (an upstream's keep-alive close racing this request), and the
    /// request was not written or is idempotent. [`TimedOut`] when the response head has not
    /// arrived by `deadline`, or the upstream took no request byte for `write_timeout` (the
    /// connection is dropped: its exchange is unfinished).
    pub async fn send(
        mut self,
        req: Request<RequestBody>,
        pool_return: H1PoolReturn,
        deadline: tokio::time::Instant,
    ) -> Result<Result<Response<H1Body>, Unanswered>, TimedOut> {
        let (mut parts, body) = req.into_parts();
        let mut writer = RequestWriter::new(&parts, body);
        let mut received = false;
        let head = poll_fn(|cx| {
            if let Poll::Ready(head) = exchange(&mut self, &mut writer, &mut parts, &mut received, cx) {
                return Poll::Ready(Ok(head));
            }
            let wake = match (writer.blocked_since, self.write_timeout) {
                (Some(since), Some(limit)) => deadline.min(since + limit),
                _ => deadline,
            };
            ready!(poll_deadline(&mut self.timer, wake, cx));
            Poll::Ready(Err(TimedOut))
        })
        .await?;
        let head = match head {
            Ok(head) => head,
            Err(error) => {
                // A request whose body failed is never sent again: its body is not there to send,
                // and an upstream must not get it as complete (with what little arrived, or none).
                let retry = self.reused
                    && !matches!(error, H1Error::RequestBody(_))
                    && !writer.body_taken
                    && !received
                    && (!writer.head_written || parts.method.is_idempotent());
                let request = retry.then(|| Box::new(Request::from_parts(parts, writer.body)));
                return Ok(Err(Unanswered { request, error: Box::new(error) }));
            }
        };
        let ResponseHead { status, version, headers, framing, mut keep_alive } = head;
        // A request whose write failed is not continued; its connection is not reused.
        keep_alive &= writer.failed.is_none();
        let writer = (!writer.done && writer.failed.is_none()).then(|| Box::new(writer));
        let mut body = H1Body { conn: Some(self), pool_return: Some(pool_return), framing, writer, keep_alive };
        if body.is_end_stream() {
            body.release();
        }
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.version_mut() = version;
        *resp.headers_mut() = headers;
        Ok(Ok(resp))
    }
}

/// Waits for `deadline` on the connection's one timer. A tokio timer made per request is entered
/// into the runtime's timer wheel and taken out again every time (~480 instructions per HTTP/1.1
/// request, bench/callgrind.sh); this one is entered once and left armed at the deadline of an
/// earlier request. Consecutive deadlines on a keep-alive connection only grow, so it mostly just
/// waits; when it fires before `deadline` it is moved there, and it is moved earlier at once when
/// `deadline` is earlier than where it stands (a shorter gRPC deadline, a service with a shorter
/// timeout). It never fires late, so a request never waits past its deadline.
fn poll_deadline(
    timer: &mut Option<Pin<Box<Sleep>>>,
    deadline: tokio::time::Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    if timer.deadline() > deadline {
        timer.as_mut().reset(deadline);
    }
    while timer.as_mut().poll(cx).is_ready() {
        if timer.deadline() >= deadline {
            return Poll::Ready(());
        }
        timer.as_mut().reset(deadline);
    }
    Poll::Pending
}

/// Drives one exchange until the response head is complete: writes what the writer has, reads
/// what the upstream sends. A failed write is remembered but reading goes on, since an upstream
/// that answered early and closed has its response in our receive buffer; a failed client body
/// ends the exchange at once.
fn exchange(
    conn: &mut H1Conn,
    writer: &mut RequestWriter,
    parts: &mut http::request::Parts,
    received: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<Result<ResponseHead, H1Error>> {
    if !writer.done && writer.failed.is_none() {
        match writer.poll_write(&mut conn.io, cx) {
            // The client's body failed: the upstream would wait for the rest forever.
            Poll::Ready(Err(e)) if !matches!(e, H1Error::Io(_)) => return Poll::Ready(Err(e)),
            Poll::Ready(Err(e)) => writer.failed = Some(e),
            _ => {}
        }
    }
    loop {
        if *received {
            if let Some(head) = parse_head(&mut conn.buf, parts)? {
                return Poll::Ready(Ok(head));
            }
        }
        if conn.buf.len() >= MAX_HEAD {
            return Poll::Ready(Err(H1Error::HeadTooLarge));
        }
        conn.buf.reserve(READ_CHUNK);
        match ready!(poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf)) {
            Ok(0) => {
                // A write that failed says more than the EOF it led to.
                return Poll::Ready(Err(match writer.failed.take() {
                    Some(e) if conn.buf.is_empty() => e,
                    _ => H1Error::ClosedBeforeResponse,
                }));
            }
            Ok(_) => *received = true,
            Err(e) => return Poll::Ready(Err(writer.failed.take().unwrap_or(H1Error::Io(e)))),
        }
    }
}

struct ResponseHead {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

/// Parses a complete response head off the front of `buf`, skipping 1xx interim responses.
/// `None` while the head is incomplete. The response's fields go into the request's header map,
/// emptied (as hyper's client does): no allocation, and the map hyper's server later reuses for
/// the client's next request keeps a size that fits requests.
fn parse_head(buf: &mut BytesMut, request: &mut http::request::Parts) -> Result<Option<ResponseHead>, H1Error> {
    loop {
        let mut spans: [FieldSpan; MAX_HEADERS] = [(0, 0, 0, 0); MAX_HEADERS];
        let (len, code, http11, count) = {
            let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut []);
            let len = match httparse::ParserConfig::default()
                .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
            {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(H1Error::Parse(e)),
            };
            field_spans(buf, resp.headers, &mut spans);
            (len, resp.code.unwrap_or(0), resp.version == Some(1), resp.headers.len())
        };
        if (100..200).contains(&code) {
            if code == 101 {
                return Err(H1Error::Upgrade);
            }
            buf.advance(len);
            continue;
        }
        let status = StatusCode::from_u16(code).map_err(|_| H1Error::Parse(httparse::Error::Status))?;
        let raw = buf.split_to(len).freeze();
        let mut headers = std::mem::take(&mut request.headers);
        headers.clear();
        headers.reserve(count);
        let mut framing = FramingHeaders::default();
        for span in &spans[..count] {
            let (name, value) = field_at(&raw, span).map_err(H1Error::Header)?;
            framing.note(&name, &value)?;
            headers.append(name, value);
        }
        let no_body =
            request.method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        // RFC 9112 §6.1: an HTTP/1.0 message with transfer-encoding has faulty framing; where its
        // body ends cannot be known (hyper refuses it too). A response without a body has none.
        if !no_body && !http11 && framing.chunked.is_some() {
            return Err(H1Error::TransferEncodingOnHttp10);
        }
        let (kind, well_framed) = match (no_body, framing.chunked, framing.length) {
            (true, _, _) => (Framing::Empty, true),
            // Both transfer-encoding and content-length: chunked wins, but the connection is suspect.
            (false, Some(true), length) => (Framing::Chunked(Chunked::Size), length.is_none()),
            (false, Some(false), _) => (Framing::Close, false),
            (false, None, Some(n)) => (Framing::Length(n), true),
            (false, None, None) => (Framing::Close, false),
        };
        let keep_alive = well_framed && http11 && !framing.close;
        let version = if http11 { Version::HTTP_11 } else { Version::HTTP_10 };
        return Ok(Some(ResponseHead { status, version, headers, framing: kind, keep_alive }));
    }
}

/// How the request body goes on the wire.
enum Encoding {
    /// Bytes still expected by the `content-length` sent.
    Length(u64),
    Chunked,
}

/// Writes a request: its head, then its body frame by frame, as the connection accepts them.
struct RequestWriter {
    body: RequestBody,
    encoding: Encoding,
    /// Queued bytes (the head, small body frames, chunk framing).
    out: BytesMut,
    /// A large body frame, written after `out`.
    big: Option<Bytes>,
    /// The body has ended (its end is queued).
    body_ended: bool,
    /// Everything is written and flushed.
    done: bool,
    /// A frame of the body was taken (it cannot be replayed).
    body_taken: bool,
    /// Bytes of the request reached the connection.
    head_written: bool,
    /// Poll the body once before the first write, so a small body leaves with the head.
    coalesce: bool,
    /// Chunked request trailers, sent in the last chunk.
    trailers: Option<Box<HeaderMap>>,
    /// A write that failed while the response was awaited.
    failed: Option<H1Error>,
    /// Since when the connection has taken no byte of a pending write (`write_timeout`).
    blocked_since: Option<tokio::time::Instant>,
}

impl RequestWriter {
    fn new(parts: &http::request::Parts, body: RequestBody) -> Self {
        let empty = body.is_end_stream();
        let encoding = match body.size_hint().exact() {
            _ if empty => Encoding::Length(0),
            Some(n) => Encoding::Length(n),
            None => Encoding::Chunked,
        };
        let mut out = BytesMut::with_capacity(256 + parts.headers.len() * 48);
        out.put_slice(parts.method.as_str().as_bytes());
        out.put_u8(b' ');
        out.put_slice(parts.uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
        out.put_slice(b" HTTP/1.1\r\n");
        // Noted while the fields are written: a `contains_key` after the loop costs a lookup per request.
        let mut declared_length = false;
        for (name, value) in &parts.headers {
            if name == CONTENT_LENGTH {
                declared_length = true;
                continue;
            }
            if name == TRANSFER_ENCODING {
                continue;
            }
            put_field(&mut out, name, value);
        }
        match encoding {
            // RFC 9110 §8.6: a zero length is said only where a body is expected or was declared.
            Encoding::Length(0)
                if !(declared_length || matches!(parts.method, Method::POST | Method::PUT | Method::PATCH)) => {}
            Encoding::Length(n) => {
                let _ = write!(out, "content-length: {n}\r\n");
            }
            Encoding::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
        }
        out.put_slice(b"\r\n");
        RequestWriter {
            body,
            encoding,
            out,
            big: None,
            body_ended: empty,
            done: false,
            body_taken: false,
            head_written: false,
            coalesce: !empty,
            trailers: None,
            failed: None,
            blocked_since: None,
        }
    }

    /// Writes until everything is sent (`Ready(Ok)`), the connection or the body has nothing to
    /// give (`Pending`), or an error.
    fn poll_write(&mut self, io: &mut Box<dyn Io>, cx: &mut Context<'_>) -> Poll<Result<(), H1Error>> {
        loop {
            if std::mem::take(&mut self.coalesce) {
                if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
                    self.take_frame(frame)?;
                }
            }
            let queued = self.out.len();
            let written = poll_write_all(io, cx, &mut self.out);
            self.head_written |= self.out.len() < queued;
            if written.is_pending() {
                self.note_blocked(self.out.len() < queued);
            }
            ready!(written)?;
            if let Some(big) = self.big.as_mut() {
                let left = big.len();
                let written = poll_write_all(io, cx, big);
                if written.is_pending() {
                    let progressed = big.len() < left;
                    self.note_blocked(progressed);
                }
                ready!(written)?;
                self.big = None;
            }
            self.blocked_since = None;
            if self.body_ended {
                ready!(Pin::new(&mut *io).poll_flush(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(frame) => self.take_frame(frame)?,
                Poll::Pending => {
                    // What is written must reach the upstream while the body is awaited (TLS).
                    let _ = Pin::new(&mut *io).poll_flush(cx)?;
                    return Poll::Pending;
                }
            }
        }
    }

    /// The connection took no more (`progressed`: after taking some): the stall clock starts now
    /// unless it already runs.
    fn note_blocked(&mut self, progressed: bool) {
        if progressed || self.blocked_since.is_none() {
            self.blocked_since = Some(tokio::time::Instant::now());
        }
    }

    /// Queues one polled body frame (or the body's end).
    fn take_frame(&mut self, frame: Option<Result<Frame<Bytes>, ClientBodyError>>) -> Result<(), H1Error> {
        match frame {
            Some(Ok(frame)) => {
                self.body_taken = true;
                match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => match &mut self.encoding {
                        Encoding::Length(left) => {
                            *left = left.checked_sub(data.len() as u64).ok_or(H1Error::BodyTooLong)?;
                            self.queue(data);
                        }
                        Encoding::Chunked => {
                            let _ = write!(self.out, "{:x}\r\n", data.len());
                            self.out.put_slice(&data);
                            self.out.put_slice(b"\r\n");
                        }
                    },
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            self.trailers = Some(Box::new(t));
                        }
                    }
                }
            }
            Some(Err(e)) => return Err(H1Error::RequestBody(e)),
            None => {
                match self.encoding {
                    Encoding::Length(0) => {}
                    Encoding::Length(_) => return Err(H1Error::BodyTooShort),
                    Encoding::Chunked => {
                        self.out.put_slice(b"0\r\n");
                        for (name, value) in self.trailers.iter().flat_map(|t| t.iter()) {
                            put_field(&mut self.out, name, value);
                        }
                        self.out.put_slice(b"\r\n");
                    }
                }
                self.body_ended = true;
            }
        }
        Ok(())
    }

    fn queue(&mut self, data: Bytes) {
        if data.len() <= COALESCE && self.big.is_none() {
            self.out.put_slice(&data);
        } else {
            // `out` is written before `big`, so anything queued after a big frame waits for it:
            // the next frame is taken only once both are empty.
            self.big = Some(data);
        }
    }
}

/// The body of an upstream HTTP/1.1 response. Holds the connection until the body is complete,
/// then gives it back to the pool (or closes it when it cannot be reused).
pub struct H1Body {
    conn: Option<H1Conn>,
    pool_return: Option<H1PoolReturn>,
    framing: Framing,
    /// The rest of a request body still being sent (an early response; boxed, as that is rare).
    writer: Option<Box<RequestWriter>>,
    keep_alive: bool,
}

impl H1Body {
    /// The body is complete: pool the connection if the exchange left it clean, else close it.
    fn release(&mut self) {
        let (Some(conn), Some(pool_return)) = (self.conn.take(), self.pool_return.take()) else {
            return;
        };
        if self.keep_alive && self.writer.is_none() && conn.buf.is_empty() {
            pool_return.put(conn);
        }
        self.writer = None;
    }

    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(w) = self.writer.as_mut() {
            match w.poll_write(&mut conn.io, cx) {
                Poll::Ready(Ok(())) => self.writer = None,
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %e, "request body after an early upstream response");
                    self.writer = None;
                    self.keep_alive = false;
                }
                Poll::Pending => {}
            }
        }
        loop {
            let decoded = match decode(&mut self.framing, &mut conn.buf) {
                Ok(d) => d,
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
            };
            let frame = match decoded {
                Decoded::Frame(f) => Some(f),
                Decoded::End => None,
                Decoded::NeedMore => match ready!(read_more(conn, cx)) {
                    Ok(true) => continue,
                    // A close-delimited body ends here; any other framing was cut short.
                    Ok(false) if self.framing == Framing::Close => {
                        self.framing = Framing::Done;
                        None
                    }
                    Ok(false) => return Poll::Ready(Some(Err(H1Error::ClosedInBody.into()))),
                    Err(e) => return Poll::Ready(Some(Err(e.into()))),
                },
            };
            if self.is_end_stream() {
                self.release();
            }
            return Poll::Ready(frame.map(Ok));
        }
    }

    pub fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Empty | Framing::Done | Framing::Length(0))
    }

    pub fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty | Framing::Done => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// A whole upstream response as the proxy reads it, from bytes in memory (the end of `wire` is
/// the connection's end): status, headers, body, trailers. For the fuzz target `upstream_h1`.
#[doc(hidden)]
pub fn decode_response(
    wire: &[u8],
    method: Method,
) -> Result<(StatusCode, HeaderMap, Vec<u8>, Option<HeaderMap>), H1Error> {
    let mut buf = BytesMut::from(wire);
    let mut request =
        Request::builder().method(method).body(()).map_err(|_| H1Error::ClosedBeforeResponse)?.into_parts().0;
    let head = parse_head(&mut buf, &mut request)?.ok_or(H1Error::ClosedBeforeResponse)?;
    let mut framing = head.framing;
    let (mut body, mut trailers) = (Vec::new(), None);
    loop {
        match decode(&mut framing, &mut buf)? {
            Decoded::Frame(f) => match f.into_data() {
                Ok(d) => body.extend_from_slice(&d),
                Err(f) => trailers = f.into_trailers().ok(),
            },
            Decoded::End => break,
            Decoded::NeedMore if framing == Framing::Close => break,
            Decoded::NeedMore => return Err(H1Error::ClosedInBody),
        }
    }
    Ok((head.status, head.headers, body, trailers))
}

/// Reads into the connection's buffer: `Ok(true)` when bytes arrived, `Ok(false)` at EOF.
fn read_more(conn: &mut H1Conn, cx: &mut Context<'_>) -> Poll<Result<bool, H1Error>> {
    conn.buf.reserve(READ_CHUNK);
    let n = ready!(poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf))?;
    Poll::Ready(Ok(n > 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parts(method: Method) -> http::request::Parts {
        Request::builder().method(method).uri("/").body(()).unwrap().into_parts().0
    }

    fn head(raw: &str, method: Method) -> Result<Option<ResponseHead>, H1Error> {
        parse_head(&mut BytesMut::from(raw), &mut parts(method))
    }

    fn framing(raw: &str) -> (Framing, bool) {
        let h = head(raw, Method::GET).unwrap().expect("complete head");
        (h.framing, h.keep_alive)
    }

    #[test]
    fn framing_and_reuse_follow_rfc_9112() {
        assert_eq!(framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"), (Framing::Length(5), true));
        assert_eq!(framing("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n"), (Framing::Length(5), true));
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
            (Framing::Chunked(Chunked::Size), true)
        );
        // Both: chunked wins, the connection is not trusted again.
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n"),
            (Framing::Chunked(Chunked::Size), false)
        );
        assert_eq!(framing("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n"), (Framing::Close, false));
        assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n"), (Framing::Close, false));
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
            (Framing::Length(0), false)
        );
        assert_eq!(framing("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n"), (Framing::Length(2), false));
        for te in ["chunked", "chu!nked", "gzip"] {
            let raw = format!("HTTP/1.0 200 OK\r\ntransfer-encoding: {te}\r\n\r\n");
            assert!(matches!(head(&raw, Method::GET), Err(H1Error::TransferEncodingOnHttp10)), "{raw:?}");
            let raw = format!("HTTP/1.0 204 No Content\r\ntransfer-encoding: {te}\r\n\r\n");
            assert_eq!(head(&raw, Method::GET).unwrap().unwrap().framing, Framing::Empty, "{raw:?}");
        }
        assert_eq!(framing("HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n"), (Framing::Empty, true));
        assert_eq!(framing("HTTP/1.1 304 Not Modified\r\n\r\n"), (Framing::Empty, true));
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", Method::HEAD).unwrap().unwrap();
        assert_eq!(h.framing, Framing::Empty);
        assert_eq!(h.headers["content-length"], "9");
    }

    #[test]
    fn interim_responses_are_skipped_and_bad_heads_are_errors() {
        let mut buf = BytesMut::from(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nx-a: 1\r\ncontent-length: 2\r\n\r\nok",
        );
        let h = parse_head(&mut buf, &mut parts(Method::POST)).unwrap().unwrap();
        assert_eq!((h.status, &h.headers["x-a"]), (StatusCode::CREATED, &HeaderValue::from_static("1")));
        assert_eq!(&buf[..], b"ok", "the body stays in the buffer");
        assert!(head("HTTP/1.1 200 OK\r\ncontent-len", Method::GET).unwrap().is_none(), "partial head");
        assert!(matches!(head("HTTP/1.1 101 Switching\r\n\r\n", Method::GET), Err(H1Error::Upgrade)));
        for bad in [
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\n",
        ] {
            assert!(matches!(head(bad, Method::GET), Err(H1Error::Wire(WireError::ContentLength))), "{bad:?}");
        }
        assert!(matches!(head("NOT HTTP\r\n\r\n", Method::GET), Err(H1Error::Parse(_))));
    }

    #[test]
    fn whole_responses_decode_by_their_framing() {
        let ok = |wire: &str, method: Method| decode_response(wire.as_bytes(), method).unwrap();
        let (status, headers, body, _) = ok("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcEXTRA", Method::GET);
        assert_eq!((status, headers.len(), body.as_slice()), (StatusCode::OK, 1, &b"abc"[..]));
        let (_, _, body, _) = ok("HTTP/1.1 200 OK\r\n\r\nuntil the end", Method::GET);
        assert_eq!(body, b"until the end");
        let (_, _, body, trailers) =
            ok("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nt: 1\r\n\r\n", Method::GET);
        assert_eq!((body.as_slice(), &trailers.unwrap()["t"]), (&b"ab"[..], &HeaderValue::from_static("1")));
        let (_, _, body, _) = ok("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n", Method::HEAD);
        assert!(body.is_empty());
        for cut in [
            "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nabc",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab",
        ] {
            assert!(matches!(decode_response(cut.as_bytes(), Method::GET), Err(H1Error::ClosedInBody)), "{cut:?}");
        }
        assert!(matches!(decode_response(b"HTTP/1.1 200 OK\r\n", Method::GET), Err(H1Error::ClosedBeforeResponse)));
    }
}
