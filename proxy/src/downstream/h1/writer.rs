//! The response writer: how the response is framed on the wire (its `content-length`, else chunked
//! for HTTP/1.1 or until the close for HTTP/1.0; no body for HEAD, 1xx, 204 and 304), its head
//! (with `date` when it has none, and `connection` as the loop decided), and its body written as
//! it yields, small frames coalesced with what is queued.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{Response, StatusCode};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::Conn;
use super::H1ServerError;
use crate::response_body::ProxyBody;
use crate::wire::h1::{poll_write_all, put_field};

/// Response body frames up to this size are copied next to what is queued (one write for a head
/// and a small body); larger ones are written from their own buffer.
const COALESCE: usize = 16 * 1024;

impl<I: AsyncRead + AsyncWrite + Unpin> Conn<I> {
    /// Queues the response head.
    pub(super) fn put_head(&mut self, resp: &Response<ProxyBody>, w: &mut ResponseWriter) {
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
            ResponseFraming::Length(n) if w.add_length => {
                out.put_slice(b"content-length: ");
                out.put_slice(itoa(n, &mut [0u8; 20]));
                out.put_slice(b"\r\n");
            }
            ResponseFraming::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
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
    pub(super) fn poll_body(
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
            if w.framing == ResponseFraming::None {
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
                        ResponseFraming::Length(left) => {
                            // Not `ok_or(error)?`: an eager error is dropped on every frame.
                            let Some(rest) = left.checked_sub(data.len() as u64) else {
                                return Poll::Ready(Err(H1ServerError::ResponseTooLong));
                            };
                            *left = rest;
                            self.queue(data, b"");
                        }
                        ResponseFraming::Chunked => {
                            self.wbuf.put_slice(hex(data.len(), &mut [0u8; 16]));
                            self.wbuf.put_slice(b"\r\n");
                            self.queue(data, b"\r\n");
                        }
                        ResponseFraming::Close | ResponseFraming::None => self.queue(data, b""),
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(H1ServerError::ResponseBody(e))),
                Poll::Ready(None) => {
                    match w.framing {
                        ResponseFraming::Length(0) | ResponseFraming::Close | ResponseFraming::None => {}
                        ResponseFraming::Length(_) => return Poll::Ready(Err(H1ServerError::ResponseTooShort)),
                        ResponseFraming::Chunked => self.wbuf.put_slice(b"0\r\n\r\n"),
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
    pub(super) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(poll_write_all(&mut self.io, cx, &mut self.wbuf))?;
        if let Some(big) = self.big.as_mut() {
            ready!(poll_write_all(&mut self.io, cx, big))?;
            self.big = None;
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }
}

/// How the response body goes on the wire.
#[derive(Debug, PartialEq, Eq)]
enum ResponseFraming {
    /// No body (HEAD, 1xx, 204, 304, or an empty one).
    None,
    /// Bytes still owed to the `content-length` sent.
    Length(u64),
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client, length unknown).
    Close,
}

/// What the response head says about the body and the connection.
pub(super) struct ResponseWriter {
    framing: ResponseFraming,
    /// `content-length` is written by us (the response had none).
    add_length: bool,
    /// The response's own `content-length` is not written (it cannot be trusted).
    drop_length: bool,
    pub(super) keep_alive: bool,
    http10: bool,
    done: bool,
}

impl ResponseWriter {
    pub(super) fn new(resp: &Response<ProxyBody>, is_head: bool, http10: bool, mut keep_alive: bool) -> Self {
        let status = resp.status();
        let body = resp.body();
        let declared = resp.headers().get(CONTENT_LENGTH).map(|v| crate::wire::h1::parse_decimal(v.as_bytes()));
        let mut add_length = false;
        let mut drop_length = false;
        let framing = if status.is_informational() || status == StatusCode::NO_CONTENT {
            drop_length = true;
            ResponseFraming::None
        } else if is_head || status == StatusCode::NOT_MODIFIED {
            ResponseFraming::None
        } else {
            match declared {
                Some(Some(n)) => ResponseFraming::Length(n),
                declared => {
                    drop_length = declared.is_some();
                    add_length = true;
                    if body.is_end_stream() {
                        ResponseFraming::Length(0)
                    } else if let Some(n) = body.size_hint().exact() {
                        ResponseFraming::Length(n)
                    } else if http10 {
                        add_length = false;
                        keep_alive = false;
                        ResponseFraming::Close
                    } else {
                        add_length = false;
                        ResponseFraming::Chunked
                    }
                }
            }
        };
        ResponseWriter { framing, add_length, drop_length, keep_alive, http10, done: false }
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
    use std::future::poll_fn;

    use http::HeaderMap;

    use super::*;

    /// Writes `body` framed as `framing` through a fresh connection; what the client receives.
    async fn written(framing: ResponseFraming, body: ProxyBody) -> Vec<u8> {
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
        assert!(written(ResponseFraming::Chunked, ProxyBody::full(big.clone())).await == want, "chunked");
        let small = written(ResponseFraming::Chunked, ProxyBody::full(&b"hello"[..])).await;
        assert_eq!(small, b"5\r\nhello\r\n0\r\n\r\n");
        assert!(
            written(ResponseFraming::Length(big.len() as u64), ProxyBody::full(big.clone())).await == big,
            "length"
        );
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
