//! The connection loop: one request at a time, its head read within the header timeout, the
//! handler's future polled on this task (and the request body read for it, [`super::body`]), the
//! response written as its body yields ([`super::writer`]), then the next request or the close.
//! hyper's server spent about 10,000 instructions per keep-alive request around the proxy's own
//! work (bench/callgrind.sh: a boxed header timer per request, a read buffer re-allocated per
//! request, its dispatcher); this loop does the same job with one timer per connection and one
//! read buffer.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::buf::Chain;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tokio_util::io::poll_read_buf;

use super::body::{BodyHandoff, H1RequestBody};
use super::head::{parse_request, RequestHead};
use super::writer::ResponseWriter;
use super::H1ServerError;
use crate::downstream::request_body::ClientBody;
use crate::downstream::{ConnInfo, Handler};
use crate::respond::error_response;

/// Read buffer growth step.
pub(super) const READ_CHUNK: usize = 8 * 1024;
/// How long a connection closed with request bytes unread keeps reading (and dropping) them, so
/// that its response is not lost to a TCP reset (nginx's lingering close).
const LINGER: Duration = Duration::from_secs(2);

/// How one connection is served.
pub struct H1Limits {
    /// Time to read a request head, counted from when the connection starts waiting for it.
    pub header_timeout: Duration,
    /// Largest request head (431 beyond it).
    pub max_head: usize,
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
        let handoff = body.map(|framing| Arc::new(BodyHandoff::new(framing, expect_continue)));
        let client_body = match &handoff {
            Some(p) => ClientBody::H1(H1RequestBody::new(p.clone())),
            None => ClientBody::Empty,
        };
        let mut fut = pin!(handler.clone().call(Request::from_parts(parts, client_body), conn.clone()));
        let resp = poll_fn(|cx| loop {
            if let Poll::Ready(resp) = fut.as_mut().poll(cx) {
                return Poll::Ready(resp.unwrap_or_else(|never| match never {}));
            }
            match &handoff {
                Some(h) if c.feed(h, cx) => continue,
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
            match &handoff {
                Some(h) if c.feed(h, cx) => continue,
                _ => return Poll::Pending,
            }
        })
        .await?;
        drop(body);
        let body_read = handoff.as_ref().is_none_or(|p| c.finish_body(p));
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
pub(super) struct Conn<I> {
    pub(super) io: I,
    /// Bytes read and not yet consumed (the head being parsed, body bytes, pipelined requests).
    pub(super) rbuf: BytesMut,
    /// Queued response bytes (the head, small body frames, chunk framing).
    pub(super) wbuf: BytesMut,
    /// A large body frame and its tail, written after `wbuf`.
    pub(super) big: Option<Chain<Bytes, Bytes>>,
    /// The last response's header map, emptied into the next request's (no allocation per request).
    pub(super) spare: HeaderMap,
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

#[cfg(test)]
mod tests;
